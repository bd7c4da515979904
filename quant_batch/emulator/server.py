"""Run the emulator on a real socket: in a thread (tests) or a subprocess (benchmarks).

    with EmulatorServer(token="t", faults=FaultConfig(drop_rate=0.1)) as emu:
        emu.base_url            # "http://127.0.0.1:PORT"
        emu.set_faults(error_500_rate=1.0)
        emu.stats()["by_status"]

Control calls (``set_faults``, ``reset``, ``stats``) go over HTTP, so they work the same in
both modes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Literal

import uvicorn

from quant_batch.emulator.app import create_app
from quant_batch.emulator.faults import FaultConfig

TOKEN_ENV = "QUANT_EMULATOR_TOKEN"
_START_TIMEOUT = 20.0
# control calls must never go through an HTTP proxy configured in the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _uvicorn_config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http="h11",
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmulatorServer:
    """The emulator listening on ``base_url`` until ``stop()`` (or the end of a ``with``)."""

    def __init__(
        self,
        *,
        token: str | None = None,
        faults: FaultConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: Literal["thread", "process"] = "thread",
    ):
        if mode not in ("thread", "process"):
            raise ValueError(f"mode must be 'thread' or 'process', not {mode!r}")
        self.token, self.faults, self.host, self.port, self.mode = token, faults, host, port, mode
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> EmulatorServer:
        """Start serving and return once the port accepts requests."""
        if self.mode == "thread":
            self._start_thread()
        else:
            self._start_process()
        return self

    def _start_thread(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.base_url = f"http://{self.host}:{self.port}"
        app = create_app(token=self.token, faults=self.faults)
        self._server = uvicorn.Server(_uvicorn_config(app, self.host, self.port))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"emulator-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator thread did not start")
            time.sleep(0.01)

    def _start_process(self) -> None:
        self.port = self.port or _free_port(self.host)
        self.base_url = f"http://{self.host}:{self.port}"
        cmd = [sys.executable, "-m", "quant_batch.emulator", "--host", self.host, "--port", str(self.port)]
        if self.faults is not None:
            cmd += ["--faults-json", self.faults.model_dump_json()]
        env = dict(os.environ)
        env.pop(TOKEN_ENV, None)
        if self.token is not None:
            env[TOKEN_ENV] = self.token  # the environment, not argv: argv is visible in ps
        self._proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the emulator process exited with status {self._proc.returncode}")
            try:
                self.stats()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the emulator process did not answer on {self.base_url}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop serving; safe to call twice."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = self._thread = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise ValueError(f"emulator rejected {method} {path}: {exc.read().decode(errors='replace')}") from exc

    def set_faults(self, faults: FaultConfig | None = None, **fields: Any) -> None:
        """Replace the whole fault config: ``faults`` (or defaults) updated with ``fields``."""
        base = faults.model_dump() if faults is not None else {}
        config = FaultConfig.model_validate({**base, **fields})
        self._call("POST", "/_emulator/faults", config.model_dump())

    def reset(self) -> None:
        """Clear stats and turn every fault off."""
        self._call("POST", "/_emulator/reset", {})

    def stats(self) -> dict:
        """Counters: total_requests, texts_embedded, images_generated, by_endpoint, by_status,
        faults, and events (``{"t", "endpoint", "status"[, "fault"]}``; ``t`` is the arrival time)."""
        return self._call("GET", "/_emulator/stats")


def serve(
    host: str = "127.0.0.1", port: int = 8787, token: str | None = None, faults: FaultConfig | None = None
) -> None:
    """Serve in the foreground until interrupted (``quant-batch emulator``)."""
    app = create_app(token=token, faults=faults)
    print(f"quant-batch emulator listening on http://{host}:{port}", file=sys.stderr, flush=True)
    uvicorn.Server(_uvicorn_config(app, host, port)).run()


def run_from_cli(
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    token: str | None = None,
    latency_embeddings: float = 0.0,
    latency_images: float = 0.0,
    latency_chat: float = 0.0,
    jitter: float = 0.0,
    rate_limit_rps: float | None = None,
    retry_after: bool = True,
    throttle_rate: float = 0.0,
    error_rate: float = 0.0,
    error_503_rate: float = 0.0,
    drop_rate: float = 0.0,
    hang_rate: float = 0.0,
    hang_seconds: float = 30.0,
    seed: int | None = None,
    faults_json: str | None = None,
) -> None:
    """Build a FaultConfig from CLI options and serve (blocking).

    ``error_rate`` is the share of 500 answers; ``faults_json`` (a FaultConfig as JSON) is applied
    first and the other options override it only where they differ from their defaults.
    The token falls back to the ``QUANT_EMULATOR_TOKEN`` environment variable.
    """
    fields: dict[str, Any] = json.loads(faults_json) if faults_json else {}
    latency = {
        k: v
        for k, v in (
            ("embeddings", latency_embeddings),
            ("image-generation", latency_images),
            ("chat", latency_chat),
            ("chat-stream", latency_chat),
        )
        if v
    }
    if latency:
        fields["latency"] = {**fields.get("latency", {}), **latency}
    options = {
        "jitter": jitter,
        "rate_limit_rps": rate_limit_rps,
        "throttle_rate": throttle_rate,
        "error_500_rate": error_rate,
        "error_503_rate": error_503_rate,
        "drop_rate": drop_rate,
        "hang_rate": hang_rate,
    }
    fields.update({k: v for k, v in options.items() if v})
    if seed is not None:
        fields["seed"] = seed
    if hang_seconds != 30.0:
        fields["hang_seconds"] = hang_seconds
    if not retry_after:
        fields["retry_after"] = False
    serve(host, port, token or os.environ.get(TOKEN_ENV), FaultConfig.model_validate(fields))
