"""Readers: every format, hostile inputs, tables, symlinks. Real files in tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quant_batch.corpus.readers import (
    SUPPORTED_SUFFIXES,
    Document,
    DocumentError,
    iter_folder,
    iter_table,
)
from quant_batch.errors import InputError

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data" / "corpus"
TABLES = REPO / "data" / "corpus_table"


def read_all(root: Path, **kwargs) -> dict[str, Document | DocumentError]:
    return {item.source_path: item for item in iter_folder(root, **kwargs)}


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def test_sample_corpus_reads_every_format_without_errors():
    items = list(iter_folder(CORPUS))
    errors = [str(item) for item in items if isinstance(item, DocumentError)]
    assert errors == []
    suffixes = {Path(item.source_path).suffix for item in items}
    assert suffixes == {".md", ".txt", ".html", ".pdf", ".docx"}
    assert len(items) >= 28
    assert [item.source_path for item in items] == sorted(item.source_path for item in items)
    for doc in items:
        assert doc.doc_id == doc.source_path
        assert doc.content_hash == hashlib.sha256(doc.text.encode()).hexdigest()
        assert "\r" not in doc.text and doc.text.strip()


def test_sample_corpus_content_by_format():
    docs = read_all(CORPUS)
    assert "Quarry Square" in docs["library/opening-hours.md"].text
    assert docs["gardening/seed-library.txt"].text.startswith("THE SEED LIBRARY")  # BOM dropped
    html = docs["library/study-rooms.html"].text
    assert "four small study rooms" in html
    assert "analytics" not in html and "font-family" not in html and "JavaScript" not in html
    assert "\n\n" in html
    pdf = docs["library/annual-report-2023.pdf"].text
    assert "702,418 items" in pdf and "Looking ahead" in pdf
    docx = docs["library/meeting-rooms.docx"].text
    assert "Booking a Meeting Room" in docx
    assert "Ilsley Room | Central Library | 60" in docx  # table cells


def test_order_and_output_are_deterministic():
    first = [(d.doc_id, d.content_hash) for d in iter_folder(CORPUS)]
    assert first == [(d.doc_id, d.content_hash) for d in iter_folder(CORPUS)]


def test_include_exclude_hidden_unsupported_and_tables_skipped(tmp_path):
    write(tmp_path / "a.md", "# A\n\ntext")
    write(tmp_path / "sub" / "b.txt", "b text")
    write(tmp_path / "sub" / "deep" / "c.txt", "c text")
    write(tmp_path / ".hidden.txt", "secret")
    write(tmp_path / ".git" / "notes.txt", "secret")
    write(tmp_path / "image.png", b"\x89PNG\r\n\x1a\n")
    write(tmp_path / "rows.csv", "id,text\n1,hello\n")
    write(tmp_path / "rows.jsonl", '{"id": 1}\n')
    assert list(read_all(tmp_path)) == ["a.md", "sub/b.txt", "sub/deep/c.txt"]
    assert list(read_all(tmp_path, include=["*.md"])) == ["a.md"]
    assert list(read_all(tmp_path, include=["sub/**/*.txt"])) == ["sub/b.txt", "sub/deep/c.txt"]
    assert list(read_all(tmp_path, exclude=["sub/deep/**"])) == ["a.md", "sub/b.txt"]
    assert ".csv" not in SUPPORTED_SUFFIXES


def test_missing_root_raises(tmp_path):
    with pytest.raises(InputError):
        list(iter_folder(tmp_path / "nope"))


def test_hostile_files_become_errors_and_iteration_continues(tmp_path):
    rnd = random.Random(0)
    write(tmp_path / "01-binary.txt", bytes(rnd.randrange(256) for _ in range(4096)) + b"\x00")
    write(tmp_path / "02-empty.txt", b"")
    write(tmp_path / "03-blank.md", " \n\t\n")
    latin1 = "Café crème brûlée à la carte, déjà vu.\n".encode("latin-1")
    write(tmp_path / "04-latin1.txt", latin1 * 20)
    noise = bytes(b for b in (rnd.randrange(0x80, 0x100) for _ in range(3000)))
    write(tmp_path / "05-noise.txt", noise)
    write(tmp_path / "06-corrupt.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage")
    write(tmp_path / "07-corrupt.docx", b"PK\x03\x04 not really a zip")
    write(tmp_path / "08-empty.html", "<html><script>only()</script></html>")
    write(tmp_path / "09-fine.md", "still read")
    items = read_all(tmp_path)
    assert list(items) == sorted(items)  # nothing was dropped, nothing stopped the iteration

    def error(name: str) -> str:
        item = items[name]
        assert isinstance(item, DocumentError), item
        assert str(item).startswith(f"{name}: ")
        return item.message

    assert "binary file with a text extension" in error("01-binary.txt")
    assert "empty document" in error("02-empty.txt")
    assert "empty document" in error("03-blank.md")
    assert items["04-latin1.txt"].text.startswith("Café crème brûlée")
    assert "not valid UTF-8" in error("05-noise.txt") or "binary" in error("05-noise.txt")
    assert "corrupt PDF" in error("06-corrupt.pdf")
    assert "corrupt DOCX" in error("07-corrupt.docx")
    assert "empty document" in error("08-empty.html")
    assert items["09-fine.md"].text == "still read"


def test_encrypted_pdf_is_an_error(tmp_path):
    import pypdf

    writer = pypdf.PdfWriter(clone_from=CORPUS / "bicycle" / "repair-cafe-flyer.pdf")
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    with open(tmp_path / "locked.pdf", "wb") as handle:
        writer.write(handle)
    [item] = iter_folder(tmp_path)
    assert isinstance(item, DocumentError) and "encrypted PDF" in item.message


def test_utf8_bom_utf16_and_crlf(tmp_path):
    write(tmp_path / "bom.txt", b"\xef\xbb\xbfline one\r\nline two\rline three")
    write(tmp_path / "wide.txt", "hello UTF-16\n".encode("utf-16"))
    items = read_all(tmp_path)
    assert items["bom.txt"].text == "line one\nline two\nline three"
    assert items["wide.txt"].text == "hello UTF-16\n"


def test_huge_single_line_file_reads(tmp_path):
    write(tmp_path / "huge.txt", "word " * 600_000)  # 3 MB on one line
    [doc] = iter_folder(tmp_path)
    assert isinstance(doc, Document) and len(doc.text) == 3_000_000


def test_deeply_nested_html_does_not_recurse(tmp_path):
    html = "<html><body>" + "<div>" * 5000 + "<p>deep text</p>" + "</div>" * 5000 + "</body></html>"
    write(tmp_path / "deep.html", html)
    write(tmp_path / "unclosed.html", "<div>" * 5000 + "still text")
    items = read_all(tmp_path)
    assert items["deep.html"].text == "deep text"
    assert items["unclosed.html"].text == "still text"


def test_html_keeps_paragraphs_and_drops_hidden_parts(tmp_path):
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<h1>Title</h1><p>First   para\n with <b>bold</b> &amp; entity.</p>"
        "<template><p>never</p></template><noscript>nojs</noscript>"
        "<p>Second<br>line</p><pre>  keep\n   spacing</pre></body></html>"
    )
    write(tmp_path / "page.htm", html)
    [doc] = iter_folder(tmp_path)
    expected = "Title\n\nFirst para with bold & entity.\n\nSecond\nline\n\n  keep\n   spacing"
    assert doc.text == expected


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_symlinks_escaping_the_root_are_reported_not_followed(tmp_path):
    outside = write(tmp_path / "outside" / "secret.txt", "do not read")
    root = tmp_path / "root"
    write(root / "inside.txt", "inside")
    (root / "link-out.txt").symlink_to(outside)
    (root / "dir-out").symlink_to(outside.parent, target_is_directory=True)
    (root / "link-in.txt").symlink_to(root / "inside.txt")
    items = read_all(root)
    assert sorted(items) == ["dir-out", "inside.txt", "link-in.txt", "link-out.txt"]
    for name in ("dir-out", "link-out.txt"):
        assert isinstance(items[name], DocumentError) and "outside the source folder" in items[name].message
    assert all("do not read" not in getattr(item, "text", "") for item in items.values())


@pytest.mark.parametrize("name", ["faq.jsonl", "faq.csv", "faq.parquet"])
def test_sample_tables_read(name):
    sample = REPO / "quant_batch" / "data" / "sample"
    docs = list(iter_table(sample / "corpus_table" / name, id_column="id", text_column="text", root=sample))
    assert len(docs) == 20 and all(isinstance(d, Document) for d in docs)
    assert docs[0].doc_id == f"corpus_table/{name}#faq-001"
    assert docs[0].source_path == f"corpus_table/{name}"
    assert docs[0].text.startswith("How do I join the library?")
    first_line = {"faq.jsonl": 1, "faq.csv": 2, "faq.parquet": 1}[name]
    assert docs[0].line == first_line


def test_table_source_path_defaults_to_file_name():
    [first, *_] = iter_table(TABLES / "faq.csv", id_column="id", text_column="text")
    assert first.doc_id == "faq.csv#faq-001"


def test_jsonl_broken_lines_empty_and_duplicate_ids(tmp_path):
    lines = [
        "{broken",
        json.dumps({"id": "a", "text": "first"}),
        "",
        json.dumps({"id": "b", "text": "second"}),
        '{"id": "c", "text": "unterminated',
        json.dumps({"id": "a", "text": "again"}),
        json.dumps({"id": "", "text": "no id"}),
        json.dumps({"id": "d", "text": "   "}),
        json.dumps({"id": 7, "text": "numeric id"}),
        json.dumps([1, 2]),
        json.dumps({"id": "e", "text": {"nested": True}}),
    ]
    path = write(tmp_path / "rows.jsonl", "\n".join(lines) + "\n")
    items = list(iter_table(path, id_column="id", text_column="text"))
    summary = [(i.line, "doc", i.doc_id) if isinstance(i, Document) else (i.line, "err", i.message) for i in items]
    assert [s[:2] for s in summary] == [
        (1, "err"),
        (2, "doc"),
        (4, "doc"),
        (5, "err"),
        (6, "err"),
        (7, "err"),
        (8, "err"),
        (9, "doc"),
        (10, "err"),
        (11, "err"),
    ]
    assert "invalid JSON" in summary[0][2]
    assert summary[1][2] == "rows.jsonl#a" and summary[7][2] == "rows.jsonl#7"
    assert "duplicate id 'a'" in summary[4][2] and "line 2" in summary[4][2]
    assert "empty id" in summary[5][2] and "empty document" in summary[6][2]
    assert str(items[0]) == f"rows.jsonl:1: {items[0].message}"


def test_missing_column_raises_before_any_row(tmp_path):
    csv_path = write(tmp_path / "rows.csv", "id,body\n1,hello\n")
    with pytest.raises(InputError) as caught:
        next(iter_table(csv_path, id_column="id", text_column="text"))
    assert caught.value.path == "rows.csv" and "'text'" in str(caught.value)
    jsonl = write(tmp_path / "rows.jsonl", '{oops\n{"id": 1, "body": "x"}\n')
    with pytest.raises(InputError, match="'text'"):
        next(iter_table(jsonl, id_column="id", text_column="text"))
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"key": ["1"], "text": ["x"]}), parquet)
    with pytest.raises(InputError, match="'id'"):
        next(iter_table(parquet, id_column="id", text_column="text"))


def test_csv_lines_quoted_newlines_and_duplicates(tmp_path):
    content = 'id,text\n1,"multi\nline text"\n2,plain\n\n1,dup\n3,\n'
    path = write(tmp_path / "rows.csv", content)
    items = list(iter_table(path, id_column="id", text_column="text"))
    assert [(type(i).__name__, i.line) for i in items] == [
        ("Document", 2),
        ("Document", 4),
        ("DocumentError", 6),
        ("DocumentError", 7),
    ]
    assert items[0].text == "multi\nline text"
    assert "duplicate id '1'" in items[2].message


def test_parquet_is_read_in_batches_with_row_numbers(tmp_path):
    n = 3000  # more than one batch
    ids = [f"r{i}" for i in range(n)]
    texts = [f"text {i}" for i in range(n)]
    texts[2500] = None
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"id": ids, "text": texts, "extra": list(range(n))}), path, row_group_size=700)
    items = list(iter_table(path, id_column="id", text_column="text"))
    assert len(items) == n
    assert items[2999].line == 3000 and items[2999].doc_id == "big.parquet#r2999"
    assert isinstance(items[2500], DocumentError) and items[2500].line == 2501


def test_bad_table_files(tmp_path):
    with pytest.raises(InputError, match="unsupported table format"):
        next(iter_table(write(tmp_path / "rows.xlsx", b"x"), id_column="id", text_column="t"))
    with pytest.raises(InputError, match="Parquet"):
        next(iter_table(write(tmp_path / "bad.parquet", b"nope"), id_column="id", text_column="t"))
    with pytest.raises(InputError, match="outside"):
        next(iter_table(TABLES / "faq.csv", id_column="id", text_column="text", root=tmp_path))


def test_corpus_copy_in_tmp_matches_repo(tmp_path):
    shutil.copytree(CORPUS, tmp_path / "corpus")
    here = [(d.doc_id, d.content_hash) for d in iter_folder(tmp_path / "corpus")]
    assert here == [(d.doc_id, d.content_hash) for d in iter_folder(CORPUS)]
