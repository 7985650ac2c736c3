"""Retrieval and answer evaluation over the real services (`ragbus eval`)."""
