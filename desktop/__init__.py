"""The agent desktop: the one screen agents work in all day.

Its own app because the screen is made of two domains that should not own each other's pages:
tasks (offers, the agent's queue, status, wrap-up) and conversations (history, replies, notes). This
app holds no domain logic: its views and consumer parse, call the tasks and conversations services,
and render; it owns the screen's fragments and the replay that keeps a reconnecting browser exact.
"""
