"""Channel providers: one subpackage per provider (twilio, webchat, email) and their endpoints."""
