"""Removing the blobs no document needs any more: the bytes of a deleted document, or of a
version replaced by a newer upload.

What the documents use is folded from `document.uploaded` itself, replayed from its start at
every start (compacted by document id, it holds each document's latest upload or its
tombstone): a blob is released when no document's latest upload names it any longer. A released
blob is removed after a grace period (a stage may still be reading the version it held), and
never while an index generation is being built: a rebuild's chunkers replay the log from its
start and read the blobs of the uploads they meet. Only blobs of this store are removed, never
the files of outside producers' roots.
"""

import time
from collections.abc import Callable

from contracts.events import DocumentDeleted, DocumentUploaded, GenerationPlan


class BlobReferences:
    """Which blobs the documents' latest uploads name, and since when the others are unused."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.using: dict[str, str] = {}  # document → the blob of its latest upload
        self.users: dict[str, set[str]] = {}  # blob → the documents whose latest upload it is
        self.released: dict[str, float] = {}  # blob → when its last user let go
        self.building: set[int] = set()  # generations being built

    def apply(self, event: DocumentUploaded | DocumentDeleted) -> None:
        previous = self.using.pop(event.document_id, None)
        if previous is not None:
            self.users[previous].discard(event.document_id)
            if not self.users[previous]:
                del self.users[previous]
                self.released[previous] = self.clock()
        if isinstance(event, DocumentUploaded):
            self.using[event.document_id] = event.blob_uri
            self.users.setdefault(event.blob_uri, set()).add(event.document_id)
            self.released.pop(event.blob_uri, None)

    def follow(self, plan: GenerationPlan) -> None:
        if plan.state == "building":
            self.building.add(plan.generation)
        else:
            self.building.discard(plan.generation)

    def removable(self, grace_s: float) -> list[str]:
        """The blobs released more than `grace_s` ago; none while a generation is built."""
        if self.building:
            return []
        now = self.clock()
        return [blob for blob, since in self.released.items() if now - since >= grace_s]

    def removed(self, blob: str) -> None:
        self.released.pop(blob, None)
