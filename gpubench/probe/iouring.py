"""io_uring area: kernel support, the sysctl that can switch it off, and whether the Python
binding survives loading on this CPU (tried in a child process, so a crash becomes a verdict)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from gpubench.probe.checks import check, kernel_config, memo
from gpubench.probe.model import Findings
from gpubench.probe.source import Source

DISABLED_MEANING = {
    0: "io_uring rings can be created by all processes",
    1: "only processes in kernel.io_uring_group or with CAP_SYS_ADMIN can create rings",
    2: "io_uring is disabled for every process",
}
SELFTEST = [sys.executable, "-m", "gpubench.bench.engines.uring_binding", "selftest"]
SELFTEST_TIMEOUT_S = 20.0


@check("iouring", "io_uring")
def io_uring(src: Source, f: Findings):
    cfg = kernel_config(src)
    config = cfg.get("CONFIG_IO_URING")
    f.saw("CONFIG_IO_URING", cfg.describe("CONFIG_IO_URING"))
    raw = src.value("/proc/sys/kernel/io_uring_disabled")
    disabled = None
    if raw is None:
        f.saw("/proc/sys/kernel/io_uring_disabled", "absent (kernels before 6.6 have no such sysctl)")
    else:
        f.saw("/proc/sys/kernel/io_uring_disabled", raw)
        disabled = int(raw) if raw in ("0", "1", "2") else None
    f.details.update(config=config, disabled=disabled)
    if config == "n":
        return f.no("the kernel was built without io_uring", "use a kernel built with CONFIG_IO_URING=y")
    if raw is not None and disabled is None:
        return f.unknown(f"unexpected io_uring_disabled value {raw!r}")
    if disabled == 2:
        return f.no(DISABLED_MEANING[2], "sysctl -w kernel.io_uring_disabled=0 (or 1 with kernel.io_uring_group)")
    if disabled == 1:
        group = src.value("/proc/sys/kernel/io_uring_group")
        f.saw("/proc/sys/kernel/io_uring_group", group if group is not None else "absent")
        return f.partial(
            DISABLED_MEANING[1],
            "run as a member of that group, or sysctl -w kernel.io_uring_disabled=0",
        )
    if config is None and disabled is None:
        return f.unknown("no kernel config and no io_uring_disabled sysctl to tell", "see the kernel capability")
    return f.yes(DISABLED_MEANING[0] if disabled == 0 else "")


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


@check("iouring", "io_uring binding")
def io_uring_binding(src: Source, f: Findings):
    out = src.command("iouring_binding", lambda: binding_selftest(memo(src, "iouring_selftest", start_selftest)))
    if out is None:
        f.saw("binding check", "not recorded in this snapshot")
        return f.unknown("the binding check was not recorded in this snapshot", "record the snapshot with gpubench snapshot")
    f.details.update(out)
    if not out.get("loaded"):
        f.saw("child process: import liburing", out.get("error", "failed"))
        if out.get("signal") == "SIGILL":
            fix = "pip install 'liburing==2024.5.3' (the 2026.3 wheels need AVX-512); psync still runs"
        elif out.get("missing"):
            fix = "pip install 'liburing==2024.5.3'"
        else:
            fix = "reinstall the binding: pip install --force-reinstall 'liburing==2024.5.3'"
        return f.no(out.get("error", "the binding failed to load"), fix)
    f.saw("liburing binding", out.get("version", "unknown version"))
    if not out.get("ring"):
        err = out.get("errno")
        f.saw("io_uring_queue_init", f"failed: {os.strerror(err) if err else out.get('error', '?')}")
        return f.no("the binding loads but no ring could be created", "see the io_uring capability (sysctl, seccomp, containers)")
    ops = out.get("opcodes", [])
    f.saw("io_uring_get_probe_ring", f"last_op {out.get('last_op')}, {len(ops)} opcodes supported")
    f.saw("ring features", f"{out.get('features', 0):#x} ({len(out.get('feature_names', []))} IORING_FEAT flags)")
    return f.yes()


CHECKS = [io_uring, io_uring_binding]
