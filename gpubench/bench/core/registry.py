"""Every benchmark family gpubench knows, by key, loaded only when planned."""

from __future__ import annotations

from importlib import import_module

from gpubench.bench.core.interface import Benchmark

# key -> "module:Class"; the class implements gpubench.bench.core.interface.Benchmark
BENCHMARKS: dict[str, str] = {
    "memtier": "gpubench.bench.memtier.benchmark:MemTier",
    "iouring": "gpubench.bench.io.iouring:IoUring",
    "psync": "gpubench.bench.io.iouring:Psync",
    "memcpy": "gpubench.bench.gpu.memcpy:Memcpy",
    "p2p": "gpubench.bench.gpu.p2p:P2P",
    "gds": "gpubench.bench.gpu.gds:Gds",
    "hmm": "gpubench.bench.gpu.hmm:Hmm",
}


def load(key: str) -> Benchmark:
    module, cls = BENCHMARKS[key].split(":")
    return getattr(import_module(module), cls)()
