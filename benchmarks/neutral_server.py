"""A neutral embeddings server for side-by-side comparisons: not our emulator, nothing clever.

``python -m benchmarks.neutral_server [--latency 0.15] [--dims 1024]`` listens on a free loopback
port, prints ``PORT <n>`` on its first line, and answers every POST with ``n`` fixed, normalised
vectors (``n`` = the length of the request's ``input``) in the service's JSON shape, after
sleeping ``latency`` seconds. Answers are built once per batch size and cached, so the server
spends almost no CPU of the 2 cores the clients under test need. It checks nothing (no auth, no
validation): every contender gets the same cheap answers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def make_answer(n: int, dims: int) -> bytes:
    rng = np.random.default_rng(0)
    v = rng.standard_normal((n, dims)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    tokens = 150 * n
    body = {
        "embeddings": v.tolist(),
        "model": "amazon.titan-embed-text-v2:0",
        "dimension": dims,
        "usage": {"inputTokens": tokens, "totalTokens": tokens},
    }
    return json.dumps(body).encode()


def handler(latency: float, dims: int) -> type[BaseHTTPRequestHandler]:
    answer = lru_cache(maxsize=128)(lambda n: make_answer(n, dims))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real service

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            texts = json.loads(raw).get("input") or []
            n = 1 if isinstance(texts, str) else len(texts)
            time.sleep(latency)
            body = answer(n)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.neutral_server")
    p.add_argument("--latency", type=float, default=0.15)
    p.add_argument("--dims", type=int, default=1024)
    args = p.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(args.latency, args.dims))
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
