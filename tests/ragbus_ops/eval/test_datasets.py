from pathlib import Path

import orjson
import pytest

from ragbus_ops.eval.datasets import (
    Question,
    beir_filename,
    load_beir,
    load_qrels,
    load_squad,
    sample,
    slug,
    squad_name,
)

pytestmark = pytest.mark.unit

SQUAD_DEV = (
    Path(__file__).resolve().parents[3].parent / "shared" / "data" / "squad" / "dev-v1.1.json"
)


def squad_file(tmp_path: Path) -> Path:
    qa = {"answers": [{"answer_start": 0, "text": "Denver"}], "question": "Who won?", "id": "q1"}
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "Super_Bowl_50",
                "paragraphs": [
                    {"context": "Denver won.", "qas": [qa]},
                    {"context": "It rained.", "qas": []},
                ],
            },
            {
                "title": "Fresno,_California",
                "paragraphs": [
                    {
                        "context": "Fresno is in California.",
                        "qas": [
                            {
                                "answers": [
                                    {"answer_start": 0, "text": "Fresno"},
                                    {"answer_start": 0, "text": "Fresno, CA"},
                                ],
                                "question": "Which city?",
                                "id": "q2",
                            }
                        ],
                    }
                ],
            },
        ],
    }
    path = tmp_path / "dev-v1.1.json"
    path.write_bytes(orjson.dumps(data))
    return path


def test_squad_gives_one_document_per_paragraph_with_stable_names(tmp_path):
    dataset = load_squad(squad_file(tmp_path))
    assert dataset.name == "squad-dev"
    assert [(d.filename, d.text, d.title) for d in dataset.documents] == [
        ("squad-dev/000-super-bowl-50/000.txt", "Denver won.", "Super Bowl 50"),
        ("squad-dev/000-super-bowl-50/001.txt", "It rained.", "Super Bowl 50"),
        (
            "squad-dev/001-fresno-california/000.txt",
            "Fresno is in California.",
            "Fresno, California",
        ),
    ]
    assert dataset.questions == [
        Question("q1", "Who won?", {"squad-dev/000-super-bowl-50/000.txt": 1}, ("Denver",)),
        Question(
            "q2",
            "Which city?",
            {"squad-dev/001-fresno-california/000.txt": 1},
            ("Fresno", "Fresno, CA"),
        ),
    ]
    assert load_squad(squad_file(tmp_path), name="other").documents[0].filename.startswith("other/")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Fresno,_California", "fresno-california"),
        ("Sky_(United_Kingdom)", "sky-united-kingdom"),
        ("Zürich café", "zurich-cafe"),
        ("???", "untitled"),
        ("a" * 80, "a" * 60),
    ],
)
def test_slug(text, expected):
    assert slug(text) == expected


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("dev-v1.1.json", "squad-dev"),
        ("train-v1.1.json", "squad-train"),
        ("slice.json", "squad-slice"),
    ],
)
def test_squad_name_is_the_split(file, name):
    assert squad_name(Path(file)) == name


def test_the_real_squad_dev_set_loads_with_unique_names():
    if not SQUAD_DEV.is_file():
        pytest.skip(f"the shared SQuAD file is not at {SQUAD_DEV}")
    dataset = load_squad(SQUAD_DEV)
    assert (len(dataset.documents), len(dataset.questions)) == (2067, 10570)
    assert len({d.filename for d in dataset.documents}) == 2067
    assert all(len(d.filename) <= 256 and d.text for d in dataset.documents)
    assert all(q.answers for q in dataset.questions)


def beir_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "SciFact"
    (folder / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Cells", "text": "Cells divide."},
        {"_id": "d/2", "title": "", "text": "No title here."},
        {"_id": "d3", "title": "Only", "text": "Third."},
    ]
    queries = [
        {"_id": "q1", "text": "How do cells divide?"},
        {"_id": "q2", "text": "Judged but nothing relevant"},
        {"_id": "q3", "text": "Never judged"},
    ]
    for name, rows in (("corpus", corpus), ("queries", queries)):
        (folder / f"{name}.jsonl").write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td/2\t1\nq1\td3\t0\nq2\td3\t0\n"
    )
    return folder


def test_beir_folder_gives_documents_queries_and_graded_qrels(tmp_path):
    dataset = load_beir(beir_folder(tmp_path))
    assert dataset.name == "beir-scifact"
    assert [(d.filename, d.text) for d in dataset.documents] == [
        ("beir-scifact/d1.txt", "Cells\n\nCells divide."),
        ("beir-scifact/d%2F2.txt", "No title here."),
        ("beir-scifact/d3.txt", "Only\n\nThird."),
    ]
    assert dataset.questions == [
        Question(
            "q1",
            "How do cells divide?",
            {"beir-scifact/d1.txt": 2, "beir-scifact/d%2F2.txt": 1, "beir-scifact/d3.txt": 0},
        )
    ]
    assert dataset.notes == ["1 qrels queries have no relevant document or no text"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("query-id\tcorpus-id\tscore\nq\td\t1\n", {"q": {"d": 1}}),
        ("q\td\t1\nq\te\t2\n", {"q": {"d": 1, "e": 2}}),  # no header
        ("q\td\t-1\n\n", {"q": {"d": -1}}),
    ],
)
def test_qrels(tmp_path, text, expected):
    path = tmp_path / "test.tsv"
    path.write_text(text)
    assert load_qrels(path) == expected


def test_qrels_refuse_a_malformed_line(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq d 1\n")
    with pytest.raises(ValueError, match=":2: expected 3"):
        load_qrels(path)


def test_beir_ids_stay_distinct_after_escaping():
    assert beir_filename("b", "a/b") != beir_filename("b", "a_b")
    assert beir_filename("b", "../x") == "b/..%2Fx.txt"


def test_sample_is_seeded_and_keeps_dataset_order():
    questions = [Question(str(n), f"q{n}", {}) for n in range(100)]
    first = sample(questions, 10, seed=0)
    assert first == sample(questions, 10, seed=0)
    assert first != sample(questions, 10, seed=1)
    assert [q.id for q in first] == sorted((q.id for q in first), key=int)
    assert sample(questions, None, seed=0) == questions
    assert sample(questions, 500, seed=0) == questions
    assert sample(questions, 0, seed=0) == []
