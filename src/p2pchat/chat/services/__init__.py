"""Trio services around the chat engine: the code dispatcher and the tasks that carry out
the engine's actions (queries, delivery, sync, the outbox)."""
