"""One run at a time on a bucket output, across machines: a lease object in the bucket.

A local ``flock`` cannot see another machine, so a run on a bucket output also takes
``<prefix>/.lease.json``, created with a conditional PUT (exactly one creator wins) and renewed by
a background thread while the run lives. A run killed with ``kill -9`` stops renewing; its lease
lapses after :data:`TTL` seconds and the next run takes it over. Taking over a lapsed lease is a
delete then a conditional create: two runs that both found it lapsed cannot both win the create.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from quant_batch.errors import LockError, ObjectNotFound
from quant_batch.store.storage import Storage

KEY = ".lease.json"
TTL = 120.0
"""Seconds a lease lives without renewal; renewed every TTL/4."""


class BucketLease:
    def __init__(
        self, storage: Storage, run_id: str, *, wait_seconds: float = 0.0, poll: float = 1.0, ttl: float = TTL
    ):
        self.storage = storage
        self.run_id = run_id
        self.wait_seconds = wait_seconds
        self.poll = poll
        self.ttl = ttl
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._renewed = 0.0
        self._lost: str | None = None

    def _body(self) -> bytes:
        holder = {
            "run_id": self.run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": self.token,
            "expires_at": time.time() + self.ttl,
        }
        return json.dumps(holder).encode()

    def _current(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.storage.read_bytes(KEY))
            return data
        except ObjectNotFound:
            return None
        except ValueError:  # a torn or foreign object: treat as lapsed
            return {"expires_at": 0}

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if self.storage.commit_once(KEY, self._body()):
                break
            held = self._current()
            if held is None:
                continue  # released between our create and our read
            if float(held.get("expires_at", 0)) < time.time():
                self.storage.delete(KEY)  # lapsed: its run died without releasing
                continue
            if time.monotonic() >= deadline:
                who = f"run {held.get('run_id', '?')} on {held.get('host', '?')} (pid {held.get('pid', '?')})"
                left = max(0, int(float(held["expires_at"]) - time.time()))
                raise LockError(
                    f"{self.storage.uri} is in use by {who}; wait for it to finish (a dead run's lease "
                    f"lapses within {left} s) or use another output"
                )
            time.sleep(self.poll)
        self._renewed = time.monotonic()
        self._renewer = threading.Thread(target=self._renew, name="quant-batch-lease", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                held = self._current()
                if held is None or held.get("token") != self.token:
                    self._lost = "another run took the output over"
                    return  # never overwrite the new holder's lease
                self.storage.replace(KEY, self._body())
                self._renewed = time.monotonic()
            except Exception:  # a blip: the next renewal tries again well before the lease lapses
                continue

    def check(self) -> None:
        """Raise :class:`LockError` if this run may no longer hold the output (call before publishing).

        A lease not renewed for most of its life may have lapsed and been taken by another run;
        publishing then could interleave two writers, so the run stops instead (its committed
        parts stay, and the next run publishes them).
        """
        if self._renewer is None:
            return
        if self._lost is None and time.monotonic() - self._renewed > self.ttl * 0.75:
            self._lost = f"its lease was not renewed for {time.monotonic() - self._renewed:.0f} s"
        if self._lost is not None:
            raise LockError(f"{self.storage.uri}: stopped before publishing: {self._lost}")

    def release(self) -> None:
        if self._renewer is None:
            return
        self._stop.set()
        self._renewer.join()
        self._renewer = None
        held = self._current()
        if held is not None and held.get("token") == self.token:
            self.storage.delete(KEY)
