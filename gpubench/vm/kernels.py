"""The kernel a guest boots: its image, modules and config, from files or a Debian package.

A Debian package (`linux-image-6.12-amd64`, `linux-image-amd64`, or a versioned one) is resolved
by name with apt-cache, following meta-packages to the image they depend on, fetched with
`apt-get download`, unpacked with `dpkg -x` into a cache directory and given a modules.dep with
`depmod -b`. Nothing is installed: the host's /boot and /lib/modules are never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpubench.errors import UserError

CACHE_ENV = "GPUBENCH_KERNEL_CACHE"
COMPLETE = ".gpubench-unpacked"  # written last: a directory without it is an interrupted unpack
APT_TIMEOUT_S = 600
_MAX_META_DEPTH = 4  # linux-image-amd64 -> linux-image-6.1.0-N-amd64: one step on Debian


@dataclass(frozen=True)
class KernelFiles:
    vmlinuz: Path
    release: str  # what `uname -r` will say
    modules: Path | None  # lib/modules/RELEASE, None: boot without loadable modules
    config: Path | None  # config-RELEASE, None: config-based verdicts read unknown in the guest
    package: str | None = None  # the Debian package it came from
    version: str | None = None  # that package's version

    @property
    def major_minor(self) -> str:
        m = re.match(r"(\d+\.\d+)", self.release)
        return m.group(1) if m else self.release

    def describe(self) -> str:
        origin = f" from {self.package} {self.version}" if self.package else ""
        return f"{self.release}{origin}"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gpubench" / "kernels"


def image_release(vmlinuz: Path) -> str:
    """The release an x86 bzImage carries in its setup header (the boot protocol's kernel_version)."""
    try:
        with open(vmlinuz, "rb") as f:
            head = f.read(0x10000)
    except OSError as e:
        raise UserError(f"--kernel {vmlinuz}: cannot read it ({e.strerror or e})") from None
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        raise UserError(f"--kernel {vmlinuz}: not an x86 kernel image (bzImage), such as /boot/vmlinuz-RELEASE")
    offset = struct.unpack_from("<H", head, 0x20E)[0] + 0x200
    text = head[offset:offset + 256].split(b"\0", 1)[0].decode("ascii", "replace")
    if not text.strip():
        raise UserError(f"--kernel {vmlinuz}: the image names no kernel release")
    return text.split()[0]


def from_image(vmlinuz: Path, modules: Path | None = None, config: Path | None = None) -> KernelFiles:
    """A kernel given as files. Modules and config default to where a package puts them beside
    the image: ROOT/boot/vmlinuz-R -> ROOT/lib/modules/R and ROOT/boot/config-R."""
    release = image_release(vmlinuz)
    root = vmlinuz.resolve().parent.parent if vmlinuz.resolve().parent.name == "boot" else None
    if modules is None and root is not None and (root / "lib/modules" / release).is_dir():
        modules = root / "lib/modules" / release
    if modules is not None and not (modules / "kernel").is_dir() and not (modules / "modules.order").exists():
        raise UserError(f"--modules {modules}: not a kernel's modules directory (no kernel/ or modules.order in it)")
    beside = vmlinuz.resolve().parent / f"config-{release}"
    if config is None and beside.is_file():
        config = beside
    if config is not None and not config.is_file():
        raise UserError(f"--kernel-config {config}: no such file")
    return KernelFiles(vmlinuz, release, modules, config)


# --- Debian packages ------------------------------------------------------------------------------

def looks_like_package(text: str) -> bool:
    return bool(re.fullmatch(r"linux-image-[a-z0-9.+~-]+(=[A-Za-z0-9.+~:-]+)?", text))


def _run(args: list[str], cwd: Path | None = None) -> str:
    tool = args[0]
    if shutil.which(tool) is None:
        raise UserError(f"a kernel package name needs Debian's apt and dpkg ({tool} not found); give a kernel image instead: --kernel /boot/vmlinuz-RELEASE")
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"{' '.join(args)} took over {APT_TIMEOUT_S} s") from None
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise UserError(f"{' '.join(args)}: {last}")
    return proc.stdout


def _fields(record: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in record.splitlines():
        if line and not line[0].isspace() and ":" in line:
            key, value = line.split(":", 1)
            out.setdefault(key, value.strip())
    return out


def resolve(name: str) -> tuple[str, str]:
    """(package, version) of the kernel image `name` stands for: meta-packages such as
    linux-image-amd64 are followed to the versioned image they depend on; NAME=VERSION picks one."""
    if not looks_like_package(name):
        raise UserError(f"{name!r} is not a Debian kernel image package (linux-image-...)")
    current = name
    for _ in range(_MAX_META_DEPTH):
        try:
            fields = _fields(_run(["apt-cache", "show", "--no-all-versions", current]))
        except UserError as e:
            raise UserError(f"no package {current!r} in apt's lists ({e}); run apt-get update, or see apt-cache search linux-image") from None
        if "Package" not in fields:
            raise UserError(f"no package {current!r} in apt's lists; run apt-get update, or see apt-cache search linux-image")
        depends = [d.strip() for d in fields.get("Depends", "").split(",")]
        image = next((m for d in depends if (m := re.match(r"(linux-image-\S+)(?:\s*\(=\s*([^)\s]+)\))?", d))), None)
        if image is None:
            return fields["Package"], fields["Version"]
        current = f"{image.group(1)}={image.group(2)}" if image.group(2) else image.group(1)
    raise UserError(f"{name}: more than {_MAX_META_DEPTH} meta-packages deep; name the image package itself")


def fetch(name: str, directory: Path | None = None, progress=lambda message: None) -> KernelFiles:  # type: ignore[no-untyped-def]
    """The unpacked package, from the cache or downloaded and unpacked into it now."""
    package, version = resolve(name)
    directory = directory or cache_dir()
    dest = directory / f"{package}_{version.replace(':', '%3a')}"
    if not (dest / COMPLETE).exists():
        progress(f"fetching {package} {version} into {directory}")
        _unpack(package, version, directory, dest)
    return _described(dest, package, version)


def _unpack(package: str, version: str, directory: Path, dest: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=directory))
    except OSError as e:
        raise UserError(f"kernel cache {directory}: {e.strerror or e} (set {CACHE_ENV} to another directory)") from None
    try:
        sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []  # apt's _apt user cannot write here
        _run(["apt-get", "download", "-q", *sandbox, f"{package}={version}"], cwd=work)
        debs = sorted(work.glob("*.deb"))
        if len(debs) != 1:
            raise UserError(f"apt-get download {package}={version} left {len(debs)} packages, not one")
        root = work / "root"
        _run(["dpkg", "-x", str(debs[0]), str(root)])
        debs[0].unlink()
        releases = [p.name for p in (root / "lib/modules").iterdir()] if (root / "lib/modules").is_dir() else []
        if len(releases) == 1 and shutil.which("depmod"):
            _run(["depmod", "-b", str(root), releases[0]])
        (root / COMPLETE).write_text(f"{package} {version}\n")
        if (dest / COMPLETE).exists():  # another gpubench finished the same package first
            return
        if dest.exists():  # an earlier, interrupted unpack
            shutil.rmtree(dest)
        try:
            root.rename(dest)
        except OSError:
            if not (dest / COMPLETE).exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _described(root: Path, package: str, version: str) -> KernelFiles:
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if len(images) != 1:
        raise UserError(f"{package} {version}: expected one boot/vmlinuz-* in {root}, found {len(images)}")
    kernel = from_image(images[0])
    return KernelFiles(kernel.vmlinuz, kernel.release, kernel.modules, kernel.config, package, version)


def kernel_option(value: str) -> Path | str:
    """What `--kernel` names, checked before anything is fetched: an image file, or a package name."""
    path = Path(value)
    if path.exists() or not looks_like_package(value):
        if not path.is_file():
            raise UserError(f"--kernel {value}: no such kernel image (or give a Debian package: --kernel linux-image-6.12-amd64)")
        image_release(path)
        return path
    return value


def kernel_files(named: Path | str, modules: Path | None, config: Path | None, progress=lambda message: None) -> KernelFiles:  # type: ignore[no-untyped-def]
    """The image's files, or the package's, fetched into the cache; --modules and --kernel-config win."""
    if isinstance(named, Path):
        return from_image(named, modules, config)
    fetched = fetch(named, progress=progress)
    if modules is None and config is None:
        return fetched
    return KernelFiles(fetched.vmlinuz, fetched.release, modules or fetched.modules, config or fetched.config, fetched.package, fetched.version)
