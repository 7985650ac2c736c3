"""From retrieved hits to a cited answer: pure, no I/O."""

from pydantic import BaseModel

from ragbus.store import Hit

EXCERPT_CHARS = 400


class Citation(BaseModel):
    n: int
    document_id: str
    chunk_id: str
    source: str
    score: float
    text: str


def citations_of(hits: list[Hit]) -> list[Citation]:
    return [
        Citation(
            n=n,
            document_id=hit.payload.get("document_id", ""),
            chunk_id=hit.id,
            source=hit.payload.get("source", ""),
            score=hit.score,
            text=hit.payload.get("text", ""),
        )
        for n, hit in enumerate(hits, start=1)
    ]


def extractive_answer(citations: list[Citation]) -> str:
    """Without a language model the answer is the best passages, and it says so."""
    if not citations:
        return "No indexed passage matches the question."
    best = citations[0]
    excerpt = best.text[:EXCERPT_CHARS] + ("…" if len(best.text) > EXCERPT_CHARS else "")
    return f"(No language model is configured; the most relevant passage follows.) {excerpt} [1]"
