"""Build a generation's HNSW graph in a process of its own: `python -m ragbus.adapters.edge_build
<shard directory>` (see `EdgeStore.begin_build`)."""

import sys

from qdrant_edge import EdgeShard


def main(path: str) -> None:
    shard = EdgeShard.load(path)
    shard.optimize()
    shard.flush()
    shard.close()


if __name__ == "__main__":
    main(sys.argv[1])
