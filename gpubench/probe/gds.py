"""GDS area: can GPUDirect Storage move file data straight into GPU memory, or would KvikIO
fall back to its POSIX compatibility mode, and why?

nvidia-fs procfs (version, devcount, stats, modules, peer_affinity, peer_distance): NVIDIA/gds-nvidia-fs
src/nvfs-proc.c and src/nvfs-stat.c; every file exists only while the module is loaded. The stats
file names the driver ("NVFS Driver(version: X.Y.Z)"; some releases print X:Y:Z) and carries the
read, write, op and error counters ("Reads : n=... ok=... err=..." and so on). KvikIO's fallback
rules (KVIKIO_COMPAT_MODE, missing libcufile, unreadable /run/udev): KvikIO "Runtime Settings".
KvikIO is never imported here: a child process answers, and only when it is installed.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from gpubench.probe import nvidia
from gpubench.probe.checks import check
from gpubench.probe.model import Findings
from gpubench.probe.rules import NO, PARTIAL, UNKNOWN, YES, Rule, always, decide, not_recorded
from gpubench.probe.source import Source

NVIDIA_FS_MODULE = "/sys/module/nvidia_fs"
NVIDIA_FS_PROC = "/proc/driver/nvidia-fs"
NVIDIA_FS_FILES = ("version", "devcount", "stats", "modules", "peer_affinity", "peer_distance")
KVIKIO_TIMEOUT_S = 20.0

LIBRARY_DIRS = (
    "/usr/local/cuda/lib64",
    "/usr/local/cuda/targets/*/lib",
    "/usr/local/cuda-*/targets/*/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)
# Where pip wheels put libcufile (nvidia-cufile-cu12/cu13) and KvikIO's own libraries.
WHEEL_DIRS = ("nvidia/cufile/lib", "nvidia/cu13/lib", "libkvikio/lib64")


def _site_dirs() -> list[str]:
    import site
    import sysconfig

    dirs = [sysconfig.get_paths().get(k) for k in ("purelib", "platlib")]
    try:
        dirs += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # some virtualenvs lack them
        pass
    return list(dict.fromkeys(d for d in dirs if d))


def find_libcufile() -> dict[str, Any]:
    """Where libcufile.so* is, by looking in the usual directories; site-packages paths are
    written relative to '<site-packages>' so that no home directory leaves the machine."""
    found: list[str] = []
    for pattern in LIBRARY_DIRS:
        for d in sorted(glob.glob(pattern)):
            found += sorted(glob.glob(os.path.join(d, "libcufile.so*")))
    for site_dir in _site_dirs():
        for sub in WHEEL_DIRS:
            for path in sorted(glob.glob(os.path.join(site_dir, sub, "libcufile.so*"))):
                found.append(os.path.join("<site-packages>", os.path.relpath(path, site_dir)))
    unique: dict[str, str] = {}  # /usr/local/cuda/lib64 is usually a link to targets/*/lib
    for path in found:
        unique.setdefault(os.path.realpath(path) if path.startswith("/") else path, path)
    return {"paths": list(unique.values()), "searched": list(LIBRARY_DIRS) + [f"<site-packages>/{s}" for s in WHEEL_DIRS]}


_KVIKIO_CHILD = r"""
import json
out = {"importable": False}
try:
    import kvikio
    import kvikio.defaults as d
except Exception as e:
    out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out)); raise SystemExit(0)
out["importable"] = True
out["version"] = getattr(kvikio, "__version__", None)
setting = None
try:
    setting = d.get("compat_mode") if hasattr(d, "get") else d.compat_mode()
    out["setting"] = getattr(setting, "name", str(setting))
except Exception as e:
    out["setting_error"] = f"{type(e).__name__}: {e}"
try:
    if hasattr(d, "is_compat_mode_preferred"):
        out["compat_mode"] = bool(d.is_compat_mode_preferred())
    elif isinstance(setting, bool):
        out["compat_mode"] = setting
except Exception as e:
    out["compat_mode_error"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def check_kvikio() -> dict[str, Any]:
    """Whether KvikIO is installed, imports, and would run in compat mode: asked in a child."""
    from importlib.util import find_spec

    out: dict[str, Any] = {
        "installed": find_spec("kvikio") is not None,
        "env_compat_mode": os.environ.get("KVIKIO_COMPAT_MODE"),
        "run_udev_readable": os.access("/run/udev", os.R_OK | os.X_OK),
    }
    if not out["installed"]:
        return out
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _KVIKIO_CHILD], capture_output=True, text=True, timeout=KVIKIO_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        out.update(importable=None, error=f"importing kvikio took longer than {KVIKIO_TIMEOUT_S:.0f} s")
        return out
    lines = proc.stdout.strip().splitlines()
    try:
        out.update(json.loads(lines[-1]))
    except (IndexError, ValueError):
        tail = (proc.stderr.strip().splitlines() or [""])[-1]
        why = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        out.update(importable=False, error=f"the child importing kvikio died ({why}) {tail}".strip())
    return out


# --- what nvidia-fs shows of itself ---------------------------------------------------------------

@dataclass(frozen=True)
class NvidiaFs:
    module: bool  # /sys/module/nvidia_fs exists
    files: tuple[str, ...]  # the /proc/driver/nvidia-fs files there (each exists only while the module is loaded)
    version: str | None  # of the version file, else the stats banner's
    devcount: str | None
    counters: dict[str, int]  # reads, writes, read_errors, write_errors, ... as stats shows them
    modules: tuple[str, ...]  # the storage drivers nvidia-fs lists (modules file)

    @property
    def loaded(self) -> bool:
        return self.module or bool(self.files)

    @property
    def io_seen(self) -> bool | None:
        """Whether any read or write went through nvidia-fs since it was loaded (None: not shown)."""
        done = [self.counters[k] for k in ("reads", "writes") if k in self.counters]
        return sum(done) > 0 if done else None


_NVFS_DRIVER = re.compile(r"NVFS Driver\(version:\s*(\d+(?:[.:]\d+)*)\)")
_STATS_LINE = re.compile(r"^(Reads|Writes|Error)\s*:(.*)$", re.MULTILINE)
_COUNTER = re.compile(r"([A-Za-z][\w-]*)=(\d+)\b")
# stats line, counter -> the name in details (those that say whether I/O went through, and its errors)
COUNTERS = {
    ("Reads", "n"): "reads", ("Reads", "err"): "read_errors",
    ("Writes", "n"): "writes", ("Writes", "err"): "write_errors",
    ("Error", "dma-map"): "dma_map_errors", ("Error", "cpu-gpu-pages"): "cpu_gpu_page_errors",
}


def parse_stats(text: str) -> tuple[str | None, dict[str, int]]:
    """The driver version and the counters of /proc/driver/nvidia-fs/stats; counters it does not
    print are left out (the read and write counts only appear with its I/O statistics on)."""
    m = _NVFS_DRIVER.search(text)
    counters: dict[str, int] = {}
    for line, rest in _STATS_LINE.findall(text):
        for key, value in _COUNTER.findall(rest):
            if (line, key) in COUNTERS:
                counters[COUNTERS[line, key]] = int(value)
    return (m.group(1).replace(":", ".") if m else None), counters


def read_nvidia_fs(src: Source) -> NvidiaFs:
    texts = {name: src.text(f"{NVIDIA_FS_PROC}/{name}") for name in NVIDIA_FS_FILES}
    stats_version, counters = parse_stats(texts["stats"] or "")
    version = (texts["version"] or "").split(":", 1)[-1].strip() or stats_version
    modules = tuple(line.split()[0].rstrip(":") for line in (texts["modules"] or "").splitlines() if line.strip())
    return NvidiaFs(
        module=src.exists(NVIDIA_FS_MODULE),
        files=tuple(name for name, text in texts.items() if text is not None),
        version=version, devcount=(texts["devcount"] or "").strip() or None, counters=counters, modules=modules,
    )


def _nvidia_fs_evidence(f: Findings, nvfs: NvidiaFs) -> None:
    f.saw(NVIDIA_FS_MODULE, "present" if nvfs.module else "absent")
    if not nvfs.files:
        f.saw(NVIDIA_FS_PROC, "absent")
        return
    f.saw(NVIDIA_FS_PROC, ", ".join(nvfs.files))
    f.saw("nvidia-fs version", nvfs.version or "not shown")
    if nvfs.devcount is not None:
        f.saw(f"{NVIDIA_FS_PROC}/devcount", nvfs.devcount)
    if "stats" in nvfs.files:
        c = nvfs.counters
        io = {True: "I/O went through nvidia-fs", False: "no I/O through nvidia-fs yet", None: "its read and write counts are not shown"}[nvfs.io_seen]
        counts = f"reads {c['reads']}, writes {c['writes']}; " if "reads" in c else ""
        errors = f"errors: read {c.get('read_errors', '?')}, write {c.get('write_errors', '?')}, dma-map {c.get('dma_map_errors', '?')}; "
        f.saw(f"{NVIDIA_FS_PROC}/stats", counts + errors + io)
    if nvfs.modules:
        f.saw(f"{NVIDIA_FS_PROC}/modules", ", ".join(nvfs.modules))


# --- the verdict ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class GdsFacts:
    driver: nvidia.NvidiaDriver
    nvfs: NvidiaFs
    libcufile: bool | None  # found (True), searched and not found (False), not recorded (None)
    kv: dict[str, Any] | None  # check_kvikio's answer; None: not recorded

    @property
    def recorded(self) -> bool:
        return self.driver.recorded

    @property
    def kvikio(self) -> bool | None:
        if self.kv is None:
            return None
        return bool(self.kv.get("importable")) if self.kv.get("installed") else False

    @property
    def compat(self) -> bool | None:
        return self.kv.get("compat_mode") if self.kvikio and self.kv else None

    @property
    def ready(self) -> bool:
        return bool(self.driver.loaded and self.nvfs.loaded and self.libcufile)

    @property
    def path(self) -> str | None:
        if self.ready and not (self.kvikio and self.compat):
            return "gds"
        return "compat" if self.kvikio or self.libcufile else None  # KvikIO's POSIX fallback, or cuFile's own

    def reasons(self) -> list[str]:
        """Why KvikIO would fall back to its POSIX compatibility mode."""
        kv = self.kv or {}
        reasons = []
        if (kv.get("env_compat_mode") or "").strip().upper() in ("ON", "TRUE", "YES", "1"):
            reasons.append(f"KVIKIO_COMPAT_MODE={kv.get('env_compat_mode')} forces it")
        if self.libcufile is False:
            reasons.append("libcufile.so was not found")
        if kv.get("run_udev_readable") is False:
            reasons.append("/run/udev is not readable (a container started without -v /run/udev:/run/udev:ro)")
        if not self.nvfs.loaded:
            reasons.append("the nvidia_fs module is not loaded")
        return reasons

    def fallback(self) -> str:
        if self.path != "compat":
            return ""
        reasons = self.reasons()
        return " KvikIO would use its POSIX compatibility mode" + (f" ({'; '.join(reasons)})" if reasons else "") + "."

    def libcufile_said(self) -> str:
        return {True: "libcufile is present", False: "libcufile was not found", None: "libcufile not recorded in this snapshot"}[self.libcufile]


INSTALL_GDS = "install NVIDIA GDS (packages nvidia-gds / nvidia-fs and libcufile, or pip install nvidia-cufile-cu12) and modprobe nvidia_fs"
GDS_RULES: tuple[Rule[GdsFacts], ...] = (
    not_recorded(nvidia.INPUTS_SAID),
    Rule(lambda x: not x.driver.loaded, NO, lambda x: "GPUDirect Storage needs an NVIDIA GPU and its driver; none is loaded." + x.fallback(),
         "only relevant on machines with an NVIDIA GPU"),
    Rule(lambda x: not x.nvfs.loaded, NO,
         lambda x: f"the nvidia_fs kernel module is not loaded ({x.libcufile_said()}), so there is no direct storage-to-GPU path." + x.fallback(),
         INSTALL_GDS),
    Rule(lambda x: x.libcufile is None, UNKNOWN, "nvidia_fs is loaded, but where libcufile is was not recorded in this snapshot",
         "re-record the snapshot with this version of gpubench"),
    Rule(lambda x: not x.libcufile, NO, lambda x: "libcufile is missing, so there is no direct storage-to-GPU path." + x.fallback(), INSTALL_GDS),
    Rule(lambda x: bool(x.kvikio and x.compat), PARTIAL,
         lambda x: "nvidia_fs and libcufile are present, but KvikIO would still run in compat mode: " + ("; ".join(x.reasons()) or "its own check said so"),
         "unset KVIKIO_COMPAT_MODE (or set it to AUTO/OFF); in a container mount /run/udev read-only"),
    Rule(always, YES, lambda x: f"nvidia_fs {x.nvfs.version or '(version unknown)'} and libcufile are present" + (", KvikIO uses them" if x.kvikio else "")),
)


def _library_evidence(f: Findings, lib: dict[str, Any] | None, kv: dict[str, Any] | None, facts: GdsFacts) -> None:
    f.saw("libcufile", "not recorded in this snapshot" if lib is None else (", ".join(lib["paths"]) or "not found"))
    if kv is None:
        f.saw("kvikio", "not recorded in this snapshot")
    elif not kv.get("installed"):
        f.saw("kvikio", "not installed")
    elif not facts.kvikio:
        f.saw("kvikio", f"installed but does not import: {kv.get('error')}")
    else:
        f.saw("kvikio", f"{kv.get('version')}, compat mode setting {kv.get('setting')}, would run in compat mode: {facts.compat}")
    if kv is not None and kv.get("env_compat_mode") is not None:
        f.saw("KVIKIO_COMPAT_MODE", kv["env_compat_mode"])


@check("gds", "gpudirect storage")
def gpudirect_storage(src: Source, f: Findings):
    nvfs = read_nvidia_fs(src)
    _nvidia_fs_evidence(f, nvfs)
    lib = src.command("libcufile", find_libcufile)
    kv = src.command("kvikio", check_kvikio)
    facts = GdsFacts(nvidia.driver(src), nvfs, None if lib is None else bool(lib.get("paths")), kv)
    _library_evidence(f, lib, kv, facts)
    f.details.update(
        nvidia_fs=nvfs.loaded, nvidia_fs_version=nvfs.version, nvidia_fs_devcount=nvfs.devcount, nvidia_fs_files=list(nvfs.files),
        nvidia_fs_counters=nvfs.counters, nvidia_fs_io=nvfs.io_seen, nvidia_fs_modules=list(nvfs.modules),
        libcufile=facts.libcufile, libcufile_paths=(lib or {}).get("paths"), kvikio=facts.kvikio, compat_mode=facts.compat,
        path=facts.path, compat_reasons=facts.reasons() if facts.path == "compat" else [],
    )
    return decide(f, facts, GDS_RULES)


CHECKS = [gpudirect_storage]
