import pytest
from rich.console import Console

from ragbus_ops.cli import main
from ragbus_ops.eval.console import answers_line, error_lines, results_table, skipped_lines

pytestmark = pytest.mark.unit

SCORES = {
    "recall@1": 0.5,
    "recall@5": 0.9,
    "recall@10": 0.95,
    "mrr": 0.66,
    "ndcg@10": 0.7,
    "latency_ms": {"p50": 12.0, "p95": 30.0},
    "questions_per_s": 8.5,
    "errors": 1,
    "error_samples": ["HTTP 503: retrieve failed"],
}
REPORT = {
    "dataset": "squad-dev",
    "documents": 40,
    "documents_failed": 1,
    "queries": 40,
    "top_k": 10,
    "modes": {"hybrid": SCORES},
    "skipped": {"hybrid+rerank": "no reranker configured"},
    "answers": {"skipped": "--answers 0", "questions": 0},
}


def rendered(*items: object) -> str:
    console = Console(record=True, width=120)
    for item in items:
        console.print(item)
    return console.export_text()


def test_the_table_shows_each_mode_and_why_one_was_skipped():
    text = rendered(results_table(REPORT), *skipped_lines(REPORT), *error_lines(REPORT))
    assert "squad-dev: 40 documents (1 failed), 40 questions, top 10" in text
    row = next(line for line in text.splitlines() if "hybrid " in line)
    assert row.split("│")[1:-1] == [
        " hybrid ",
        " 0.500 ",
        " 0.900 ",
        " 0.950 ",
        " 0.660 ",
        "   0.700 ",
        "     12 ",
        "     30 ",
        " 8.5 ",
        "      1 ",
    ]
    assert "hybrid+rerank: skipped — no reranker configured" in text
    assert "hybrid error HTTP 503: retrieve failed" in text


def test_the_answer_line():
    assert answers_line(REPORT["answers"]) == "answers: skipped — --answers 0"
    scored = {
        "questions": 200,
        "mode": "hybrid",
        "model": "qwen",
        "exact_match": 0.41,
        "f1": 0.552,
        "errors": 2,
        "first_token_ms": {"p50": 900.4, "p95": 2100.0},
        "total_ms": None,
    }
    assert answers_line(scored) == (
        "answers (200 questions, hybrid, qwen): EM 0.410  F1 0.552  errors 2  "
        "first token p50/p95 900/2100 ms  total —"
    )


@pytest.mark.parametrize(
    "options",
    [["--questions", "0"], ["--concurrency", "0"], ["--answers", "-1"], ["--top-k", "51"]],
)
def test_out_of_range_options_are_refused(options, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "squad", "x.json", "--out", str(tmp_path / "r.json"), *options])
    assert exit_info.value.code == 2


def test_unknown_modes_are_refused_before_anything_runs(tmp_path, capsys):
    code = main(["eval", "beir", str(tmp_path), "--out", "r.json", "--modes", "dense,bm25"])
    assert code == 2
    assert "unknown modes ['bm25']" in capsys.readouterr().out
