"""Every benchmark family gpubench knows, by key, loaded only when planned."""

from __future__ import annotations

from importlib import import_module

from gpubench.bench.interface import Benchmark

# key -> "module:Class"; the class implements gpubench.bench.interface.Benchmark
BENCHMARKS: dict[str, str] = {
    "memtier": "gpubench.bench.memtier:MemTier",
    "iouring": "gpubench.bench.iouring:IoUring",
    "psync": "gpubench.bench.iouring:Psync",
    "memcpy": "gpubench.bench.memcpy:Memcpy",
    "p2p": "gpubench.bench.p2p:P2P",
    "gds": "gpubench.bench.gds:Gds",
    "hmm": "gpubench.bench.hmm:Hmm",
}


def load(key: str) -> Benchmark:
    module, cls = BENCHMARKS[key].split(":")
    return getattr(import_module(module), cls)()
