"""Boots for the vm tests: each (kernel, topology) boots once, on first use, and runs every command
its tests read (vm_plan.steps). Where QEMU, virtme-ng or the kernel packages are missing, the tests
skip and say why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpubench.errors import UserError
from gpubench.vm import guest, kernels, topology
from tests.vm.vm_plan import KERNELS, MEMTIER, MEMTIER_RUN, NUMBA_CACHE, NUMBA_ENV, RECORD_ENV, record, steps

BOOT_TIMEOUT_S = 900.0
_BOOTS: list[guest.Boot] = []  # for the summary at the end of the session
_ACCEL: list[str] = []


class Guests:
    """Each (kernel, topology) booted once per session."""

    def __init__(self, kernel_files: dict[str, kernels.KernelFiles], accel: str, accel_note: str, workdir: Path):
        self.kernel_files, self.accel, self.accel_note, self.workdir = kernel_files, accel, accel_note, workdir
        self._boots: dict[tuple[str, str], guest.Boot] = {}
        self._numba_cache: Path | None = None

    def __call__(self, kernel: str, topo: str) -> guest.Boot:
        key = (kernel, topo)
        if key not in self._boots:
            files = self.kernel_files[kernel]
            plan, outdir = steps(kernel, topo), self.workdir / f"{kernel}-{topo}"
            if MEMTIER in plan:
                shutil.copytree(self.compiled_kernels(), outdir / NUMBA_CACHE)
            boot = guest.boot(files, topology.BUILT_IN[topo], plan, outdir, accel=self.accel, timeout_s=BOOT_TIMEOUT_S)
            self._boots[key] = boot
            _BOOTS.append(boot)
            if os.environ.get(RECORD_ENV):
                record(boot, kernel, topo, KERNELS[kernel], Path(os.environ[RECORD_ENV]))
        return self._boots[key]

    def compiled_kernels(self) -> Path:
        """memtier's kernels compiled here once, by the guests' own memtier command, into a cache."""
        if self._numba_cache is None:
            cache = self.workdir / NUMBA_CACHE
            env = {**os.environ, **NUMBA_ENV, "NUMBA_CACHE_DIR": str(cache), "GPUBENCH_DB": str(self.workdir / "host-history.db")}
            done = subprocess.run([sys.executable, "-m", "gpubench", *MEMTIER_RUN.split()], env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"compiling memtier's kernels here: {done.stderr[-2000:]}"
            self._numba_cache = cache
        return self._numba_cache


@pytest.fixture(scope="session")
def vm_kernels() -> dict[str, kernels.KernelFiles]:
    tools = guest.find_tools()
    if tools.missing():
        pytest.skip(tools.missing())
    try:
        subprocess.run([str(tools.qemu), "--version"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"qemu-system-x86_64 does not run here: {e}")
    try:
        return {version: kernels.fetch(package) for version, package in KERNELS.items()}
    except UserError as e:
        pytest.skip(f"the kernel packages could not be had: {e}")


@pytest.fixture(scope="session")
def guests(vm_kernels, tmp_path_factory) -> Guests:
    workdir = tmp_path_factory.mktemp("vm")
    accel, note = guest.choose_accel(vm_kernels["6.12"], workdir)
    _ACCEL.append(accel + (f": {note}" if note else ""))
    return Guests(vm_kernels, accel, note, workdir)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not _BOOTS:
        return
    terminalreporter.section("vm boots")
    for accel in _ACCEL:
        terminalreporter.write_line(f"accelerator: {accel}")
    for boot in _BOOTS:
        steps_run = ", ".join(f"{s.name} {s.seconds:.0f} s" if s.seconds is not None else f"{s.name} (did not finish)" for s in boot.steps)
        first = f"first command at {boot.first_step_at:.0f} s of uptime" if boot.first_step_at is not None else "no command ran"
        terminalreporter.write_line(f"{boot.kernel.release} {boot.topology.name} ({boot.accel}): {boot.seconds:.0f} s in all, {first}; {steps_run}")
