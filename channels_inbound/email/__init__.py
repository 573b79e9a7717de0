"""The email channel: inbound-parse webhooks in, replies out through Django's email backend."""
