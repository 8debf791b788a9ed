"""Machines for the GPU benchmarks' tests: a probe profile that matches a stand-in Config (the
recorded four-H100 server, cut to the GPUs the Config has, with NVML's answers asked of the
stand-in's NVML), and running a case through the real runner in this process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gpubench.bench.core.interface import Context, Waived
from gpubench.bench.core.runner import CaseRun, RepeatPolicy
from gpubench.bench.engines import iofile
from gpubench.probe import Source, nvidia, probe
from gpubench.probe.model import Profile
from gpubench.results.model import Result

from .machine import H100_PCI

PROBES = Path(__file__).resolve().parents[3] / "probes"
SERVER = PROBES / "nvidia-multigpu"
AREAS = ["gpu", "hmm", "p2p", "gds"]
TINY = RepeatPolicy(rounds=1, warmup=1, min_reps=2, max_reps=2, target_spread=1.0, case_timeout_s=120.0)


def cold_reads_possible(directory: Path) -> bool:
    """Whether gds's cold reads can run there: not on a file system that keeps files in memory."""
    mount = iofile.mount_of(directory)
    return not (mount and mount.fstype in iofile.MEMORY_FILESYSTEMS)


def remove_gpus(root: Path, gone: list[str]) -> None:
    """Take GPUs (by PCI address) out of a copied snapshot: PCI, DRM and the NVIDIA procfs."""
    for pci in gone:
        shutil.rmtree(root / "sys/bus/pci/devices" / pci)
        shutil.rmtree(root / "proc/driver/nvidia/gpus" / pci)
    for card in (root / "sys/class/drm").iterdir():
        uevent = card / "device/uevent"
        if uevent.is_file() and any(f"PCI_SLOT_NAME={pci}" in uevent.read_text() for pci in gone):
            shutil.rmtree(card)


def server_profile(directory: Path, gpus: int) -> Profile:
    """The recorded server with its first `gpus` H100s, NVML asked of whatever pynvml is imported
    (the stand-in's, once installed): its P2P answers and addressing mode reach the probe's
    verdicts the way a live probe's would."""
    root = directory / f"server-{gpus}"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(SERVER, root, symlinks=True)
    remove_gpus(root, list(H100_PCI[gpus:]))
    (root / ".gpubench/commands/nvml.json").write_text(json.dumps(nvidia.query_nvml()))
    return probe(Source(root), AREAS)


class Here:
    """A GPU benchmark whose cases run in this process (prepare_here), not in its child process:
    what the tests use to look at the stand-in's state after each case."""

    def __init__(self, bench: Any):
        self.bench, self.key, self.options = bench, bench.key, bench.options

    def requires(self, profile: Profile) -> str | None:
        return self.bench.requires(profile)

    def cases(self, profile: Profile, size: str, options: dict[str, str]):
        return self.bench.cases(profile, size, options)

    def prepare(self, case, ctx):
        reason = self.bench.waiver(case, ctx)  # what GpuBenchmark.prepare judges before a child starts
        if reason:
            raise Waived(reason)
        return self.bench.prepare_here(case, ctx)


def run_case(bench: Any, profile: Profile, case, scratch: Path, options: dict[str, str]) -> Result:
    """One case through CaseRun, in this process."""
    ctx = Context(scratch=scratch, profile=profile, options=options)
    return CaseRun(bench.key, Here(bench), case, ctx, TINY).run()


def run_here(bench: Any, profile: Profile, scratch: Path, options: dict[str, str], size: str = "quick") -> dict[str, Result]:
    """Every case the benchmark plans, through CaseRun, in this process; by case name."""
    results = {}
    for case in bench.cases(profile, size, options):
        directory = scratch / case.name
        directory.mkdir(parents=True)
        results[case.name] = run_case(bench, profile, case, directory, options)
    return results
