"""Regenerate the binary and table files of the sample corpus.

The sample corpus (``data/corpus``) is a small set of original documents about the public library
of Larkhaven, a fictional harbour city: opening hours, branches, history, events, recipes from the
lunch club, gardening, bicycle repair and the astronomy club. It exists so that search demos and
tests have something coherent to work on. The ``.md``, ``.txt`` and ``.html`` files are written by
hand and committed as they are; a few of them carry deliberate quirks that the readers must handle
(``gardening/seed-library.txt`` starts with a UTF-8 BOM, ``library/accessibility.txt`` uses CRLF
line endings, the HTML pages contain scripts, styles and a ``noscript`` that must not be indexed).

This script writes the rest, from text kept in this file:

* ``data/corpus/library/annual-report-2023.pdf`` and ``data/corpus/bicycle/repair-cafe-flyer.pdf``:
  minimal PDFs written by hand (Helvetica, one text stream per page) so no PDF library is needed;
* ``data/corpus/library/meeting-rooms.docx`` and ``data/corpus/gardening/plot-allocation.docx``:
  python-docx, with a table each, zip timestamps and core properties pinned;
* ``data/corpus_table/faq.jsonl``, ``faq.csv`` and ``faq.parquet``: the same 20 questions, columns
  ``id``, ``question``, ``answer`` and ``text`` (question and answer together, the column to embed).

The output is byte-for-byte the same on every run (for a given python-docx and pyarrow version).
The generated files are committed; the pipeline itself never runs this script.

Usage: ``python scripts/make_sample_corpus.py [--root DIR]`` (default: the repository root).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import textwrap
import zipfile
from pathlib import Path

ANNUAL_REPORT = [
    """Larkhaven Public Library - Annual Report 2023""",
    """The year in numbers. The library lent 702,418 items in 2023, four per cent more than in 2022.
    Digital loans of e-books and audiobooks made up 231,090 of them. The four buildings received
    612,000 visits, and the library website and app were used 1.4 million times. 4,806 people
    joined the library, a third of them children under twelve.""",
    """Events. We ran 2,214 events with 48,900 attendances. Story times were the most popular
    regular event, with more than 11,000 attendances across the four buildings. The Bicycle Repair
    Cafe helped with 640 bicycles, and the astronomy club held nineteen observing nights on the
    roof of the Central Library, eleven of them under clear skies.""",
    """Buildings. The lift at the Harbour Branch was replaced in the spring, and the branch was
    closed for three weeks while the work was done. Its books were lent from a table in the ferry
    terminal, as they were after the war. The glass roof of the Central Library reading room was
    cleaned and resealed for the first time since 1998, and readers noticed the difference on the
    first sunny afternoon.""",
    """Collections. We added 38,500 new items, including 2,100 in languages other than English. The
    local history team finished cataloguing the Larkhaven Shipping Company ledgers, with the help of
    volunteers who transcribed more than 9,000 pages by hand. The ledgers can now be searched
    online by ship name, cargo and port.""",
    """Volunteers. 312 volunteers gave 41,000 hours of their time: at the homework table, in the
    repair cafe, in the community garden, on the home library service and in the harbour history
    group. We thank every one of them.""",
    """Money. The library spent 6.2 million crowns in 2023. Staff costs were 61 per cent of the total,
    books and digital content 18 per cent, buildings 14 per cent and everything else 7 per cent.
    Fines and fees brought in 38,000 crowns, all of which went to the book fund.""",
    """Looking ahead. In 2024 we will extend opening hours at the Millbrook Branch to Saturday
    afternoons, start lending musical instruments from the Northgate Branch, and begin digitising
    the newspaper archive from 1851 to 1900 so that it can be searched from home.""",
]

REPAIR_FLYER = [
    """Bicycle Repair Cafe - every second Saturday, 10:00 to 13:00""",
    """In the courtyard behind the Central Library, Quarry Square. Free. No booking needed.""",
    """Bring your bicycle and fix it yourself with help from our volunteer mechanics. We have
    workstands, tools, a track pump with every kind of valve head, and spare parts at cost price:
    inner tubes, brake pads, cables, chains and lights.""",
    """Common jobs we help with: punctures, brakes that rub or squeal, gears that jump or will not
    change, wobbly wheels, loose handlebars, creaking cranks, chains that fall off, and setting the
    saddle to the right height.""",
    """Please clean your bicycle before you come if it is very muddy. Children are welcome with an
    adult. If it rains, we move into the bicycle shed by the library car park.""",
    """Volunteers wanted: if you can true a wheel or bleed a brake, or you would like to learn,
    ask for Dev or Marguerite at the repair cafe or leave your name at the enquiry desk.""",
]

MEETING_ROOMS_INTRO = [
    "Booking a Meeting Room",
    "Community groups, charities, clubs and residents may book rooms in library buildings for "
    "meetings, classes and small events. Rooms are free for groups that are open to the public and "
    "charge nothing to attend; other bookings pay the hourly rate below.",
    "Bookings are made at least three days ahead at any counter or by phone. The person who books is "
    "responsible for the room, for leaving it tidy and for making sure everyone leaves the building "
    "by closing time.",
]
MEETING_ROOMS_TABLE = [
    ("Room", "Building", "Seats", "Hourly rate", "Equipment"),
    ("Ilsley Room", "Central Library", "60", "12 crowns", "projector, hearing loop, kitchen"),
    ("Study Room 1", "Central Library", "4", "free", "large screen, whiteboard"),
    ("Maritime Room", "Harbour Branch", "12", "6 crowns", "large table, map drawers"),
    ("Hall", "Northgate Community Centre", "80", "15 crowns", "stage, piano, kitchen"),
    ("Schoolroom", "Millbrook Branch", "20", "5 crowns", "chairs and tables only"),
]
MEETING_ROOMS_OUTRO = [
    "Food and drink may be served in the Ilsley Room and the Northgate hall, which have kitchens. "
    "Please do not use candles or stick anything to the walls.",
    "To cancel, tell us at least one day ahead so that another group can use the room.",
]

PLOTS_INTRO = [
    "Plot Allocation at the Tanner's Lane Community Garden",
    "Twenty-eight raised beds are let to households each year, from March to February. The yearly "
    "fee is 15 crowns, or 5 crowns for households on a reduced library membership. Fees pay for "
    "compost, seed and repairs to the beds.",
    "Beds are allocated in February by lottery among everyone who applied by the end of January. "
    "Households that held a bed last year and kept it cultivated may renew without entering the "
    "lottery. Beds left untended for eight weeks in the growing season are offered to the waiting "
    "list after a reminder.",
]
PLOTS_TABLE = [
    ("Bed size", "Number", "Best for", "Yearly fee"),
    ("Deep bed, 1.2 m x 3 m", "8", "potatoes, carrots, parsnips", "15 crowns"),
    ("Standard bed, 1.2 m x 2.4 m", "14", "brassicas, beans, onions", "15 crowns"),
    ("Shallow bed, 1 m x 2 m", "4", "salad leaves, herbs", "10 crowns"),
    ("Raised table, wheelchair height", "2", "herbs, strawberries, salads", "10 crowns"),
]
PLOTS_OUTRO = [
    "Tenants agree to garden without slug pellets or weedkillers, to share the water butts fairly and "
    "to come to at least two Saturday work parties a year.",
]

FAQ = [
    ("faq-001", "How do I join the library?",
     "Bring one document with your name and one with your address, less than three months old, to "
     "any counter. Membership is free for anyone who lives, works or studies in Larkhaven."),
    ("faq-002", "How many books can I borrow?",
     "Adult cards may borrow twenty items at once, junior cards twelve and temporary cards five."),
    ("faq-003", "How long can I keep a book?",
     "Three weeks for books and audiobooks, one week for films, games and quick-read titles."),
    ("faq-004", "Can I renew my loans?",
     "Yes, up to three times online, by phone or at a counter, unless someone has reserved the item."),
    ("faq-005", "Are there late fees for children?",
     "No. Junior cards never pay late fees, and neither do readers over seventy."),
    ("faq-006", "When is the Central Library open on Sundays?",
     "From 12:00 to 16:00. The branches are closed on Sundays."),
    ("faq-007", "Where can I return books when the library is closed?",
     "Use the return chute beside the main doors of the Central Library, open day and night."),
    ("faq-008", "Can I print and scan at the library?",
     "Yes. Every building has a printer; the Central Library and Harbour Branch also have scanners."),
    ("faq-009", "How do I book a study room?",
     "Book up to two weeks ahead online, by phone or at the enquiry desk, for up to three hours a day."),
    ("faq-010", "Does the library lend telescopes?",
     "The astronomy club lends a 130 mm reflector to members after a handling session, and binoculars "
     "can be borrowed with a library card."),
    ("faq-011", "When is the Bicycle Repair Cafe?",
     "Every second Saturday from 10:00 to 13:00 in the courtyard behind the Central Library."),
    ("faq-012", "How do I get a bed in the community garden?",
     "Apply by the end of January; beds are allocated by lottery in February."),
    ("faq-013", "Can I borrow seeds?",
     "Yes. Take up to five envelopes a season from the seed library at Tanner's Lane or Northgate."),
    ("faq-014", "Is there a home delivery service?",
     "The home library service brings books every four weeks to readers who cannot visit a branch."),
    ("faq-015", "Are the buildings accessible?",
     "All four buildings have step-free entrances and hearing loops at the counters."),
    ("faq-016", "Can I bring my dog?",
     "Assistance dogs are welcome in every building. Other dogs must wait outside."),
    ("faq-017", "How do I read old newspapers?",
     "The online archive goes back to 1851 and is free with a library card, at home or in a branch."),
    ("faq-018", "Can I volunteer?",
     "Yes. Ask at any counter; roles include tutoring, the repair cafe, gardening and the home service."),
    ("faq-019", "What happens if I lose a book?",
     "Tell us. We charge the replacement cost and refund it if you return the book within six months."),
    ("faq-020", "Where is the Harbour Branch?",
     "Upstairs in the old customs house at the end of Wharf Street, next to the ferry terminal."),
]

_FIXED_TIME = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def write_pdf(path: Path, paragraphs: list[str]) -> None:
    """A minimal PDF 1.4: Helvetica, 11 pt, text wrapped at 90 columns, 54 lines a page."""
    lines: list[str] = []
    for paragraph in paragraphs:
        lines.extend(textwrap.wrap(" ".join(paragraph.split()), 90) + [""])
    pages = [lines[i : i + 54] for i in range(0, len(lines), 54)]
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", _pdf_font()]
    kids = []
    for page in pages:
        stream = _pdf_stream(page)
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        kids.append(len(objects) + 1)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (len(objects))
        )
    refs = b" ".join(b"%d 0 R" % k for k in kids)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (refs, len(kids))
    path.write_bytes(_pdf_file(objects))


def _pdf_font() -> bytes:
    return b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"


def _pdf_stream(lines: list[str]) -> bytes:
    body = [b"BT /F1 11 Tf 14 TL 56 790 Td"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        body.append(b"(%s) Tj T*" % escaped.encode("cp1252"))
    body.append(b"ET")
    return b"\n".join(body)


def _pdf_file(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def write_docx(path: Path, intro: list[str], table: list[tuple], outro: list[str]) -> None:
    """Heading, paragraphs, a table, paragraphs; zip entries and core dates pinned."""
    import docx

    document = docx.Document()
    document.add_heading(intro[0], level=1)
    for text in intro[1:]:
        document.add_paragraph(text)
    grid = document.add_table(rows=len(table), cols=len(table[0]))
    for row, values in zip(grid.rows, table):
        for cell, value in zip(row.cells, values):
            cell.text = value
    for text in outro:
        document.add_paragraph(text)
    props = document.core_properties
    props.author = props.last_modified_by = "Larkhaven Public Library"
    props.created = props.modified = _FIXED_TIME.replace(tzinfo=None)
    buffer = io.BytesIO()
    document.save(buffer)
    path.write_bytes(_pin_zip(buffer.getvalue()))


def _pin_zip(data: bytes) -> bytes:
    """Same zip with every entry dated 1980-01-01, so reruns give identical bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            pinned = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            pinned.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(pinned, src.read(info.filename))
    return out.getvalue()


def write_faq(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"id": i, "question": q, "answer": a, "text": f"{q}\n\n{a}"} for i, q, a in FAQ
    ]
    with open(folder / "faq.jsonl", "w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(folder / "faq.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), folder / "faq.parquet", compression="zstd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    root = parser.parse_args().root
    corpus, tables = root / "data" / "corpus", root / "data" / "corpus_table"
    for folder in (corpus / "library", corpus / "bicycle", corpus / "gardening", tables):
        folder.mkdir(parents=True, exist_ok=True)
    write_pdf(corpus / "library" / "annual-report-2023.pdf", ANNUAL_REPORT)
    write_pdf(corpus / "bicycle" / "repair-cafe-flyer.pdf", REPAIR_FLYER)
    write_docx(corpus / "library" / "meeting-rooms.docx", MEETING_ROOMS_INTRO,
               MEETING_ROOMS_TABLE, MEETING_ROOMS_OUTRO)
    write_docx(corpus / "gardening" / "plot-allocation.docx", PLOTS_INTRO, PLOTS_TABLE, PLOTS_OUTRO)
    write_faq(tables)


if __name__ == "__main__":
    main()
