"""`gpubench probe --kernel`: boot another kernel on a mirror of this machine's memory topology,
probe inside, and set its verdicts beside the running kernel's.

A row differs when its verdict does (lost, gained, changed), or when a fact the verdict rests on
does: a CONFIG_ option, kernel.io_uring_disabled, the io_uring opcodes the binding found, the
nodes' memory tiers, demotion. GPUs are not passed into the guest, so its gpu, hmm, p2p and gds
rows are read from the kernel config alone: only their CONFIG_ options are compared.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from gpubench.errors import UserError
from gpubench.probe.diff import CapabilityChange, diff_capabilities
from gpubench.probe.model import Capability, Profile
from gpubench.probe.views import IoUringView, KernelView, NumaView
from gpubench.vm.guest import Boot, Step, Tools, boot, choose_accel, find_tools
from gpubench.vm.kernels import KernelFiles
from gpubench.vm.topology import VmTopology

GPU_AREAS = ("gpu", "hmm", "p2p", "gds")
CONFIG_ONLY = ("GPUs are not passed into the VM: its gpu, hmm, p2p and gds rows show the kernel config's options "
               "alone, and only those are compared")
PROBE_TIMEOUT_S = 900.0
NEEDS_GPU = "(needs a GPU)"  # the VM's column where a GPU-area verdict rests on the device alone


@dataclass(frozen=True)
class Row:
    change: CapabilityChange  # before: the running kernel's verdict, after: the VM's
    booted_text: str  # the VM's column: its verdict, or its CONFIG_ options in a GPU area
    difference: str  # "" when nothing the row shows differs

    def to_dict(self) -> dict[str, Any]:
        c = self.change
        return {"area": c.area, "capability": c.name, "running": c.status_before.value if c.status_before else None,
                "kernel": c.status_after.value if c.status_after else None, "kernel_shows": self.booted_text,
                "difference": self.difference}


@dataclass(frozen=True)
class KernelComparison:
    running: Profile
    booted: Profile
    rows: tuple[Row, ...]
    kernel: KernelFiles
    topology: VmTopology
    accel: str  # "kvm" or "tcg"
    accel_note: str  # why not KVM
    boot_seconds: float

    @property
    def running_release(self) -> str:
        return KernelView.from_profile(self.running).release or "running kernel"

    def to_dict(self) -> dict[str, Any]:
        return {
            "running": self.running.to_dict(),
            "kernel": self.booted.to_dict(),
            "differences": [r.to_dict() for r in self.rows],
            "vm": {"release": self.kernel.release, "package": self.kernel.package, "version": self.kernel.version,
                   "config": str(self.kernel.config) if self.kernel.config else None, "topology": self.topology.to_dict(),
                   "accelerator": self.accel, "accelerator_note": self.accel_note or None, "boot_seconds": round(self.boot_seconds, 1),
                   "note": CONFIG_ONLY},
        }


def _configs(cap: Capability | None) -> dict[str, str]:
    """The CONFIG_ options a verdict rests on, named without the prefix."""
    return {e.source.removeprefix("CONFIG_"): e.value for e in cap.evidence if e.source.startswith("CONFIG_")} if cap else {}


def _facts(profile: Profile) -> dict[str, dict[str, str]]:
    """capability name -> fact -> value: what a verdict rests on beyond its CONFIG_ options."""
    io = IoUringView.from_profile(profile)
    numa = NumaView.from_profile(profile)
    tiers = ", ".join(f"node{n.id} {n.tier if n.tier is not None else '-'}" for n in numa.nodes)
    demotion = {True: "enabled", False: "disabled", None: "unknown"}[numa.demotion_enabled]
    return {
        "kernel": {"release": KernelView.from_profile(profile).release or "unknown"},
        "io_uring": {"io_uring_disabled": "absent" if io.disabled is None else str(io.disabled)},
        # the probe's own line for them (IoUringView.opcodes drops the opcode names the binding records)
        "io_uring binding": {"opcodes": _evidence(profile.get("io_uring binding"), "io_uring_get_probe_ring") or "no ring"},
        "memory tiers": {"tiers": tiers or "none", "demotion": demotion},
    }


def _evidence(cap: Capability | None, source: str) -> str | None:
    return next((e.value for e in cap.evidence if e.source == source), None) if cap else None


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    keys = list(after) + [k for k in before if k not in after]
    return [f"{k} {before.get(k, '-')} -> {after.get(k, '-')}" for k in keys if before.get(k) != after.get(k)]


def _verdict_change(change: CapabilityChange) -> str:
    if change.before is None or change.after is None:
        return "only in the VM" if change.before is None else "not probed in the VM"
    if change.before.status is change.after.status:
        return ""
    return "lost" if change.lost else "gained" if change.gained else f"{change.before.status.value} -> {change.after.status.value}"


def rows(running: Profile, booted: Profile) -> tuple[Row, ...]:
    before, after = _facts(running), _facts(booted)
    out = []
    for change in diff_capabilities(running, booted, all_rows=True):
        configs = _changed(_configs(change.before), _configs(change.after))
        if change.area in GPU_AREAS:
            shown = ", ".join(f"{k}={v}" for k, v in _configs(change.after).items()) or NEEDS_GPU
            out.append(Row(change, shown, "; ".join(configs)))
            continue
        facts = _changed(before.get(change.name, {}), after.get(change.name, {}))
        parts = [p for p in [_verdict_change(change), *configs, *facts] if p]
        shown = change.after.status.value if change.after else "-"
        out.append(Row(change, shown, "; ".join(parts)))
    return tuple(out)


def needed_tools() -> Tools:
    """QEMU and virtme-ng, or one line naming what to install (before anything is fetched)."""
    tools = find_tools()
    if tools.missing():
        raise UserError(str(tools.missing()))
    return tools


def probe_kernel(running: Profile, kernel: KernelFiles, topology: VmTopology, areas: Iterable[str] | None, tools: Tools,
                 progress: Callable[[str], None] = lambda message: None) -> KernelComparison:
    """Boot `kernel` on `topology`, probe inside, compare with `running`."""
    if kernel.config is None:
        progress(f"no config-{kernel.release} given (--kernel-config): the VM's config-based verdicts will read unknown")
    with tempfile.TemporaryDirectory(prefix="gpubench-vm-") as tmp:
        accel, why = choose_accel(kernel, Path(tmp), tools)
        if accel == "tcg":
            progress(f"KVM could not run it here ({why}); QEMU emulates the machine instead (TCG): booting and probing take a minute or more")
        progress(f"booting {kernel.describe()} under {accel.upper()}: {topology.description}")
        area_options = "".join(f" --area {shlex.quote(a)}" for a in areas or ())
        booted = boot(kernel, topology, [Step("probe", f"$GPUBENCH probe --json{area_options}")], Path(tmp) / "boot",
                      accel=accel, timeout_s=PROBE_TIMEOUT_S, tools=tools)
        profile = _guest_profile(booted)
    progress(f"booted and probed in {booted.seconds:.0f} s")
    return KernelComparison(running, profile, rows(running, profile), kernel, topology, accel, why, booted.seconds)


def _guest_profile(booted: Boot) -> Profile:
    step = booted.step("probe")
    if step.returncode is None:
        raise UserError(f"the guest ran no probe ({booted.aborted or 'it stopped first'}); its console ended: {booted.console_tail()}")
    try:
        return Profile.from_dict(json.loads(step.stdout))
    except (ValueError, KeyError, TypeError):
        last = (step.stderr.strip().splitlines() or [f"exit status {step.returncode}"])[-1]
        raise UserError(f"the probe in the guest failed: {last}") from None
