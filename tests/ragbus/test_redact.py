import pytest

from ragbus.redact import public

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        (
            "could not reach http://10.0.0.5:8080/embed: timed out",
            "could not reach <url>: timed out",
        ),
        ("refused by qdrant.internal.svc:6333", "refused by <address>"),
        ("cannot open /var/lib/ragbus/blobs/a/b.pdf: bad xref", "cannot open <path>: bad xref"),
        ("No such file: '/tmp/x/y.bin'", "No such file: '<path>'"),
    ],
)
def test_urls_addresses_and_paths_are_replaced_by_what_they_are(said, shown):
    assert public(said) == shown


@pytest.mark.parametrize(
    "plain",
    [
        "pdf: 3 of 10 pages unreadable (scanned?)",
        "vectors are 384-dimensional, this index takes 768",
        "model sentence-transformers/all-MiniLM-L6-v2:int8-per-channel differs",
        "text/plain; 12:30; ratio 3:4",
    ],
)
def test_a_reason_without_them_is_left_as_it_is(plain):
    assert public(plain) == plain
