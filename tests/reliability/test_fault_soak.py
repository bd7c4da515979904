"""Soak: a corpus run and a render run against an emulator that throttles, errors, drops and hangs.

Every unit must arrive exactly once: the final tables equal a clean run's (same keys, same vector
bytes, same image hashes), nothing is loaded or written twice, and units that ran out of retries
are finished by the next run. The fault counts the emulator injected are printed (run with -s).
"""

from __future__ import annotations

import time

from quant_batch.client import RetryPolicy
from quant_batch.config_files import parse_config
from quant_batch.embed.config import CorpusConfig
from quant_batch.embed.run import run_corpus
from quant_batch.emulator import FaultConfig
from quant_batch.emulator.faults import FaultInjector
from quant_batch.render.config import RenderConfig
from quant_batch.render.run import render_manifest
from tests.reliability.conftest import (
    FAST_RETRY,
    assert_no_duplicate_vectors,
    fast_client,
    image_snapshot,
    part_rows,
    png_files,
    query,
    table_config,
    vector_snapshot,
    write_prompt_manifest,
    write_text_table,
)

N_TEXTS, N_IMAGES = 2400, 30  # 120 embedding batches of 20, 30 image requests
HANG_SECONDS = 2.5
SOAK = FaultConfig(
    throttle_rate=0.10,
    retry_after=True,
    error_500_rate=0.025,
    error_503_rate=0.025,
    drop_rate=0.02,
    hang_rate=0.01,
    hang_seconds=HANG_SECONDS,
    seed=40,
)  # seed 40: every fault type occurs in both runs (see _seeded_faults)
STINGY = RetryPolicy(max_attempts=2, max_elapsed=10.0, backoff_initial=0.01, backoff_max=0.05)


def _corpus_cfg(table, out, **kw) -> CorpusConfig:
    kw = {"batch_size": 20, "concurrency": 6, **kw}
    return parse_config(CorpusConfig, table_config(table, out, **kw), source="test")


def _render_cfg(manifest, out) -> RenderConfig:
    return RenderConfig(manifest=manifest, out=out, concurrency=4)


def _until_complete(run, limit: int = 5) -> list:
    """Run again while units are left (exhausted retries are retryable errors); returns summaries."""
    summaries = [run()]
    while summaries[-1].status != "completed" and len(summaries) < limit:
        summaries.append(run())
    assert summaries[-1].status == "completed", [s.to_dict() for s in summaries]
    return summaries


def _settled_faults(emulator, since: float) -> dict[str, int]:
    """Fault counts once every hung request has answered (the emulator counts at answer time)."""
    time.sleep(max(0.0, since + HANG_SECONDS + 0.3 - time.monotonic()))
    return emulator.stats()["faults"]


def _seeded_faults(config: FaultConfig, units: int) -> dict[str, int]:
    """The faults a seeded emulator injects while ``units`` requests succeed, each fault costing one
    retry: the i-th request to arrive gets the i-th draw, so this holds whatever the thread timing."""
    injector, faults, done = FaultInjector(config), {}, 0
    while done < units:
        fault = injector.decide("embeddings").fault
        if fault:
            faults[fault] = faults.get(fault, 0) + 1
        else:
            done += 1
    return faults


def _assert_seeded(faults: dict, stats: dict, summaries: list, units: int) -> None:
    """The whole mix was injected, and (when nothing else forced a retry) exactly the seeded one."""
    assert set(faults) == {"throttle", "error_500", "error_503", "drop", "hang"}, faults
    # a hung request still answers 200 after the client gave up; any other extra 200 is a request
    # the client timed out on a loaded machine, which shifts the sequence by one draw
    spurious = stats["by_status"].get("200", 0) - units - faults["hang"]
    if len(summaries) == 1 and spurious == 0:
        assert faults == _seeded_faults(SOAK, units)


def _clean_corpus(tmp_path, table, emulator):
    out = tmp_path / "clean-index"
    with fast_client(emulator) as c:
        assert run_corpus(_corpus_cfg(table, out), c).status == "completed"
    return out


def test_corpus_soak_delivers_every_chunk_exactly_once(tmp_path, faulty):
    table = write_text_table(tmp_path / "src" / "texts.jsonl", N_TEXTS)
    clean = _clean_corpus(tmp_path, table, faulty)
    expected = vector_snapshot(clean)
    assert len(expected) == N_TEXTS

    faulty.reset()
    faulty.set_faults(SOAK)
    out = tmp_path / "index"
    cfg = _corpus_cfg(table, out)
    with fast_client(faulty) as c:
        summaries = _until_complete(lambda: run_corpus(cfg, c))
    ended = time.monotonic()

    assert vector_snapshot(out) == expected
    assert_no_duplicate_vectors(out)
    assert part_rows(out) == (N_TEXTS, N_TEXTS), "a chunk was written to more than one part"
    assert query(out, "SELECT count(*) FROM documents WHERE status <> 'ok'") == [(0,)]
    faults = _settled_faults(faulty, ended)
    stats = faulty.stats()
    print(
        f"\ncorpus soak: runs={len(summaries)} faults={faults} requests={stats['total_requests']} "
        f"by_status={stats['by_status']} attempts={sum(s.stats['attempts'] for s in summaries)} "
        f"exhausted={sum(s.stats['failed_chunks'] for s in summaries[:-1])}"
    )
    _assert_seeded(faults, stats, summaries, N_TEXTS // 20)


def test_render_soak_delivers_every_image_exactly_once(tmp_path, faulty):
    manifest = write_prompt_manifest(tmp_path / "src" / "prompts.jsonl", N_IMAGES)
    clean = tmp_path / "clean-renders"
    with fast_client(faulty) as c:
        assert render_manifest(_render_cfg(manifest, clean), c).status == "completed"
    expected, expected_png = image_snapshot(clean), png_files(clean)
    assert len(expected) == len(expected_png) == N_IMAGES

    faulty.reset()
    faulty.set_faults(SOAK)
    out = tmp_path / "renders"
    with fast_client(faulty) as c:
        summaries = _until_complete(lambda: render_manifest(_render_cfg(manifest, out), c))
    ended = time.monotonic()

    assert image_snapshot(out) == expected
    assert png_files(out) == expected_png
    # each row rendered and recorded once: no second render of a row that had already succeeded
    assert query(out, "SELECT count(*), count(DISTINCT (id, n)) FROM image_renders WHERE status = 'ok'") == [
        (N_IMAGES, N_IMAGES)
    ]
    faults = _settled_faults(faulty, ended)
    stats = faulty.stats()
    print(
        f"\nrender soak: runs={len(summaries)} faults={faults} requests={stats['total_requests']} "
        f"by_status={stats['by_status']} exhausted={sum(s.stats['failed'] for s in summaries[:-1])}"
    )
    _assert_seeded(faults, stats, summaries, N_IMAGES)


def test_exhausted_retries_are_finished_by_the_rerun(tmp_path, faulty):
    """Half the answers are 503 and a call gets 2 attempts: many units run out, the rerun ends them."""
    table = write_text_table(tmp_path / "src" / "texts.jsonl", 300)
    manifest = write_prompt_manifest(tmp_path / "src" / "prompts.jsonl", 16)
    clean = _clean_corpus(tmp_path, table, faulty)
    clean_renders = tmp_path / "clean-renders"
    with fast_client(faulty) as c:
        render_manifest(_render_cfg(manifest, clean_renders), c)

    faulty.reset()
    faulty.set_faults(error_503_rate=0.5, seed=7)
    out, renders = tmp_path / "index", tmp_path / "renders"
    cfg = _corpus_cfg(table, out, batch_size=10)
    with fast_client(faulty, retry=STINGY) as c:
        first = run_corpus(cfg, c)
        first_render = render_manifest(_render_cfg(manifest, renders), c)
    assert first.status == "errors" and first.stats["failed_chunks"] > 0, first.to_dict()
    assert first_render.status == "errors" and first_render.stats["failed"] > 0, first_render.to_dict()
    # exhausted retries are recorded as retryable, so they are not quarantined as dead keys
    kinds = query(out, "SELECT DISTINCT kind, retryable, status FROM errors")
    assert kinds == [("ServerError", True, 503)], kinds
    assert query(renders, "SELECT count(*) FROM errors WHERE NOT retryable") == [(0,)]

    with fast_client(faulty, retry=FAST_RETRY) as c:
        rest = _until_complete(lambda: run_corpus(cfg, c))
        rest_render = _until_complete(lambda: render_manifest(_render_cfg(manifest, renders), c))
    assert rest[0].stats["chunks_new"] == first.stats["failed_chunks"]
    assert rest_render[0].stats["skipped_unchanged"] == first_render.stats["rendered"]
    assert vector_snapshot(out) == vector_snapshot(clean)
    assert_no_duplicate_vectors(out)
    assert part_rows(out) == (300, 300)
    assert image_snapshot(renders) == image_snapshot(clean_renders)
    assert png_files(renders) == png_files(clean_renders)
    print(
        f"\nexhaustion: chunks exhausted={first.stats['failed_chunks']} images exhausted="
        f"{first_render.stats['failed']} faults={faulty.stats()['faults']}"
    )
