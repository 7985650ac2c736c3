"""Adapters: the real implementations of the ports in `ragbus.ports` (Qdrant, the embedding
models and TEI, the language model, the reranker, the blob store)."""
