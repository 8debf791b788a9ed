"""One boot of a kernel under QEMU that runs a list of commands and collects what each wrote.

virtme-ng boots the kernel with this host's root filesystem shared read-only over 9p (it builds
the initramfs that loads 9p and virtio from the kernel's modules, links those modules in without
installing them, and overlays /etc, /home, /tmp, /var ... with tmpfs), so the guest runs this very
gpubench and Python. Each command's output, exit status and time go to files in a directory shared
read-write with the guest; the console goes to console.log beside them. The guest's kernel config
is put at /boot/config-RELEASE (a tmpfs there), where the probe looks for it.

KVM is tried first with a short trial boot that must run a command: nested virtualisation that
opens /dev/kvm but kills its guests is common on cloud VMs. Otherwise QEMU emulates (TCG) with
`-cpu max` (QEMU's default CPU model lacks x86-64-v2, which NumPy needs).
"""

from __future__ import annotations

import os
import selectors
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from gpubench.processes import stop_group
from gpubench.vm.kernels import KernelFiles
from gpubench.vm.topology import VmNode, VmTopology

TRIAL = VmTopology("trial", "one CPU, 512 MiB", (VmNode(1, 512),))
TRIAL_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0  # virtme-ng and QEMU after SIGTERM, then SIGKILL
# what a guest that KVM cannot run leaves on the console before it hangs
KVM_FAILURES = ("emulation failure", "KVM internal error", "failed to set MSR", "KVM: entry failed")
GUEST_HOME = "/tmp/gpubench"  # on the guest's tmpfs: the history, Python's bytecode


@dataclass(frozen=True)
class Tools:
    qemu: str | None
    vng: str | None
    busybox: str | None

    def missing(self) -> str | None:
        """One line naming what to install, or None."""
        apt = [pkg for pkg, found in (("qemu-system-x86", self.qemu), ("busybox-static", self.busybox)) if not found]
        needs = [f"apt install {' '.join(apt)}"] if apt else []
        if not self.vng:
            needs.append("pip install 'gpubench[vm]' (virtme-ng)")
        return f"booting a kernel needs QEMU and virtme-ng: {'; '.join(needs)}" if needs else None


def find_tools() -> Tools:
    beside_python = Path(sys.executable).parent / "vng"  # a virtual environment run without activating it
    vng = shutil.which("vng") or (str(beside_python) if beside_python.is_file() else None)
    busybox = next((shutil.which(name) for name in ("busybox-static", "busybox.static", "busybox") if shutil.which(name)), None)
    return Tools(shutil.which("qemu-system-x86_64"), vng, busybox)


@dataclass(frozen=True)
class Step:
    """A shell command run in the guest. It finds `$GPUBENCH` (this gpubench) and `$OUT` (the
    shared directory) set."""

    name: str  # a file name: its output goes to steps/NAME.out and .err
    command: str


@dataclass(frozen=True)
class StepResult:
    name: str
    returncode: int | None  # None: it never finished (the guest died, or the boot ran out of time)
    seconds: float | None
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Boot:
    kernel: KernelFiles
    topology: VmTopology
    accel: str  # "kvm" or "tcg"
    seconds: float  # from starting QEMU to its exit
    first_step_at: float | None  # the guest's uptime when its first command started
    steps: tuple[StepResult, ...]
    console: str
    outdir: Path
    aborted: str | None = None  # why the boot was stopped early

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)

    def console_lines(self, text: str) -> list[str]:
        return [line.strip() for line in self.console.splitlines() if text in line]

    def console_tail(self, lines: int = 5) -> str:
        return " | ".join(line.strip() for line in self.console.strip().splitlines()[-lines:])


def guest_script(kernel: KernelFiles, steps: Sequence[Step], outdir: Path) -> str:
    import gpubench

    q = shlex.quote
    package_parent = Path(gpubench.__file__).resolve().parent.parent
    python_dir = Path(sys.executable).parent
    lines = [
        "#!/bin/sh",
        "# runs inside the guest: each step's output, status and time go to $OUT/steps",
        f"OUT={q(str(outdir))}",
        # root's home stays on the read-only shared root, as in a read-only container: numba caches privately
        f"export OUT HOME=/root GPUBENCH_DB={GUEST_HOME}/history.db PYTHONPYCACHEPREFIX={GUEST_HOME}/pycache",
        f"export PYTHONPATH={q(str(package_parent))} PATH={q(str(python_dir))}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"export GPUBENCH={q(f'{sys.executable} -m gpubench')}",
        "unset NUMBA_CACHE_DIR XDG_CACHE_HOME XDG_DATA_HOME",
        f'mkdir -p {GUEST_HOME} "$OUT/steps"',
    ]
    if kernel.config is not None:
        lines.append(f'mount -t tmpfs -o size=16m gpubench-boot /boot && cp {q(str(kernel.config))} "/boot/config-$(uname -r)"')
    lines += [
        'run() { read t0 _ < /proc/uptime; sh -c "$2" > "$OUT/steps/$1.out" 2> "$OUT/steps/$1.err"; rc=$?; '
        'read t1 _ < /proc/uptime; echo "$1 $rc $t0 $t1" >> "$OUT/steps/index"; }',
    ]
    lines += [f"run {q(step.name)} {q(step.command)}" for step in steps]
    return "\n".join(lines) + "\n"


def _staged_image(kernel: KernelFiles, outdir: Path) -> Path:
    """virtme-ng finds a kernel's modules at ROOT/lib/modules/RELEASE beside ROOT/boot/IMAGE."""
    root = outdir / "kernel"
    (root / "boot").mkdir(parents=True, exist_ok=True)
    image = root / "boot" / f"vmlinuz-{kernel.release}"
    image.symlink_to(kernel.vmlinuz.resolve())
    if kernel.modules is not None:
        (root / "lib/modules").mkdir(parents=True, exist_ok=True)
        (root / "lib/modules" / kernel.release).symlink_to(kernel.modules.resolve())
    return image


def _command(tools: Tools, image: Path, topology: VmTopology, accel: str, outdir: Path, script: Path) -> list[str]:
    qemu_opts = topology.qemu_args() + ["-cpu", "max"]
    cmd = [str(tools.vng), "-v", "-r", str(image), "--force-9p", "--disable-microvm",
           "--cpus", str(topology.cpus), "--memory", f"{topology.memory_mib}M", "--rwdir", str(outdir),
           f"--qemu-opts={' '.join(qemu_opts)}", "--exec", f"sh {script}"]
    return cmd + (["--disable-kvm"] if accel == "tcg" else [])


def boot(kernel: KernelFiles, topology: VmTopology, steps: Sequence[Step], outdir: Path, *, accel: str = "tcg",
         timeout_s: float = 900.0, tools: Tools | None = None, watch: Callable[[str], str | None] | None = None) -> Boot:
    """Boot once, run `steps` in order, power off. `watch` sees each console line and may return a
    reason to stop the guest at once. QEMU is always ended before this returns."""
    tools = tools or find_tools()
    outdir.mkdir(parents=True, exist_ok=True)
    script = outdir / "guest.sh"
    script.write_text(guest_script(kernel, steps, outdir))
    cmd = _command(tools, _staged_image(kernel, outdir), topology, accel, outdir, script)
    env = {**os.environ, "PATH": f"{Path(str(tools.vng)).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    started = time.monotonic()
    console, aborted = _run(cmd, env, started + timeout_s, watch, outdir / "console.log")
    seconds = time.monotonic() - started
    results, first = _collect(outdir / "steps", steps)
    return Boot(kernel, topology, accel, seconds, first, results, console, outdir, aborted)


def _run(cmd: list[str], env: dict[str, str], deadline: float, watch, log: Path) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    assert proc.stdout is not None
    chunks: list[str] = []
    pending, aborted = "", None
    try:
        with selectors.DefaultSelector() as sel, open(log, "w") as out:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while aborted is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    aborted = "timed out"
                    break
                if not sel.select(min(left, 1.0)):
                    continue
                data = os.read(proc.stdout.fileno(), 65536)
                if not data:
                    break
                text = data.decode("utf-8", "replace")
                chunks.append(text)
                out.write(text)
                *lines, pending = (pending + text).split("\n")
                aborted = next((why for line in lines if watch and (why := watch(line))), None)
    finally:
        stop_group(proc, STOP_GRACE_S)
    return "".join(chunks), aborted


def _collect(directory: Path, steps: Sequence[Step]) -> tuple[tuple[StepResult, ...], float | None]:
    done: dict[str, tuple[int, float, float]] = {}
    index = directory / "index"
    if index.exists():
        for line in index.read_text().splitlines():
            name, rc, t0, t1 = line.split()
            done[name] = (int(rc), float(t0), float(t1))

    def read(name: str, suffix: str) -> str:
        path = directory / f"{name}.{suffix}"
        return path.read_text(errors="replace") if path.exists() else ""

    results = []
    for step in steps:
        rc, t0, t1 = done.get(step.name, (None, None, None))
        seconds = t1 - t0 if t0 is not None and t1 is not None else None
        results.append(StepResult(step.name, rc, seconds, read(step.name, "out"), read(step.name, "err")))
    first = min((t0 for _, t0, _ in done.values()), default=None)
    return tuple(results), first


def _kvm_failure(line: str) -> str | None:
    return next((f"the guest died: {line.strip()[:120]}" for marker in KVM_FAILURES if marker in line), None)


def choose_accel(kernel: KernelFiles, workdir: Path, tools: Tools | None = None) -> tuple[str, str]:
    """("kvm", "") when a trial boot under KVM runs a command; ("tcg", why not) otherwise."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "no usable /dev/kvm"
    trial = boot(kernel, TRIAL, [Step("trial", "true")], workdir / "kvm-trial", accel="kvm", timeout_s=TRIAL_TIMEOUT_S,
                 tools=tools, watch=_kvm_failure)
    if trial.steps[0].returncode == 0:
        return "kvm", ""
    if trial.aborted == "timed out":
        return "tcg", f"a trial boot under KVM ran nothing within {TRIAL_TIMEOUT_S:.0f} s"
    return "tcg", trial.aborted or f"a trial boot under KVM ran nothing ({trial.console_tail(1) or 'no console output'})"
