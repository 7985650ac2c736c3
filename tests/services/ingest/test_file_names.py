"""Uploaded file names are identities, never paths: whatever a client sends, what is kept is a
relative POSIX name with no way up, or the upload is refused."""

from pathlib import PurePosixPath

import pytest

from services.ingest.transform import RejectedUpload, check_upload, clean_filename

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("../../etc/passwd", "etc/passwd"),
        ("../../../../etc/shadow.txt", "etc/shadow.txt"),
        ("docs/../../../secret.md", "docs/secret.md"),
        ("/etc/passwd.txt", "etc/passwd.txt"),
        ("//server/share/a.md", "server/share/a.md"),
        ("..\\..\\windows\\win.ini.txt", "windows/win.ini.txt"),
        ("\\\\server\\share\\a.md", "server/share/a.md"),
        ("C:\\..\\boot.txt", "C:/boot.txt"),
        ("./././a.md", "a.md"),
        ("a/./b/../c.md", "a/b/c.md"),
        ("  ../a.md  ", "a.md"),
    ],
)
def test_a_path_like_name_becomes_a_relative_name_with_no_way_up(raw, cleaned):
    name = clean_filename(raw)
    assert name == cleaned
    path = PurePosixPath(name)
    assert not path.is_absolute()
    assert ".." not in path.parts and "." not in path.parts
    assert "\\" not in name


def test_a_traversal_to_a_file_without_a_supported_type_is_refused():
    with pytest.raises(RejectedUpload) as caught:
        check_upload(clean_filename("../../etc/passwd"), 10, max_bytes=100)
    assert caught.value.status_code == 415


@pytest.mark.parametrize(
    "raw",
    [
        "/",
        "../..",
        "..\\..\\",
        "./.",
        "   ",
        "a\x00.txt",
        "\x00../../etc/passwd.txt",
        "a\nb.txt",
        "a\rb.txt",
        "a\tb.txt",
        "a\x1b[31mred.txt",
        "a\x7f.txt",
        "a\x85.txt",
        "a\u2028b.txt",
        "a\u2029b.txt",
        "a\u202etxt.exe.md",
        "a\u2066b.md",
    ],
)
def test_names_with_no_name_left_or_control_characters_are_refused(raw):
    with pytest.raises(RejectedUpload) as caught:
        clean_filename(raw)
    assert caught.value.status_code == 400
