"""Chunking: limits, determinism, overlap, offsets, stability under edits, settings."""

from __future__ import annotations

import random

import pydantic
import pytest

from quant_batch.corpus.chunking import ChunkSettings, chunk_text

WORDS = "the library garden bicycle star harbour bread compost telescope chain of and a to".split()


def sentence(rnd: random.Random) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(4, 18))).capitalize() + "."


def paragraph(rnd: random.Random, sentences: tuple[int, int] = (3, 12)) -> str:
    return " ".join(sentence(rnd) for _ in range(rnd.randint(*sentences)))


def random_text(rnd: random.Random) -> str:
    """Paragraphs, lists, long lines, odd whitespace, non-ASCII and the occasional huge word."""
    blocks = []
    for _ in range(rnd.randint(0, 30)):
        kind = rnd.random()
        if kind < 0.6:
            blocks.append(paragraph(rnd))
        elif kind < 0.75:
            blocks.append("\n".join(f"- {sentence(rnd)}" for _ in range(rnd.randint(1, 8))))
        elif kind < 0.85:
            blocks.append("".join(rnd.choice("abcdéfg😀") for _ in range(rnd.randint(1, 5000))))
        elif kind < 0.95:
            blocks.append(" ".join(sentence(rnd) for _ in range(rnd.randint(20, 80))))
        else:
            blocks.append(" \t ")
    return rnd.choice(["\n\n", "\n \n\n", "\r\n\r\n"]).join(blocks)


def check_chunks(text: str, settings: ChunkSettings) -> list:
    chunks = chunk_text(text, settings)
    for i, chunk in enumerate(chunks):
        assert chunk.position == i
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text.strip() and chunk.text == chunk.text.strip()
        assert len(chunk.text) <= settings.max_chars
    for prev, cur in zip(chunks, chunks[1:]):
        assert prev.start < cur.start and prev.end < cur.end
        assert cur.start >= prev.start  # overlap never reaches back past the previous chunk
    if chunks:  # every non-space character lies in some chunk
        covered = set()
        for chunk in chunks:
            covered.update(range(chunk.start, chunk.end))
        assert all(i in covered for i, c in enumerate(text) if not c.isspace())
    return chunks


@pytest.mark.parametrize("seed", range(40))
def test_limits_offsets_and_coverage_on_random_texts(seed):
    rnd = random.Random(seed)
    settings = ChunkSettings(
        max_chars=rnd.choice([100, 257, 1000, 2000, 8000]),
        overlap_chars=0,
        min_chars=0,
    )
    overlap = rnd.randint(0, settings.max_chars // 2)
    settings = ChunkSettings(
        max_chars=settings.max_chars,
        overlap_chars=overlap,
        min_chars=rnd.randint(0, settings.max_chars // 2),
    )
    check_chunks(random_text(rnd), settings)


def test_blank_text_gives_no_chunks():
    assert chunk_text("", ChunkSettings()) == []
    assert chunk_text(" \n\t\n  ", ChunkSettings()) == []


def test_short_text_is_one_trimmed_chunk():
    text = "\n\n  Opening hours: 09:00 to 20:00.  \n"
    [chunk] = chunk_text(text, ChunkSettings())
    assert chunk.text == "Opening hours: 09:00 to 20:00."
    assert (chunk.start, chunk.end) == (4, 34)


def test_deterministic():
    text = random_text(random.Random(7)) * 3
    settings = ChunkSettings(max_chars=700, overlap_chars=100)
    assert chunk_text(text, settings) == chunk_text(text, settings)


def test_huge_single_word_is_cut_hard():
    text = "x" * 60_000
    chunks = check_chunks(text, ChunkSettings())
    assert len(chunks) >= 30
    assert all(len(c.text) <= 2000 for c in chunks)


def test_cuts_prefer_paragraphs_then_sentences_then_words():
    rnd = random.Random(3)
    paragraphs = [paragraph(rnd, (2, 4)) for _ in range(12)]
    text = "\n\n".join(paragraphs)
    settings = ChunkSettings(max_chars=1000, overlap_chars=0, min_chars=200)
    for chunk in check_chunks(text, settings):
        assert chunk.text.endswith(".")
        assert chunk.start == 0 or text[chunk.start - 2 : chunk.start] == "\n\n"
    one_paragraph = " ".join(sentence(rnd) for _ in range(100))
    for chunk in check_chunks(one_paragraph, settings):
        assert chunk.text.endswith(".")
    words = " ".join(rnd.choice(WORDS) for _ in range(1000))
    for chunk in check_chunks(words, settings):
        assert chunk.text.split()[-1] in WORDS


def test_overlap_repeats_the_tail_of_the_previous_chunk_from_a_word_start():
    rnd = random.Random(5)
    text = "\n\n".join(paragraph(rnd) for _ in range(30))
    settings = ChunkSettings(max_chars=1500, overlap_chars=200)
    chunks = check_chunks(text, settings)
    assert len(chunks) > 5
    for prev, cur in zip(chunks, chunks[1:]):
        shared = prev.end - cur.start
        assert 0 < shared <= 200
        assert shared >= 150  # about overlap_chars, minus at most one word
        assert cur.start == 0 or text[cur.start - 1].isspace()
        assert cur.text.startswith(prev.text[-shared:])


def test_no_overlap_when_disabled():
    text = "\n\n".join(paragraph(random.Random(9)) for _ in range(30))
    chunks = check_chunks(text, ChunkSettings(max_chars=1000, overlap_chars=0))
    assert all(prev.end < cur.start for prev, cur in zip(chunks, chunks[1:]))


@pytest.mark.parametrize("seed", range(10))
def test_editing_one_paragraph_leaves_most_chunks_unchanged(seed):
    rnd = random.Random(seed)
    paragraphs = [paragraph(rnd) for _ in range(20)]
    edited = list(paragraphs)
    edited[10] = paragraph(rnd)
    settings = ChunkSettings()
    before = [c.text for c in chunk_text("\n\n".join(paragraphs), settings)]
    after = {c.text for c in chunk_text("\n\n".join(edited), settings)}
    unchanged = sum(text in after for text in before) / len(before)
    assert len(before) >= 6
    assert unchanged >= 0.7


def test_inserting_a_sentence_only_touches_nearby_chunks():
    rnd = random.Random(11)
    paragraphs = [paragraph(rnd) for _ in range(40)]
    edited = list(paragraphs)
    edited[5] = edited[5] + " An extra sentence about the harbour."
    settings = ChunkSettings()
    before = [c.text for c in chunk_text("\n\n".join(paragraphs), settings)]
    after = {c.text for c in chunk_text("\n\n".join(edited), settings)}
    assert sum(text not in after for text in before) <= 3


def test_fingerprint_is_stable_and_tracks_every_setting():
    base = ChunkSettings()
    assert base.fingerprint() == ChunkSettings().fingerprint()
    assert len(base.fingerprint()) == 16
    others = [
        ChunkSettings(max_chars=2001),
        ChunkSettings(overlap_chars=201),
        ChunkSettings(min_chars=401),
    ]
    assert len({base.fingerprint(), *(s.fingerprint() for s in others)}) == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_chars": 99},
        {"max_chars": 50_001},
        {"overlap_chars": -1},
        {"max_chars": 1000, "overlap_chars": 501},
        {"max_chars": 1000, "min_chars": 501},
        {"min_chars": -5},
        {"chunk_size": 10},
    ],
)
def test_invalid_settings_are_rejected(kwargs):
    with pytest.raises(pydantic.ValidationError):
        ChunkSettings(**kwargs)


def test_settings_are_frozen():
    with pytest.raises(pydantic.ValidationError):
        ChunkSettings().max_chars = 10  # type: ignore[misc]


def _eager_cores(text, settings):
    from quant_batch.corpus.chunking import _NON_SPACE, _split

    first = _NON_SPACE.search(text)
    if first is None:
        return []
    return _split(
        text, first.start(), len(text.rstrip()), 0, settings.max_chars - settings.overlap_chars, settings.min_chars
    )


@pytest.mark.parametrize("seed", range(40))
def test_streamed_chunks_equal_cutting_the_whole_text_at_once(seed):
    """iter_chunks walks the top level lazily; its cores must be exactly the eager split's."""
    import random

    from quant_batch.corpus.chunking import iter_chunks

    rng = random.Random(seed)
    words = ["lantern", "harbour", "a", "meadow.", "quarry!", "x" * rng.randint(1, 900), "river?", "tunnel"]
    seps = [" ", " ", " ", "\n", "\n\n", ". ", "\n \n"] if seed % 4 else [" "]  # some texts have no breaks
    text = "".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randint(0, 3000)))
    settings = ChunkSettings(max_chars=rng.choice([200, 600, 2000]), overlap_chars=rng.choice([0, 50, 100]))
    streamed = list(iter_chunks(text, settings))
    cores = _eager_cores(text, settings)
    assert [c.end for c in streamed] == [e for _, e in cores]
    assert all(c.text == text[c.start : c.end] and len(c.text) <= settings.max_chars for c in streamed)
