"""Serving the web page: loopback by default, another interface only when asked for by name."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from quant_batch.errors import ConfigError

REMOTE_WARNING = (
    "warning: serving on {host}, reachable from other machines. The page has no login: "
    "anyone who can reach this port can read these outputs and spend API credit on searches."
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_outs(outs: list[str]) -> list[Path | str]:
    """The output folders (each checked to exist: a typo names the folder and exits 2) and bucket
    URIs (checked to hold an output)."""
    from quant_batch.store.layout import open_output
    from quant_batch.store.location import is_uri

    checked: list[Path | str] = []
    for o in outs:
        if is_uri(o):
            open_output(o, pull=True).require_output()
            checked.append(o)
        elif not Path(o).is_dir():
            raise ConfigError(f"{o}: no such output folder")
        else:
            checked.append(Path(o))
    return checked


def check_host(host: str, allow_remote: bool) -> str | None:
    """Refuse a non-loopback ``host`` unless ``allow_remote``; returns the warning to print."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise ConfigError(f"--host {host}: not a loopback address; pass --allow-remote to serve other machines")
    return REMOTE_WARNING.format(host=host)


def url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/"
