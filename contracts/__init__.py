"""The event contracts of ragbus: models, topics, ids and vector packing."""
