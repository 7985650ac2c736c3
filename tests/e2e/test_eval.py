"""The evaluation run on a SQuAD slice through the e2e suite's stack of real services.

It must use that one stack: a second set of services on the same broker would share its
consumer groups and split the documents between two indexes.
"""

from collections import Counter
from pathlib import Path

import orjson
import pytest

from ragbus_ops.eval.datasets import load_squad
from ragbus_ops.eval.runner import RERANKED, Endpoints, Options, evaluate, write_report

pytestmark = pytest.mark.e2e

SLICE_PARAGRAPHS = 40
METRICS = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")


class Recorder:
    """A reporter that keeps what it was told."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.advanced: Counter[str] = Counter()
        self.messages: list[str] = []

    def say(self, message: str) -> None:
        self.messages.append(message)

    def begin(self, task: str, total: int) -> None:
        self.totals[task] = total

    def advance(self, task: str, done: int = 1, note: str = "") -> None:
        self.advanced[task] += done


@pytest.fixture
def squad_slice(tmp_path: Path, shared_data: Path) -> Path:
    articles = orjson.loads((shared_data / "squad" / "dev-v1.1.json").read_bytes())["data"][
        :SLICE_PARAGRAPHS
    ]
    sliced = [{**article, "paragraphs": article["paragraphs"][:1]} for article in articles]
    path = tmp_path / "dev-v1.1.json"
    path.write_bytes(orjson.dumps({"data": sliced, "version": "1.1"}))
    return path


async def test_a_squad_slice_through_the_real_services(stack, squad_slice, tmp_path):
    dataset = load_squad(squad_slice)
    endpoints = Endpoints(stack.urls["ingest"], stack.urls["query"], stack.urls["status"])
    recorder = Recorder()
    options = Options(questions=40, answers=3, concurrency=2)

    report = await evaluate(dataset, endpoints, options, recorder)

    out = tmp_path / "reports" / "eval-squad.json"
    write_report(report, out)
    assert orjson.loads(out.read_bytes()) == report
    assert (report["dataset"], report["documents"], report["queries"]) == ("squad-dev", 40, 40)
    assert (report["documents_failed"], report["documents_uploaded"]) == (0, 40)
    assert recorder.advanced["index"] == recorder.totals["index"] == 40
    # The stack has no reranker: the reranked mode is skipped, with the service's reason.
    assert report["skipped"].keys() == {RERANKED}, report["skipped"]
    assert report["modes"].keys() == {"dense", "sparse", "hybrid"}
    for mode, scores in report["modes"].items():
        assert all(0 <= scores[m] <= 1 for m in METRICS), (mode, scores)
        assert scores["recall@10"] >= scores["recall@5"] >= scores["recall@1"], (mode, scores)
        assert scores["errors"] == 0, scores["error_samples"]
        assert recorder.advanced[mode] == 40
        assert scores["latency_ms"]["p50"] <= scores["latency_ms"]["p95"]
    # The first paragraph of 40 articles: chance would find the paragraph in the top 10 a
    # quarter of the time, and its own article's topic sets it apart from the other 39.
    for mode in ("dense", "sparse", "hybrid"):
        assert report["modes"][mode]["recall@10"] >= 0.8, (mode, report["modes"][mode])
    answers = report["answers"]
    assert answers["questions"] == 3 and answers["errors"] == 0, answers
    assert 0 <= answers["exact_match"] <= answers["f1"] <= 1, answers
    assert answers["model"] and answers["first_token_ms"] is not None

    again = await evaluate(
        dataset, endpoints, Options(modes=("dense",), questions=40, answers=0), Recorder()
    )
    assert (again["documents_reused"], again["documents_uploaded"]) == (40, 0)
    assert again["modes"]["dense"]["recall@10"] == report["modes"]["dense"]["recall@10"]
    assert again["answers"] == {"skipped": "--answers 0", "questions": 0}
