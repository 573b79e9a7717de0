"""Django's PostgreSQL backend, plus what row-level security needs (see base.py)."""
