"""Probes: what this kernel (or a recorded snapshot of one) can do for GPU data paths."""

from __future__ import annotations

from importlib import import_module
from typing import Iterable

from gpubench.errors import UserError
from gpubench.probe.checks import run_check
from gpubench.probe.model import Capability, Evidence, Profile, Status
from gpubench.probe.source import Source

# area name -> module holding its CHECKS, in the order the table shows them
AREAS = {
    "kernel": "gpubench.probe.kernel",
    "iouring": "gpubench.probe.iouring",
    "gpu": "gpubench.probe.gpu",
    "hmm": "gpubench.probe.hmm",
    "p2p": "gpubench.probe.p2p",
    "gds": "gpubench.probe.gds",
    "cxl": "gpubench.probe.cxl",
    "iommu": "gpubench.probe.iommu",
    "links": "gpubench.probe.links",
}

__all__ = ["AREAS", "Capability", "Evidence", "Profile", "Source", "Status", "probe"]


def probe(src: Source, areas: Iterable[str] | None = None) -> Profile:
    asked = set(areas or AREAS)
    unknown = sorted(asked - AREAS.keys())
    if unknown:
        raise UserError(f"unknown area {unknown[0]!r}; choose from: {', '.join(AREAS)}")
    modules = []
    for area in (a for a in AREAS if a in asked):
        modules.append(import_module(AREAS[area]))
        if hasattr(modules[-1], "prefetch"):  # a slow live check starts at once, and runs while the rest is imported and read
            modules[-1].prefetch(src)
    caps = [run_check(fn, src) for module in modules for fn in module.CHECKS]
    return Profile(root=src.name, capabilities=tuple(caps))
