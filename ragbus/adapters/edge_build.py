"""Build a generation's HNSW graph in a process of its own: `python -m ragbus.adapters.edge_build
<shard directory> <dimensions>` (see `EdgeStore.begin_build`)."""

import sys

from qdrant_edge import EdgeShard

from ragbus.adapters.edge_store import shard_config


def main(path: str, dimensions: int) -> None:
    # Opened with its configuration given again: opened without it, the graph built here had
    # recall@5 0.962 at 100k points; with it 0.992 (0.991 built in the creating process).
    shard = EdgeShard.load(path, shard_config(dimensions))
    shard.optimize()
    shard.flush()
    shard.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
