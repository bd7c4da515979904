"""A local stand-in for the QuantCDN AI Inference API (embeddings, Nova Canvas, chat).

Real HTTP over loopback, so the official SDK and our client cannot tell it from the service;
faults (throttling, 5xx, dropped connections, hangs, content blocks) are injected on demand.
"""

from quant_batch.emulator.faults import FaultConfig
from quant_batch.emulator.server import EmulatorServer, run_from_cli, serve

__all__ = ["EmulatorServer", "FaultConfig", "run_from_cli", "serve", "create_app"]


def __getattr__(name: str):
    # the FastAPI app is imported lazily: ``import quant_batch.emulator`` stays light
    if name == "create_app":
        from quant_batch.emulator.app import create_app

        return create_app
    raise AttributeError(name)
