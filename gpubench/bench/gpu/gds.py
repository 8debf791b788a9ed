"""gds: file <-> GPU memory through KvikIO's CuFile, and the path that really carried the bytes.

Cases, per size, KvikIO thread count and task size:
  read-cold   CuFile.read into GPU memory after the file's page cache was dropped
              (fdatasync, then posix_fadvise(POSIX_FADV_DONTNEED) on the file); WAIVED when
              the pages stay (tmpfs keeps them all), as the reads would be warm
  read-warm   the same with the file in the page cache (read once untimed beforehand)
  write       CuFile.write from GPU memory, then fsync, both timed
and per size the baseline without KvikIO:
  baseline-read-cold / -warm   POSIX preadv into pinned host memory, then a host-to-device copy

Which path ran is read from KvikIO itself, never guessed: KvikIO's compatibility mode
(defaults.is_compat_mode_preferred, or defaults.compat_mode() on older releases) means
"posix-compat" (KvikIO's own POSIX reads and a bounce buffer), and so does a transfer smaller
than KvikIO's gds_threshold (always done through POSIX) or, in compat mode AUTO, a file KvikIO
could not open with O_DIRECT (CuFile.is_direct_io_supported, KvikIO 25.12+). Otherwise cuFile
carries the I/O, and cuFile's driver properties (is_gds_available: nvidia-fs is loaded and the
driver open) tell "gds" from "cufile-compat" (cuFile's own compatibility mode). One fallback
KvikIO does not report: in AUTO, a file cuFile refuses to register also goes through POSIX.
The result's extra also names the file system, KvikIO's version, the thread count, task size and
GDS threshold KvikIO reports back, and the nvidia-fs version cuFile reports. With O_DIRECT (real
GDS) the page cache is not used, so cold and warm should agree there.

The scratch file lives in the case's scratch directory, or in the run's --target (a directory),
and is removed afterwards. `--drop-cache` keeps only the cold reads.

One repetition is `iterations` transfers of the whole size; its value is their median GB/s.

Parameters (--param gds.NAME=VALUE):
  sizes       transfer (and file) sizes, multiples of 4 KiB (default 256M,1G; quick 64M;
              full 64M,256M,1G,4G)
  threads     KvikIO thread-pool sizes (default 1,4,16; quick 4; full 1,4,8,16,32)
  task_sizes  KvikIO task sizes (default 4M; full 1M,4M,16M)
  ops         any of read,write (default both)
  caches      any of cold,warm for reads (default both)
  baseline    also run the POSIX + copy baseline (default true)
  iterations  transfers per repetition (default 5; quick 3)
  gpu         the GPU in the probe's PCI order (default 0)
The run's --target (a directory on the file system to measure; a file or device, as --target may
name for the I/O benchmarks, waives the cases) and --drop-cache apply (Gds.honours).
"""

from __future__ import annotations

import os
import re
import statistics
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from gpubench.bench.core.settings import RunSettings, Setting
from gpubench.bench.core.params import check_options, format_size, parse_bool, parse_choices, parse_ints, parse_sizes
from gpubench.bench.gpu import common as g
from gpubench.bench.gpu.worker import GpuBenchmark
from gpubench.bench.engines import iofile
from gpubench.bench.core.interface import BenchFailure, Case, Context, Sample, Waived
from gpubench.errors import UserError
from gpubench.probe.model import Profile
from gpubench.probe.views import GdsView

BENCH = "gds"
OPTIONS = ("sizes", "threads", "task_sizes", "ops", "caches", "baseline", "iterations", "gpu")
OPS = ("read", "write")
CACHES = ("cold", "warm")
MAX_THREADS = 1024
DEFAULT_SIZES = {"quick": [64 * g.MIB], "default": [256 * g.MIB, g.GIB], "full": [64 * g.MIB, 256 * g.MIB, g.GIB, 4 * g.GIB]}
DEFAULT_THREADS = {"quick": [4], "default": [1, 4, 16], "full": [1, 4, 8, 16, 32]}
DEFAULT_TASK_SIZES = {"quick": [4 * g.MIB], "default": [4 * g.MIB], "full": [g.MIB, 4 * g.MIB, 16 * g.MIB]}
DEFAULT_ITERATIONS = {"quick": 3, "default": 5, "full": 5}
FILL_CHUNK = 16 * g.MIB
PATHS = ("gds", "cufile-compat", "posix-compat", "unknown")
# KvikIO's own round-trip benchmark (python -m ...), for comparing read GB/s on the same file system
KVIKIO_BENCHMARK_MODULES = ("kvikio.benchmarks.single_node_io",)


# --- KvikIO, read through its documented settings --------------------------------------------

def kvikio_compat(defaults: Any) -> bool | None:
    """Whether KvikIO runs in its POSIX compatibility mode: is_compat_mode_preferred() (25.04+),
    else the compat_mode setting (a bool up to 24.10, CompatMode ON/OFF/AUTO in 24.12 and 25.02)."""
    if hasattr(defaults, "is_compat_mode_preferred"):
        return bool(defaults.is_compat_mode_preferred())
    value = defaults.get("compat_mode") if hasattr(defaults, "get") else defaults.compat_mode()
    if isinstance(value, bool):
        return value
    name = str(getattr(value, "name", value)).upper().rsplit(".", 1)[-1]
    return {"ON": True, "OFF": False}.get(name)


def kvikio_setting(defaults: Any, name: str) -> Any:
    """A KvikIO setting ("num_threads", "task_size", "gds_threshold") under 25.x's get() or 24.x's
    functions."""
    if hasattr(defaults, "get"):
        return defaults.get(name)
    legacy = {"num_threads": "get_num_threads", "task_size": "task_size", "gds_threshold": "gds_threshold"}[name]
    return getattr(defaults, legacy)()


def kvikio_settings(defaults: Any, num_threads: int, task_size: int) -> Any:
    """A context manager applying the thread count and task size, restoring them on exit:
    defaults.set({...}) on 25.x, set_num_threads / set_task_size context managers on 24.x."""
    if hasattr(defaults, "set"):
        return defaults.set({"num_threads": num_threads, "task_size": task_size})
    stack = ExitStack()
    stack.enter_context(defaults.set_num_threads(num_threads))
    stack.enter_context(defaults.set_task_size(task_size))
    return stack


def cufile_properties(kvikio: Any) -> dict[str, Any]:
    """cuFile's driver properties as KvikIO exposes them; {} when cuFile cannot be asked."""
    try:
        module = kvikio.cufile_driver
        props = getattr(module, "properties", None) or module.DriverProperties()
    except Exception:
        return {}
    out: dict[str, Any] = {}
    for key, attr in (("gds_available", "is_gds_available"), ("allow_compat_mode", "allow_compat_mode"),
                      ("nvfs_major", "major_version"), ("nvfs_minor", "minor_version")):
        try:
            value = getattr(props, attr)
            out[key] = value() if callable(value) else value
        except Exception:
            continue
    return out


def file_compat(compat: bool | None, nbytes: int, gds_threshold: int | None, direct_io: bool | None) -> bool | None:
    """KvikIO's compat answer for transfers of nbytes on one open file: below gds_threshold KvikIO
    reads and writes through POSIX whatever the mode, and when KvikIO would otherwise use cuFile
    (compat mode AUTO), a file it could not open with O_DIRECT falls back to POSIX."""
    if gds_threshold is not None and nbytes < gds_threshold:
        return True
    if compat is False and direct_io is False:
        return True
    return compat


def io_path(compat: bool | None, gds_available: bool | None) -> str:
    """The path KvikIO's own answers imply: posix-compat, gds, cufile-compat, or unknown."""
    if compat is None:
        return "unknown"
    if compat:
        return "posix-compat"
    if gds_available:
        return "gds"
    return "cufile-compat" if gds_available is False else "unknown"


def parse_kvikio_report(text: str) -> dict[str, float]:
    """GB/s (1e9 B/s) of each 'API op | N UNIT/s' line of KvikIO's single-node benchmark."""
    units = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
             "kiB": 1 << 10, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
    out = {}
    for m in re.finditer(r"^(\S+ (?:read|write))\s*\|\s*([\d.]+)\s*([kKMGT]?i?B)/s", text, re.MULTILINE):
        if m.group(3) in units:
            out[m.group(1)] = float(m.group(2)) * units[m.group(3)] / 1e9
    return out


# --- planning --------------------------------------------------------------------------------

def plan(profile: Profile, size: str, options: dict[str, str], settings: RunSettings = RunSettings()) -> list[Case]:
    check_options(BENCH, options, OPTIONS)
    gpus = g.nvidia_gpus(profile)
    if not gpus:
        raise UserError(f"{BENCH}: the probe found no NVIDIA GPU")
    sizes, iterations = g.sizes_and_iterations(BENCH, options, size, DEFAULT_SIZES, DEFAULT_ITERATIONS)
    threads = parse_ints(BENCH, "threads", options["threads"], 1, MAX_THREADS) if "threads" in options else DEFAULT_THREADS[size]
    task_sizes = parse_sizes(BENCH, "task_sizes", options["task_sizes"], g.PATTERN_BYTES) if "task_sizes" in options else DEFAULT_TASK_SIZES[size]
    ops = parse_choices(BENCH, "ops", options["ops"], OPS) if "ops" in options else list(OPS)
    if "caches" in options:
        caches = parse_choices(BENCH, "caches", options["caches"], CACHES)
    elif settings.drop_cache:
        caches = ["cold"]
    else:
        caches = list(CACHES)
    baseline = parse_bool(BENCH, "baseline", options["baseline"]) if "baseline" in options else True
    gpu = g.parse_gpus(BENCH, "gpu", options["gpu"], gpus)[0] if "gpu" in options else 0
    target = str(settings.target) if settings.target is not None else None
    if target is not None and not Path(target).exists():
        raise UserError(f"{BENCH}: target {target}: no such directory (gds writes its own scratch file there)")

    common = {**g.gpu_params(gpus[gpu]), "iterations": iterations, "target": target,
              "probe_path": GdsView.from_profile(profile).path}
    cases = []
    for nbytes in sizes:
        for nthreads in threads:
            for task in task_sizes:
                tail = f"{format_size(nbytes)}-t{nthreads}-ts{format_size(task)}"
                knobs = {"size": nbytes, "threads": nthreads, "task_size": task}
                if "read" in ops:
                    for cache in caches:
                        cases.append(Case(f"read-{cache}-{tail}", {**common, **knobs, "op": "read", "cache": cache, "engine": "kvikio"}, "GB/s"))
                if "write" in ops:
                    cases.append(Case(f"write-{tail}", {**common, **knobs, "op": "write", "cache": None, "engine": "kvikio", "includes_fsync": True}, "GB/s"))
        if baseline and "read" in ops:
            for cache in caches:
                params = {**common, "size": nbytes, "threads": 1, "task_size": None, "op": "read", "cache": cache, "engine": "posix-pinned-h2d"}
                cases.append(Case(f"baseline-read-{cache}-{format_size(nbytes)}", params, "GB/s"))
    if not cases:
        raise UserError(f"{BENCH}: nothing to measure for ops={','.join(ops)}")
    return cases


class Gds(GpuBenchmark):
    key: ClassVar[str] = "gds"
    options: ClassVar[tuple[str, ...]] = OPTIONS
    honours: ClassVar[frozenset[Setting]] = frozenset({Setting.TARGET, Setting.DROP_CACHE})
    description: ClassVar[str] = (
        "KvikIO CuFile reads (cold and warm page cache) and writes between a file and GPU memory over sizes, "
        "thread counts and task sizes, naming the path KvikIO took (GDS, cuFile compat, POSIX compat); "
        "baseline: POSIX read into pinned memory plus a host-to-device copy"
    )

    def requires(self, profile: Profile) -> str | None:
        reason = g.gpu_waiver(profile, 1)
        if reason:
            return reason
        if GdsView.from_profile(profile).kvikio is False:
            return f"KvikIO is not installed (probe: gpudirect storage, kvikio = no): {g.INSTALL_HINT}"
        return g.kvikio_missing()

    def cases(self, profile: Profile, size: str, options: dict[str, str], settings: RunSettings = RunSettings()) -> list[Case]:
        return plan(profile, size, options, settings)

    def waiver(self, case: Case, ctx: Context) -> str | None:
        p = case.params
        if p["target"] and not Path(p["target"]).is_dir():  # --target names the file or device the I/O benchmarks read
            return (f"target {p['target']} is a file or device; gds writes a scratch file of its own and needs a "
                    f"directory there (--target DIR)")
        return g.kvikio_missing() if p["engine"] == "kvikio" else None

    @contextmanager
    def prepare_here(self, case: Case, ctx: Context) -> Iterator[Callable[[], Sample]]:
        p = case.params
        directory = Path(p["target"]) if p["target"] else ctx.scratch
        if not directory.is_dir():
            raise BenchFailure(f"{directory}: not a directory")
        cp = g.load_cupy()
        kvikio = _load_kvikio() if p["engine"] == "kvikio" else None
        ordinal = g.cuda_ordinal(cp, p["gpu_pci"], p["gpu"])
        with ExitStack() as stack:
            stack.enter_context(cp.cuda.Device(ordinal))
            stack.callback(cp.get_default_memory_pool().free_all_blocks)
            path = directory / f"gpubench-gds-{os.getpid()}.bin"
            stack.callback(iofile.remove_scratch, path)
            _write_file(path, int(p["size"]), pattern=p["op"] == "read")
            extra = {**g.device_facts(cp, ordinal), "filesystem": _filesystem(directory), "engine": p["engine"], "timer": "wall"}
            if kvikio is None:
                yield _baseline(cp, path, p, extra, stack)
            else:
                yield _kvikio_case(cp, kvikio, path, p, extra, stack)


def _load_kvikio() -> Any:
    try:
        import kvikio
        import kvikio.defaults  # noqa: F401
    except ImportError as e:
        raise Waived(g.kvikio_missing() or f"KvikIO does not import: {e} ({g.INSTALL_HINT})") from None
    except Exception as e:  # a broken installation: a fault, not a missing package
        raise BenchFailure(f"KvikIO does not load: {type(e).__name__}: {e}") from None
    try:
        import kvikio.cufile_driver  # noqa: F401  (absent from old releases; path then reads 'unknown')
    except Exception:
        pass
    return kvikio


def _filesystem(directory: Path) -> str | None:
    mount = iofile.mount_of(directory)
    return mount.fstype if mount else None


def _write_file(path: Path, nbytes: int, pattern: bool = True) -> None:
    """The scratch file, on stable storage: the 4 KiB pattern repeated (for reads), or zeros (for
    writes, which must put the pattern there)."""
    import numpy as np

    try:
        iofile.check_free_space(path.parent, nbytes)
    except iofile.DiskFull as e:
        raise BenchFailure(str(e)) from None
    block = g.pattern(np) if pattern else np.zeros(g.PATTERN_BYTES, dtype=np.uint8)
    chunk = np.tile(block, min(nbytes, FILL_CHUNK) // g.PATTERN_BYTES).tobytes()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:
        raise BenchFailure(f"cannot create the scratch file {path}: {e.strerror}") from None
    try:
        written = 0
        while written < nbytes:
            n = os.write(fd, chunk[: min(len(chunk), nbytes - written)])
            written += n
        os.fsync(fd)
    except OSError as e:
        raise BenchFailure(f"cannot write the scratch file {path} ({nbytes} bytes): {e.strerror}") from None
    finally:
        os.close(fd)


def _check_device(cp: Any, np: Any, buf: Any, nbytes: int, name: str) -> None:
    g.check_copy(np, name, cp.asnumpy(buf[: g.PATTERN_BYTES]), cp.asnumpy(buf[nbytes - g.PATTERN_BYTES: nbytes]))


def _kvikio_case(cp: Any, kvikio: Any, path: Path, p: dict[str, Any], extra: dict[str, Any], stack: ExitStack) -> Callable[[], Sample]:
    import numpy as np

    nbytes, iterations = int(p["size"]), int(p["iterations"])
    defaults = kvikio.defaults
    stack.enter_context(kvikio_settings(defaults, int(p["threads"]), int(p["task_size"])))
    handle = kvikio.CuFile(path, "r+" if p["op"] == "write" else "r")
    stack.callback(handle.close)
    compat = kvikio_compat(defaults)
    threshold = kvikio_setting(defaults, "gds_threshold")
    direct_io = handle.is_direct_io_supported() if hasattr(handle, "is_direct_io_supported") else None
    this_file = file_compat(compat, nbytes, threshold, direct_io)
    props = cufile_properties(kvikio) if not this_file else {}
    extra = {
        **extra,
        "path": io_path(this_file, props.get("gds_available")),
        "kvikio_version": getattr(kvikio, "__version__", None),
        "kvikio_compat_mode": compat,
        "kvikio_num_threads": kvikio_setting(defaults, "num_threads"),
        "kvikio_task_size": kvikio_setting(defaults, "task_size"),
        "kvikio_gds_threshold": threshold,
        "kvikio_direct_io": direct_io,
        "cufile": props,
        "probe_path": p["probe_path"],
    }
    buf = cp.zeros(nbytes, dtype=cp.uint8)
    if p["op"] == "write":
        buf.reshape(-1, g.PATTERN_BYTES)[:] = cp.asarray(g.pattern(np))
    g.wait_for_setup(cp)  # KvikIO's I/O is not stream-ordered: the fill must have landed before it
    if p["op"] == "write":

        def write() -> None:
            done = handle.write(buf)
            os.fsync(handle.fileno())
            if done != nbytes:
                raise BenchFailure(f"KvikIO wrote {done} of {nbytes} bytes")

        write()
        fd = handle.fileno()
        g.check_copy(np, f"KvikIO write ({extra['path']})", np.frombuffer(os.pread(fd, g.PATTERN_BYTES, 0), np.uint8),
                     np.frombuffer(os.pread(fd, g.PATTERN_BYTES, nbytes - g.PATTERN_BYTES), np.uint8))
        return lambda: g.bandwidth_sample(nbytes, g.wall_intervals(write, iterations), extra)

    def read() -> None:
        done = handle.read(buf)
        if done != nbytes:
            raise BenchFailure(f"KvikIO read {done} of {nbytes} bytes")

    before = _before_each_read(path, p)
    read()
    _check_device(cp, np, buf, nbytes, f"KvikIO read ({extra['path']})")
    return lambda: g.bandwidth_sample(nbytes, g.wall_intervals(read, iterations, before), extra)


def _before_each_read(path: Path, p: dict[str, Any]) -> Callable[[], None] | None:
    """What runs before each timed read: for a cold case, dropping the file's page cache (Waived
    when it stays resident); a warm case reads the file once now and needs nothing."""
    if p["cache"] == "cold":
        return lambda: iofile.drop_cache_for_cold_reads(path, int(p["size"]))
    iofile.warm_file(path, int(p["size"]))
    return None


def _baseline(cp: Any, path: Path, p: dict[str, Any], extra: dict[str, Any], stack: ExitStack) -> Callable[[], Sample]:
    import numpy as np

    nbytes, iterations = int(p["size"]), int(p["iterations"])
    pinned = g.PinnedHost(cp, nbytes)
    stack.callback(pinned.close)
    host = memoryview(pinned.numpy())
    dev = cp.zeros(nbytes, dtype=cp.uint8)
    g.wait_for_setup(cp)
    stream = cp.cuda.Stream(non_blocking=True)
    h2d = g.runtime_constant(cp, "memcpyHostToDevice", g.MEMCPY_HOST_TO_DEVICE)
    fd = os.open(path, os.O_RDONLY)
    stack.callback(os.close, fd)
    extra = {**extra, "path": "posix-pinned-h2d"}
    phases: dict[str, list[float]] = {"read_s": [], "h2d_s": []}

    def read_and_copy() -> None:
        t0 = time.perf_counter()
        done = 0
        while done < nbytes:
            n = os.preadv(fd, [host[done:]], done)
            if n <= 0:
                raise BenchFailure(f"{path}: short read at {done} of {nbytes} bytes")
            done += n
        t1 = time.perf_counter()
        cp.cuda.runtime.memcpyAsync(dev.data.ptr, pinned.ptr, nbytes, h2d, stream.ptr)
        stream.synchronize()
        phases["read_s"].append(t1 - t0)
        phases["h2d_s"].append(time.perf_counter() - t1)

    before = _before_each_read(path, p)
    read_and_copy()
    _check_device(cp, np, dev, nbytes, "POSIX read + copy")

    def measure() -> Sample:
        for values in phases.values():
            values.clear()
        seconds = g.wall_intervals(read_and_copy, iterations, before)
        return g.bandwidth_sample(nbytes, seconds, extra, {f"{k}_median": statistics.median(v) for k, v in phases.items()})

    return measure
