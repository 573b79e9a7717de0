"""Conversations: contacts, threads on a channel, messages, internal notes and reply templates."""
