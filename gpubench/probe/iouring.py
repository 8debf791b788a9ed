"""io_uring area: kernel support, the sysctl that can switch it off, and whether the Python
binding survives loading on this CPU (tried in a child process, so a crash becomes a verdict)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

from gpubench.probe.checks import check, kernel_config, memo
from gpubench.probe.model import Findings
from gpubench.probe.rules import NO, PARTIAL, UNKNOWN, YES, Rule, always, decide
from gpubench.probe.source import Source

DISABLED_MEANING = {
    0: "io_uring rings can be created by all processes",
    1: "only processes in kernel.io_uring_group or with CAP_SYS_ADMIN can create rings",
    2: "io_uring is disabled for every process",
}
DISABLED_SYSCTL = "/proc/sys/kernel/io_uring_disabled"
GROUP_SYSCTL = "/proc/sys/kernel/io_uring_group"
SELFTEST = [sys.executable, "-m", "gpubench.bench.engines.uring_binding", "selftest"]
SELFTEST_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class IoUringFacts:
    config: str | None  # CONFIG_IO_URING: "y", "n" (not set), None (no config found)
    raw: str | None  # kernel.io_uring_disabled as read; None where the sysctl is absent
    group: str | None  # kernel.io_uring_group, read when it matters (disabled = 1)

    @property
    def disabled(self) -> int | None:
        return int(self.raw) if self.raw in ("0", "1", "2") else None


IO_URING_RULES: tuple[Rule[IoUringFacts], ...] = (
    Rule(lambda x: x.config == "n", NO, "the kernel was built without io_uring", "use a kernel built with CONFIG_IO_URING=y"),
    Rule(lambda x: x.raw is not None and x.disabled is None, UNKNOWN, lambda x: f"unexpected io_uring_disabled value {x.raw!r}"),
    Rule(lambda x: x.disabled == 2, NO, DISABLED_MEANING[2], "sysctl -w kernel.io_uring_disabled=0 (or 1 with kernel.io_uring_group)"),
    Rule(lambda x: x.disabled == 1, PARTIAL, DISABLED_MEANING[1], "run as a member of that group, or sysctl -w kernel.io_uring_disabled=0"),
    Rule(lambda x: x.config is None and x.raw is None, UNKNOWN, "no kernel config and no io_uring_disabled sysctl to tell", "see the kernel capability"),
    Rule(always, YES, lambda x: DISABLED_MEANING[0] if x.disabled == 0 else ""),
)


@check("iouring", "io_uring")
def io_uring(src: Source, f: Findings):
    cfg = kernel_config(src)
    f.saw("CONFIG_IO_URING", cfg.describe("CONFIG_IO_URING"))
    raw = src.value(DISABLED_SYSCTL)
    # Said as found: the sysctl came with 6.6, but distribution kernels carry it earlier (RHEL 9's 5.14).
    f.saw(DISABLED_SYSCTL, raw if raw is not None else "absent: this kernel has no such sysctl")
    group = src.value(GROUP_SYSCTL) if raw == "1" else None
    if raw == "1":
        f.saw(GROUP_SYSCTL, group if group is not None else "absent")
    facts = IoUringFacts(cfg.get("CONFIG_IO_URING"), raw, group)
    f.details.update(config=facts.config, disabled=facts.disabled)
    return decide(f, facts, IO_URING_RULES)


def start_selftest(command: list[str] = SELFTEST) -> subprocess.Popen | str:
    """Start loading the binding in a child process; an error message when it cannot start."""
    try:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        return f"could not start the binding check: {e}"


def binding_selftest(child: subprocess.Popen | str | None = None, timeout: float = SELFTEST_TIMEOUT_S) -> dict:
    """The child's answer: a SIGILL or SIGSEGV there is a verdict, not a crash here."""
    child = start_selftest() if child is None else child
    if isinstance(child, str):
        return {"loaded": False, "error": child}
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return {"loaded": False, "error": f"the binding check did not finish within {timeout:.0f} s"}
    if child.returncode < 0:
        sig = signal.Signals(-child.returncode).name
        return {"loaded": False, "signal": sig, "error": f"the child process died with {sig} while loading liburing"}
    last = (stderr.strip().splitlines() or [""])[-1]
    if child.returncode != 0:
        if "ModuleNotFoundError" in last and "liburing" in last:
            return {"loaded": False, "missing": True, "error": "the liburing binding is not installed"}
        return {"loaded": False, "error": last or f"exit status {child.returncode}"}
    try:
        return json.loads(stdout)
    except ValueError:
        return {"loaded": False, "error": f"unreadable answer from the binding check: {stdout[:200]!r}"}


def prefetch(src: Source) -> None:
    """Start the binding check first, so that it runs while the other areas are read."""
    if src.live:
        memo(src, "iouring_selftest", start_selftest)


def _error(out: dict) -> str:
    return out.get("error", "the binding failed to load")


BINDING_PIN = "pip install 'liburing==2024.5.3'"
BINDING_RULES: tuple[Rule[dict | None], ...] = (
    Rule(lambda out: out is None, UNKNOWN, "the binding check was not recorded in this snapshot", "record the snapshot with gpubench snapshot"),
    Rule(lambda out: not out.get("loaded") and out.get("signal") == "SIGILL", NO, _error, f"{BINDING_PIN} (the 2026.3 wheels need AVX-512); psync still runs"),
    Rule(lambda out: not out.get("loaded") and out.get("missing"), NO, _error, BINDING_PIN),
    Rule(lambda out: not out.get("loaded"), NO, _error, "reinstall the binding: pip install --force-reinstall 'liburing==2024.5.3'"),
    Rule(lambda out: not out.get("ring"), NO, "the binding loads but no ring could be created", "see the io_uring capability (sysctl, seccomp, containers)"),
    Rule(always, YES),
)


def _binding_evidence(f: Findings, out: dict | None) -> None:
    if out is None:
        f.saw("binding check", "not recorded in this snapshot")
    elif not out.get("loaded"):
        f.saw("child process: import liburing", out.get("error", "failed"))
    elif not out.get("ring"):
        f.saw("liburing binding", out.get("version", "unknown version"))
        err = out.get("errno")
        f.saw("io_uring_queue_init", f"failed: {os.strerror(err) if err else out.get('error', '?')}")
    else:
        f.saw("liburing binding", out.get("version", "unknown version"))
        f.saw("io_uring_get_probe_ring", f"last_op {out.get('last_op')}, {len(out.get('opcodes', []))} opcodes supported")
        f.saw("ring features", f"{out.get('features', 0):#x} ({len(out.get('feature_names', []))} IORING_FEAT flags)")


@check("iouring", "io_uring binding")
def io_uring_binding(src: Source, f: Findings):
    out = src.command("iouring_binding", lambda: binding_selftest(memo(src, "iouring_selftest", start_selftest)))
    f.details.update(out or {})
    _binding_evidence(f, out)
    return decide(f, out, BINDING_RULES)


CHECKS = [io_uring, io_uring_binding]
