"""Shared pieces of the benchmarks: settings, the emulator, synthetic corpora, figures, profiles.

Every scenario runs in its own Python process (see ``__main__``), so process CPU time, peak RSS
and imported modules (Prefect) of one scenario never leak into another's figures.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import random
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TOKEN = "bench-token"
ORG = "bench-org"
MODEL = "amazon.titan-embed-text-v2:0"
DIMS = 1024


@dataclass
class Settings:
    """One benchmark session's knobs; plain data so it travels to scenario processes as JSON."""

    quick: bool = False
    n: int = 20_000
    """Texts in the embedding corpus (1 text = 1 chunk = 1 vector)."""
    concurrency: int = 8
    embed_latency: float = 0.15
    """Seconds the emulator adds to every embeddings call."""
    image_latency: float = 2.0
    """Seconds the emulator adds to every image-generation call."""
    images: int = 40
    memory_n: int = 10_000
    """The memory scenario runs memory_n and 10 × memory_n chunks."""
    rerun_n: int = 100_000
    search_n: int = 1_000_000
    search_queries: int = 20
    sdk_n: int | None = None
    """Texts the official-SDK loop embeds (None: the whole corpus); its rate is per text."""
    workdir: str = "/tmp/quant-batch-bench"
    keep: bool = False
    """Keep generated data under workdir (the 1M-vector search set is reused if present)."""

    @classmethod
    def quick_defaults(cls) -> dict[str, Any]:
        return {
            "quick": True,
            "n": 2_000,
            "images": 8,
            "image_latency": 0.5,
            "memory_n": 1_000,
            "rerun_n": 10_000,
            "search_n": 20_000,
            "search_queries": 5,
            "sdk_n": 1_000,
        }

    @property
    def root(self) -> Path:
        return Path(self.workdir)


@dataclass
class Figure:
    """One measured number, its target and whether it met it (``ok`` is None: no target)."""

    scenario: str
    name: str
    value: float
    unit: str = ""
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Outcome:
    """What a scenario hands back: figures, notes for the report, profiles of missed targets."""

    scenario: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0

    def add(
        self,
        name: str,
        value: float,
        unit: str = "",
        *,
        at_least: float | None = None,
        at_most: float | None = None,
        note: str = "",
    ) -> Figure:
        target, ok = "", None
        if at_least is not None:
            target, ok = f"≥ {at_least:g}", value >= at_least
        elif at_most is not None:
            target, ok = f"≤ {at_most:g}", value <= at_most
        fig = Figure(self.scenario, name, float(value), unit, target, ok, note)
        self.figures.append(fig)
        return fig

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        figs = [Figure(**f) for f in data.pop("figures", [])]
        return cls(**data, figures=figs)


def use_emulator_env(base_url: str) -> None:
    """Point ``build_client`` / ``ApiSettings.from_env`` at the emulator."""
    os.environ.update(
        QUANT_API_KEY=TOKEN, QUANT_ORGANIZATION=ORG, QUANT_BASE_URL=base_url, PREFECT_SERVER_ANALYTICS_ENABLED="false"
    )


@contextmanager
def emulator(*, embed_latency: float = 0.0, image_latency: float = 0.0) -> Iterator[Any]:
    """The emulator in its own process (it must not share our GIL), env pointed at it."""
    from quant_batch.emulator import EmulatorServer, FaultConfig

    latency = {"embeddings": embed_latency, "image-generation": image_latency}
    with EmulatorServer(token=TOKEN, mode="process", faults=FaultConfig(latency=latency)) as emu:
        use_emulator_env(emu.base_url)
        yield emu


def set_latency(emu: Any, *, embed_latency: float = 0.0, image_latency: float = 0.0) -> None:
    emu.set_faults(latency={"embeddings": embed_latency, "image-generation": image_latency})


def endpoint_calls(emu: Any, endpoint: str) -> int:
    return sum(emu.stats()["by_endpoint"].get(endpoint, {}).values())


# --- synthetic corpora -------------------------------------------------------------------------

_SYLLABLES = ("ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "da", "go", "zu", "ha", "be", "ty", "ex")


def vocabulary(size: int = 8_000, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def synthetic_texts(n: int, *, min_words: int, max_words: int, seed: int = 1) -> Iterator[str]:
    """``n`` distinct prose-like texts (a serial number makes each one unique)."""
    rng = random.Random(seed)
    vocab = vocabulary()
    for i in range(n):
        words = rng.choices(vocab, k=rng.randint(min_words, max_words))
        yield f"Record {i}: " + " ".join(words) + "."


def write_corpus_table(path: Path, n: int, *, min_words: int = 60, max_words: int = 140, seed: int = 1) -> Path:
    """A Parquet table source (``id``, ``text``) of ``n`` distinct texts, written in slices."""
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == n:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    texts = synthetic_texts(n, min_words=min_words, max_words=max_words, seed=seed)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n, 10_000):
            part = [next(texts) for _ in range(min(10_000, n - start))]
            writer.write_table(
                pa.table({"id": [f"doc-{start + i:07d}" for i in range(len(part))], "text": part}, schema=schema)
            )
    return path


def read_texts(path: Path) -> list[str]:
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def corpus_config(table: Path, out: Path, concurrency: int) -> Any:
    """A library run config: the table source, one chunk per text (max_chars above any text)."""
    from quant_batch.config_files import parse_config
    from quant_batch.embed.config import CorpusConfig

    data = {
        "sources": [{"table": str(table), "id_column": "id", "text_column": "text"}],
        "out": str(out),
        "chunking": {"max_chars": 4000, "overlap_chars": 0},
        "concurrency": concurrency,
    }
    return parse_config(CorpusConfig, data, source="bench")


def corpus_yaml(table: Path, out: Path | str, concurrency: int, path: Path) -> Path:
    import yaml

    data = {
        "sources": [{"table": str(table), "id_column": "id", "text_column": "text"}],
        "out": str(out),
        "chunking": {"max_chars": 4000, "overlap_chars": 0},
        "concurrency": concurrency,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def library_client(concurrency: int) -> Any:
    from quant_batch.client.config import ApiConfig, RateLimits
    from quant_batch.client.factory import build_client

    return build_client(ApiConfig(), RateLimits(), pool_size=concurrency)


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Measure:
    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def measured() -> Iterator[Measure]:
    """Wall time and this process's CPU time (all threads, user + system) of the block."""
    m = Measure()
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield m
    finally:
        m.wall = time.perf_counter() - w0
        m.cpu = time.process_time() - c0


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ThreadProfiler:
    """cProfile for code that fans out to worker threads: wrap the worker function with
    ``wrap``; each call gets its own profiler, and ``report`` merges them with the caller's."""

    def __init__(self, timer: Callable[[], float] | None = None) -> None:
        self.timer = timer
        self.main = self._new()
        self._profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def wrap(self, fn: Callable) -> Callable:
        def profiled(*args: Any, **kwargs: Any) -> Any:
            prof = self._new()
            with self._lock:
                self._profiles.append(prof)
            return prof.runcall(fn, *args, **kwargs)

        return profiled

    def _new(self) -> cProfile.Profile:
        return cProfile.Profile(self.timer) if self.timer else cProfile.Profile()

    def report(self, top: int = 25, sort: str = "cumulative") -> str:
        buf = io.StringIO()
        stats = pstats.Stats(self.main, stream=buf)
        for prof in self._profiles:
            stats.add(prof)
        stats.strip_dirs().sort_stats(sort).print_stats(top)
        return _trim_profile(buf.getvalue())


def _trim_profile(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    head = [line for line in lines[:start] if "function calls" in line]
    return "\n".join(head + lines[start:]).rstrip()
