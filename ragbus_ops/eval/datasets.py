"""Evaluation sets as documents to upload and questions with their judgements: pure loaders.

Every document gets a deterministic file name, so a second run uploads the same names (the same
document ids) with the same bytes (the same versions) and finds them already indexed.
"""

import random
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

SLUG_CHARS = 60


@dataclass(frozen=True)
class Document:
    filename: str
    text: str
    title: str = ""


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    judgements: dict[str, int]  # document file name -> relevance grade (> 0: relevant)
    answers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    name: str  # also the `eval` metadata value that scopes every query to this set
    documents: list[Document]
    questions: list[Question]
    notes: list[str] = field(default_factory=list)  # what the loader left out, and why


def slug(text: str) -> str:
    """Lower-case ASCII words joined by dashes, for readable file names."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return words[:SLUG_CHARS].rstrip("-") or "untitled"


def squad_name(path: Path) -> str:
    """`dev-v1.1.json` → `squad-dev`: the split, without the release."""
    return "squad-" + slug(re.sub(r"-v\d+(\.\d+)*$", "", path.stem))


def load_squad(path: Path, name: str | None = None) -> Dataset:
    """One document per paragraph, named `<name>/<article>-<title>/<paragraph>.txt`."""
    name = name or squad_name(path)
    articles: list[dict[str, Any]] = orjson.loads(path.read_bytes())["data"]
    documents: list[Document] = []
    questions: list[Question] = []
    for a, article in enumerate(articles):
        title = str(article["title"])
        folder = f"{name}/{a:03d}-{slug(title)}"
        for p, paragraph in enumerate(article["paragraphs"]):
            filename = f"{folder}/{p:03d}.txt"
            documents.append(Document(filename, paragraph["context"], title.replace("_", " ")))
            questions += [
                Question(
                    id=str(qa["id"]),
                    text=qa["question"],
                    judgements={filename: 1},
                    answers=tuple(answer["text"] for answer in qa["answers"]),
                )
                for qa in paragraph["qas"]
            ]
    return Dataset(name, documents, questions)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def beir_filename(name: str, corpus_id: str) -> str:
    """Corpus ids may hold any character; percent-escaping keeps them distinct and path-safe."""
    return f"{name}/{quote(corpus_id, safe='')}.txt"


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """`query-id<TAB>corpus-id<TAB>score` lines, after an optional header line."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        cells = line.split("\t")
        if not line.strip() or (number == 0 and not cells[-1].strip().lstrip("-").isdigit()):
            continue
        if len(cells) != 3:
            raise ValueError(f"{path}:{number + 1}: expected 3 tab-separated fields: {line!r}")
        query_id, corpus_id, score = (cell.strip() for cell in cells)
        qrels[query_id][corpus_id] = int(score)
    return dict(qrels)


def load_beir(folder: Path, split: str = "test") -> Dataset:
    """A BEIR folder: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

    A document's text is its title and body; the questions are the queries with at least one
    relevant document in the qrels.
    """
    name = "beir-" + slug(folder.resolve().name)
    documents = []
    for row in _jsonl(folder / "corpus.jsonl"):
        title, body = str(row.get("title") or "").strip(), str(row.get("text") or "")
        text = f"{title}\n\n{body}" if title else body
        documents.append(Document(beir_filename(name, str(row["_id"])), text, title))
    qrels = load_qrels(folder / "qrels" / f"{split}.tsv")
    questions = []
    for row in _jsonl(folder / "queries.jsonl"):
        judged = qrels.get(str(row["_id"]), {})
        if any(grade > 0 for grade in judged.values()):
            judgements = {beir_filename(name, cid): grade for cid, grade in judged.items()}
            questions.append(Question(str(row["_id"]), str(row["text"]), judgements))
    unjudged = len(qrels.keys() - {q.id for q in questions})
    notes = [f"{unjudged} qrels queries have no relevant document or no text"] if unjudged else []
    return Dataset(name, documents, questions, notes)


def sample(questions: list[Question], size: int | None, seed: int) -> list[Question]:
    """A seeded random sample kept in dataset order (all of them when `size` is None or more)."""
    if size is None or size >= len(questions):
        return list(questions)
    chosen = sorted(random.Random(seed).sample(range(len(questions)), size))
    return [questions[i] for i in chosen]
