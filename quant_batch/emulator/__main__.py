"""``python -m quant_batch.emulator --port 8787 [--token T] [fault flags]``: serve in the foreground."""

from __future__ import annotations

import argparse

from quant_batch.emulator.faults import FaultConfig
from quant_batch.emulator.server import run_from_cli


def _markers() -> str:
    """The content markers, from FaultConfig itself so the help never drifts from the code."""
    lines = [
        f"  {f.default:<20} {f.description}" for name, f in FaultConfig.model_fields.items() if name.endswith("_marker")
    ]
    return "content markers (put one in a text or prompt; rename them with --faults-json):\n" + "\n".join(lines)


def _parser(prog: str = "python -m quant_batch.emulator") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Serve the emulated QuantCDN AI Inference API in the "
        "foreground, with simulated latency and faults (all off by default).",
        epilog=_markers(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8787, help="port to listen on (default 8787)")
    p.add_argument(
        "--token", default=None, help="only accepted bearer token (default: $QUANT_EMULATOR_TOKEN, else any)"
    )
    p.add_argument("--latency-embeddings", type=float, default=0.0, help="seconds added to each embeddings call")
    p.add_argument("--latency-images", type=float, default=0.0, help="seconds added to each image call")
    p.add_argument("--latency-chat", type=float, default=0.0, help="seconds added to each chat call")
    p.add_argument("--jitter", type=float, default=0.0, help="up to this many extra random seconds")
    p.add_argument("--rate-limit-rps", type=float, default=None, help="admitted requests per second")
    p.add_argument("--no-retry-after", dest="retry_after", action="store_false", help="429s without Retry-After")
    p.add_argument("--throttle-rate", type=float, default=0.0, help="share of requests answered 429")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500")
    p.add_argument("--error-503-rate", type=float, default=0.0, help="share of requests answered 503")
    p.add_argument("--drop-rate", type=float, default=0.0, help="share of connections cut mid-response")
    p.add_argument("--hang-rate", type=float, default=0.0, help="share of requests that hang")
    p.add_argument("--hang-seconds", type=float, default=30.0, help="how long a hanging request waits")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
    p.add_argument("--faults-json", default=None, help="a whole FaultConfig as JSON (flags override it)")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m quant_batch.emulator") -> None:
    run_from_cli(**vars(_parser(prog).parse_args(argv)))


if __name__ == "__main__":
    main()
