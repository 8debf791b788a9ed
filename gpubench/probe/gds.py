"""GDS area: can GPUDirect Storage move file data straight into GPU memory, or would KvikIO
fall back to its POSIX compatibility mode, and why?

nvidia-fs procfs (version, devcount): NVIDIA/gds-nvidia-fs src/nvfs-proc.c. KvikIO's fallback
rules (KVIKIO_COMPAT_MODE, missing libcufile, unreadable /run/udev): KvikIO "Runtime Settings".
KvikIO is never imported here: a child process answers, and only when it is installed.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from typing import Any

from gpubench.probe import nvidia
from gpubench.probe.checks import check
from gpubench.probe.model import Findings
from gpubench.probe.source import Source

NVIDIA_FS_MODULE = "/sys/module/nvidia_fs"
NVIDIA_FS_PROC = "/proc/driver/nvidia-fs"
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


def _explain_compat(kv: dict[str, Any], nvidia_fs: bool, libcufile: bool | None) -> list[str]:
    reasons = []
    env = (kv.get("env_compat_mode") or "").strip().upper()
    if env in ("ON", "TRUE", "YES", "1"):
        reasons.append(f"KVIKIO_COMPAT_MODE={kv.get('env_compat_mode')} forces it")
    if libcufile is False:
        reasons.append("libcufile.so was not found")
    if kv.get("run_udev_readable") is False:
        reasons.append("/run/udev is not readable (a container started without -v /run/udev:/run/udev:ro)")
    if not nvidia_fs:
        reasons.append("the nvidia_fs module is not loaded")
    return reasons


@check("gds", "gpudirect storage")
def gpudirect_storage(src: Source, f: Findings):
    drv = nvidia.driver(src)
    nvidia_fs = src.exists(NVIDIA_FS_MODULE)
    f.saw(NVIDIA_FS_MODULE, "present" if nvidia_fs else "absent")
    nvfs_version = src.value(f"{NVIDIA_FS_PROC}/version")
    devcount = src.value(f"{NVIDIA_FS_PROC}/devcount")
    if nvfs_version is not None or nvidia_fs:
        f.saw(f"{NVIDIA_FS_PROC}/version", nvfs_version if nvfs_version is not None else "absent")
        f.saw(f"{NVIDIA_FS_PROC}/devcount", devcount if devcount is not None else "absent")
    lib = src.command("libcufile", find_libcufile)
    libcufile = None if lib is None else bool(lib.get("paths"))
    f.saw("libcufile", "not recorded in this snapshot" if lib is None else (", ".join(lib["paths"]) or "not found"))
    kv = src.command("kvikio", check_kvikio)
    if kv is None:
        f.saw("kvikio", "not recorded in this snapshot")
        kvikio, compat = None, None
    else:
        kvikio = bool(kv.get("importable")) if kv.get("installed") else False
        compat = kv.get("compat_mode") if kvikio else None
        if not kv.get("installed"):
            f.saw("kvikio", "not installed")
        elif not kvikio:
            f.saw("kvikio", f"installed but does not import: {kv.get('error')}")
        else:
            f.saw("kvikio", f"{kv.get('version')}, compat mode setting {kv.get('setting')}, would run in compat mode: {compat}")
        if kv.get("env_compat_mode") is not None:
            f.saw("KVIKIO_COMPAT_MODE", kv["env_compat_mode"])
    nvfs_parsed = nvfs_version.split(":", 1)[-1].strip() if nvfs_version else None
    gds_ready = bool(drv.loaded and nvidia_fs and libcufile)
    if gds_ready and not (kvikio and compat):
        path = "gds"
    elif kvikio or libcufile:  # KvikIO's POSIX fallback, or cuFile's own compatibility mode
        path = "compat"
    else:
        path = None
    f.details.update(
        nvidia_fs=nvidia_fs, nvidia_fs_version=nvfs_parsed, nvidia_fs_devcount=devcount, libcufile=libcufile,
        libcufile_paths=(lib or {}).get("paths"), kvikio=kvikio, compat_mode=compat, path=path,
    )
    reasons = _explain_compat(kv or {}, nvidia_fs, libcufile)
    f.details["compat_reasons"] = reasons if path == "compat" else []
    fallback = {
        "compat": " KvikIO would use its POSIX compatibility mode" + (f" ({'; '.join(reasons)})" if reasons else "") + ".",
        None: "",
        "gds": "",
    }[path]

    if not drv.loaded:
        return f.no("GPUDirect Storage needs an NVIDIA GPU and its driver; none is loaded." + fallback, "only relevant on machines with an NVIDIA GPU")
    if nvidia_fs and libcufile is None:
        return f.unknown("nvidia_fs is loaded, but where libcufile is was not recorded in this snapshot", "re-record the snapshot with this version of gpubench")
    if gds_ready:
        if kvikio and compat:
            return f.partial(
                "nvidia_fs and libcufile are present, but KvikIO would still run in compat mode: " + ("; ".join(reasons) or "its own check said so"),
                "unset KVIKIO_COMPAT_MODE (or set it to AUTO/OFF); in a container mount /run/udev read-only",
            )
        return f.yes(f"nvidia_fs {nvfs_parsed or '(version unknown)'} and libcufile are present" + (", KvikIO uses them" if kvikio else ""))
    missing = [what for what, ok in (("the nvidia_fs kernel module", nvidia_fs), ("libcufile", libcufile)) if not ok]
    return f.no(
        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing, so there is no direct storage-to-GPU path." + fallback,
        "install NVIDIA GDS (packages nvidia-gds / nvidia-fs and libcufile, or pip install nvidia-cufile-cu12) and modprobe nvidia_fs",
    )


CHECKS = [gpudirect_storage]
