"""What the vm tests boot and run: one boot per (kernel, topology), every command in that boot.

Kernels are Debian 12's own packages, named as apt knows them: linux-image-amd64 (6.1) and
linux-image-6.12-amd64. Topologies are gpubench.vm.topology's built-in ones.

With GPUBENCH_RECORD_SNAPSHOTS=DIR the snapshots these boots take are unpacked into DIR (probes/
of the repository) with a README saying how each was made.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from gpubench.probe.model import Profile
from gpubench.probe.source import EMPTY_MARKER
from gpubench.vm.guest import Boot, Step, find_tools

KERNELS = {"6.1": "linux-image-amd64", "6.12": "linux-image-6.12-amd64"}
TOPOLOGIES = ("two-nodes", "lower-tier", "cxl")
RECORD_ENV = "GPUBENCH_RECORD_SNAPSHOTS"

PROBE = Step("probe", "$GPUBENCH probe --json")
MEMTIER_RUN = ("run --only memtier --quick --rounds 1 --json --no-report -p memtier.kernels=triad,chase "
               "-p memtier.size=4M -p memtier.chase_size=4M -p memtier.hops=100000 -p memtier.best_of=1")
# Compiling memtier's kernels under emulation took 3-4 minutes a boot: the host compiles them once
# for a generic x86-64 (NUMBA_CPU_NAME=generic: no host-specific instructions, so the code is valid
# on the guest's CPU too) into a cache each boot gets a writable copy of, in its shared folder.
NUMBA_CACHE = "numba-cache"
NUMBA_ENV = {"NUMBA_CPU_NAME": "generic"}
MEMTIER = Step("memtier", f'NUMBA_CACHE_DIR="$OUT/{NUMBA_CACHE}" NUMBA_CPU_NAME=generic $GPUBENCH {MEMTIER_RUN}')
MEMTIER_TOPOLOGIES = ("two-nodes", "lower-tier")
CXL_STEPS = (
    # the modules the CXL stack needs; cxl_pci probes the type-3 device asynchronously: wait for mem0
    Step("cxl-modules", "for m in cxl_acpi cxl_pci cxl_port cxl_mem cxl_pmem; do modprobe $m || exit 1; done; "
                        "for i in $(seq 10); do [ -e /sys/bus/cxl/devices/mem0 ] && break; sleep 1; done; ls /sys/bus/cxl/devices"),
    Step("cxl-region", "cxl create-region -m -t pmem -d decoder0.0 mem0"),
    Step("cxl-namespace", "ndctl create-namespace -m devdax -r region0"),
    Step("cxl-dax", "daxctl list"),
)
KERNEL_LOG = Step("kernel-log", "dmesg")


@dataclass(frozen=True)
class Snapshot:
    step: str  # the step that wrote it
    name: str  # its directory under probes/
    state: str  # what the guest was like when it was taken


def snapshots(kernel: str, topology: str) -> tuple[Snapshot, ...]:
    if topology == "lower-tier":
        taken = [Snapshot("snapshot", f"qemu-{kernel}-lower-tier", "after boot, with io_uring_disabled as the kernel sets it")]
        if kernel == "6.12":
            taken += [Snapshot(f"snapshot-io_uring_disabled-{n}", f"qemu-6.12-io_uring_disabled-{n}", f"after sysctl -w kernel.io_uring_disabled={n}")
                      for n in (1, 2)]
        return tuple(taken)
    if topology == "cxl":
        return (Snapshot("snapshot", f"qemu-{kernel}-cxl", "after the CXL bring-up steps below"),)
    return ()


def steps(kernel: str, topology: str) -> list[Step]:
    """Each probe costs a minute under emulation, so a boot probes once where it can: `gpubench
    run` and `gpubench snapshot` both probe first, and their probe stands for `probe --json`."""
    plan = list(CXL_STEPS) if topology == "cxl" else []
    if kernel == "6.12" and topology in MEMTIER_TOPOLOGIES:
        plan.append(MEMTIER)
    for snap in snapshots(kernel, topology):
        sysctl = re.search(r"io_uring_disabled-(\d)", snap.name)
        prefix = f"sysctl -q -w kernel.io_uring_disabled={sysctl.group(1)} && " if sysctl else ""
        plan.append(Step(snap.step, f'{prefix}$GPUBENCH snapshot "$OUT/{snap.name}.tar.gz"'))
    if not any(step is MEMTIER or step.name.startswith("snapshot") for step in plan):
        plan.append(PROBE)
    if topology == "cxl":
        plan.append(KERNEL_LOG)
    return plan


def probe_of(boot: Boot) -> Profile:
    """What the probe said in the guest after boot: `probe --json`, or the probe `gpubench run`
    stored with its results, or the first snapshot replayed."""
    from gpubench.probe import probe
    from gpubench.probe.snapshot import open_root

    names = [s.name for s in boot.steps]
    first = next(n for n in names if n in ("probe", "memtier", "snapshot"))
    step = boot.step(first)
    assert step.returncode == 0, f"{first} in the guest: {step.stderr[-2000:] or boot.console_tail()}"
    if first == "probe":
        return Profile.from_dict(json.loads(step.stdout))
    if first == "memtier":
        return Profile.from_dict(json.loads(step.stdout)["profile"])
    with open_root(snapshot_archive(boot)) as src:
        return probe(src)


def snapshot_archive(boot: Boot, index: int = 0) -> Path:
    return boot.outdir / f"{snapshots(boot.kernel.major_minor, boot.topology.name)[index].name}.tar.gz"


# --- recording into probes/ -----------------------------------------------------------------------

# machine-specific paths the kernel command line carries (where virtme-ng lives, the shared folder)
_CMDLINE_PATHS = re.compile(r"(virtme_link_mods|virtme_initmount0|virtme_chdir|init)=\S+|virtme\.exec=`[^`]*`")


def _scrubbed_cmdline(text: str) -> str:
    return _CMDLINE_PATHS.sub(lambda m: f"{m.group(0).split('=', 1)[0]}=(path on the recording machine)", text)


def record(boot: Boot, kernel: str, topology: str, package: str, dest: Path) -> list[Path]:
    """Unpack this boot's snapshots into dest/NAME with a README; the paths below."""
    written = []
    for snap in snapshots(kernel, topology):
        archive = boot.outdir / f"{snap.name}.tar.gz"
        target = dest / snap.name
        if target.exists():
            raise FileExistsError(f"{target} exists: remove it first to record it again")
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name == "proc/cmdline":
                    data = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
                    fixed = _scrubbed_cmdline(data).encode()
                    member.size = len(fixed)
                    _extract_bytes(target, member, fixed)
                else:
                    tar.extract(member, target, filter="tar")
        mark_empty_folders(target)
        (target / "README.md").write_text(_readme(boot, kernel, topology, package, snap, target))
        written.append(target)
    return written


def mark_empty_folders(root: Path) -> None:
    """Git keeps no empty folder, yet an empty folder the probe listed is evidence (no IOMMU groups,
    an HMAT initiator link): each gets the marker file the probe's Source does not list."""
    for folder in [d for d in root.rglob("*") if d.is_dir() and not d.is_symlink() and not any(d.iterdir())]:
        (folder / EMPTY_MARKER).touch()


def _extract_bytes(root: Path, member: tarfile.TarInfo, data: bytes) -> None:
    path = root / member.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _readme(boot: Boot, kernel: str, topology: str, package: str, snap: Snapshot, target: Path) -> str:
    from gpubench.probe import Source, probe

    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    vng = subprocess.run([str(find_tools().vng), "--version"], capture_output=True, text=True).stdout.strip() or "virtme-ng"
    k, t = boot.kernel, boot.topology
    lines = [
        f"# {snap.name}: Debian's {kernel} kernel under QEMU, topology `{topology}` (recorded)",
        "",
        "Recorded with `gpubench snapshot` inside a QEMU guest booted by the vm tests",
        f"(`{RECORD_ENV}=probes pytest -m vm tests/vm`). Nothing here was edited by hand, except that",
        "the recording machine's paths on the kernel command line (`proc/cmdline`) read `(path on the",
        "recording machine)`.",
        "",
        f"- Kernel: Debian package `{k.package}` {k.version}, release `{k.release}` (resolved from",
        f"  `{package}` with apt-cache, fetched with apt-get download, unpacked with dpkg -x, never",
        f"  installed); its `config-{k.release}` was put at `/boot/` in the guest.",
        f"- Machine: {t.description}.",
        f"- QEMU: {qemu}, emulating (TCG) with `-cpu max`, started by {vng} with the host's root",
        "  filesystem shared read-only over 9p (`OUT` is a directory shared read-write, where `guest.sh` runs",
        "  the steps and keeps what each wrote):",
        "",
        "```",
        f"vng -v -r vmlinuz-{k.release} --force-9p --disable-microvm --disable-kvm \\",
        f"    --cpus {t.cpus} --memory {t.memory_mib}M --rwdir OUT --exec 'sh OUT/guest.sh' \\",
        f"    --qemu-opts='{' '.join(t.qemu_args())} -cpu max'",
        "```",
        "",
        f"- State when recorded: {snap.state}.",
    ]
    if topology == "cxl":
        lines += ["- CXL bring-up in the guest before the snapshot, one step after another (what each one", "  gave is checked in `tests/vm/test_guests.py`):", "", "```"]
        lines += [step.command for step in CXL_STEPS] + ["```"]
    lines += ["", f"What `gpubench probe --root probes/{snap.name}` says:", "", "| area | capability | verdict | because |", "|---|---|---|---|"]
    lines += [f"| {c.area} | {c.name} | {c.status.value} | {_because(c)} |" for c in probe(Source(target)).capabilities]
    return "\n".join(lines) + "\n"


def _because(cap) -> str:  # type: ignore[no-untyped-def]
    """The verdict's reason; for a yes without one, the first evidence (the command line aside)."""
    text = cap.why or "; ".join(f"{e.source}: {e.value}" for e in cap.evidence[:2] if e.source != "/proc/cmdline")
    return text.replace("|", "/")
