"""The cases of the I/O benchmarks (iouring, psync): a matrix of shapes per size, the user's
overrides, the run's settings, and every value checked before anything runs."""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

from gpubench.bench.core import params as P
from gpubench.bench.core.settings import RunSettings, Setting, SettingError
from gpubench.bench.engines import iofile, iojob
from gpubench.errors import UserError

MAX_QUEUE_DEPTH = 4096  # gpubench's ring ceiling (the kernel itself allows 32768 SQ entries)
MAX_PSYNC_THREADS = 256
MAX_JOBS = 1024
MAX_BLOCK = 64 << 20
MAX_RUNTIME_S = 3600.0
MIN_DIO_ALIGNMENT = 512  # the smallest logical block any device has; the real figure is checked in prepare

PSYNC_OPTIONS = ("pattern", "bs", "qd", "jobs", "direct", "size", "runtime", "io_size", "mix")
IOURING_OPTIONS = PSYNC_OPTIONS + ("registered", "sqpoll")  # the ring's own on top
SETTINGS = frozenset({Setting.TARGET, Setting.VERIFY, Setting.DROP_CACHE, Setting.VS_FIO, Setting.ALLOW_DEVICE_WRITE})

DEFAULT_FILE_SIZE = {"quick": 64 << 20, "default": 256 << 20, "full": 1 << 30}
DEFAULT_RUNTIME = {"quick": 0.25, "default": 1.0, "full": 2.0}


@dataclass(frozen=True)
class Shape:
    """What varies between the cases of a matrix."""

    pattern: str
    bs: int
    qd: int  # ring depth for iouring; threads per job for psync
    jobs: int
    direct: bool


@dataclass(frozen=True)
class IoParams:
    """One case's parameters, validated; what results store (via Case.params)."""

    engine: str  # "iouring" or "psync"
    pattern: str
    bs: int
    qd: int  # ring depth for iouring; threads per job for psync
    jobs: int
    direct: bool
    size: int  # bytes of the scratch file (or of an existing target) the jobs address
    runtime: float  # seconds per repetition
    io_size: int = 0  # bytes per repetition instead of runtime; 0: runtime-bounded
    mix: int = 70  # randrw: percentage of reads
    registered: bool = True  # iouring: register buffers and the file when the kernel allows
    sqpoll: bool = False
    verify: bool = False
    drop_cache: bool = False
    vs_fio: bool = False
    target: str | None = None  # None: the scratch directory the pipeline gives
    allow_device_write: bool = False

    @property
    def read_percent(self) -> int:
        return {"read": 100, "randread": 100, "write": 0, "randwrite": 0}.get(self.pattern, self.mix)

    @property
    def writes(self) -> bool:
        return self.read_percent < 100

    def case_name(self) -> str:
        parts = [self.pattern, iofile.format_size(self.bs), f"qd{self.qd}", f"j{self.jobs}",
                 "direct" if self.direct else "buffered"]
        if self.pattern == "randrw":
            parts.insert(1, f"mix{self.mix}")
        suffixes = (("unreg", self.engine == "iouring" and not self.registered), ("sqpoll", self.sqpoll),
                    ("cold", self.drop_cache and not self.direct), ("verify", self.verify))
        return "-".join(parts + [word for word, on in suffixes if on])

    def to_params(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.pop("engine")
        return d


# --- the matrices ----------------------------------------------------------------------------

K4, K128 = 4096, 128 * 1024


def _iouring_matrix(size: str, cores: int) -> list[Shape]:
    if size == "quick":
        return [Shape("randread", K4, 32, 1, False), Shape("randread", K4, 32, 1, True), Shape("read", K128, 8, 1, True)]
    rows = [
        Shape("randread", K4, 32, 1, False), Shape("randread", K4, 32, 1, True), Shape("read", K128, 8, 1, True),
        Shape("randwrite", K4, 32, 1, True), Shape("write", K128, 8, 1, True), Shape("randrw", K4, 32, 1, True),
        Shape("randread", K4, 32, cores, True), Shape("read", K128, 8, cores, True),
    ]
    if size == "full":
        rows += [Shape("randread", K4, qd, 1, True) for qd in (1, 8, 128)]
        rows += [Shape("randread", K4, 32, cores, False), Shape("read", 1 << 20, 4, 1, True),
                 Shape("write", K128, 8, 1, False)]
    return rows


def _psync_matrix(size: str, cores: int) -> list[Shape]:
    if size == "quick":
        return [Shape("randread", K4, 1, 1, False), Shape("randread", K4, 1, 1, True)]
    rows = [
        Shape("randread", K4, 1, 1, False), Shape("randread", K4, 1, 1, True), Shape("read", K128, 1, 1, True),
        Shape("randwrite", K4, 1, 1, True), Shape("write", K128, 1, 1, True), Shape("randrw", K4, 1, 1, True),
        Shape("randread", K4, 1, cores, True),
    ]
    if size == "full":
        rows += [Shape("randread", K4, 8, 1, True), Shape("randread", K4, 1, cores, False),
                 Shape("write", K128, 1, 1, False)]
    return rows


MATRICES: dict[str, Callable[[str, int], list[Shape]]] = {"iouring": _iouring_matrix, "psync": _psync_matrix}


def _overridden(engine: str, rows: list[Shape], options: dict[str, str]) -> list[Shape]:
    """The rows with each given shape parameter's values in place of the matrix's (every
    combination); a pattern replaces the patterns of the distinct rows."""
    given = {k: v for k, v in options.items() if k in {f.name for f in fields(Shape)} and str(v).strip()}
    if "pattern" in given:
        patterns = P.parse_choices(engine, "pattern", given["pattern"], iofile.PATTERNS)
        rows = [replace(row, pattern=p) for p in patterns for row in dict.fromkeys(replace(r, pattern="") for r in rows)]
    parsers: dict[str, Callable[[str], list]] = {
        "bs": lambda text: P.parse_sizes(engine, "bs", text, default_unit=""),
        "qd": lambda text: P.parse_ints(engine, "qd", text, 1),
        "jobs": lambda text: P.parse_ints(engine, "jobs", text, 1),
        "direct": lambda text: P.parse_bools(engine, "direct", text, {"direct": True, "buffered": False}),
    }
    for name, parse in parsers.items():
        if name in given:
            values = parse(given[name])
            rows = [replace(row, **{name: value}) for row in rows for value in values]
    return list(dict.fromkeys(rows))


# --- the target ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    path: Path
    kind: str  # "dir", "file" or "block"
    size: int  # bytes for a file or block device, 0 for a directory
    alignment: iofile.DioAlignment

    @classmethod
    def of(cls, target: str | Path) -> Target:
        """What the run's target is (SettingError when it is none of the three kinds)."""
        path = Path(target).expanduser()
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            raise SettingError(Setting.TARGET, e.strerror or str(e), str(target)) from None
        if stat.S_ISDIR(mode):
            kind, size = "dir", 0
        elif stat.S_ISBLK(mode):
            kind, size = "block", iofile.block_device_size(path)
        elif stat.S_ISREG(mode):
            kind, size = "file", os.stat(path).st_size
        else:
            raise SettingError(Setting.TARGET, "not a directory, regular file or block device", str(target))
        return cls(path, kind, size, iofile.dio_alignment(path))

    @classmethod
    def scratch(cls, directory: Path) -> Target:
        return cls(Path(directory), "dir", 0, iofile.dio_alignment(Path(directory)))


# --- planning --------------------------------------------------------------------------------

def plan_cases(engine: str, size: str, options: dict[str, str], settings: RunSettings = RunSettings()) -> list[IoParams]:
    """The cases for a size with the user's overrides and the run's settings, every value validated."""
    P.check_options(engine, options, IOURING_OPTIONS if engine == "iouring" else PSYNC_OPTIONS)
    if size not in DEFAULT_FILE_SIZE:
        raise UserError(f"unknown size {size!r}; choose from {', '.join(DEFAULT_FILE_SIZE)}")
    rows = _overridden(engine, MATRICES[engine](size, os.cpu_count() or 1), options)
    common = _common(engine, size, options, settings)
    target = Target.of(settings.target) if settings.target is not None else None
    cases = [IoParams(engine, **asdict(row), **common) for row in rows]
    for p in cases:
        check_case(p, target)
    names = [p.case_name() for p in cases]
    if len(set(names)) != len(names):  # cannot happen with distinct rows; guards the naming scheme
        raise UserError(f"{engine}: two cases share a name: {sorted(n for n in names if names.count(n) > 1)[0]}")
    return cases


def _common(engine: str, size: str, options: dict[str, str], settings: RunSettings) -> dict[str, Any]:
    """The parameters every case of a plan shares."""
    def given(key: str) -> str | None:
        value = options.get(key)
        return value if value is not None and str(value).strip() else None

    def flag(key: str, default: bool) -> bool:
        value = given(key)
        return default if value is None else P.parse_bool(engine, key, value)

    return dict(
        size=P.parse_size(engine, "size", options["size"], default_unit="") if given("size") else DEFAULT_FILE_SIZE[size],
        runtime=P.parse_seconds(engine, "runtime", options["runtime"], MAX_RUNTIME_S) if given("runtime")
        else DEFAULT_RUNTIME[size],
        io_size=P.parse_size(engine, "io_size", options["io_size"], default_unit="") if given("io_size") else 0,
        mix=P.parse_int(engine, "mix", options["mix"], 1, 99) if given("mix") else 70,
        registered=flag("registered", True), sqpoll=flag("sqpoll", False),
        verify=settings.verify, drop_cache=settings.drop_cache, vs_fio=settings.vs_fio,
        target=str(settings.target) if settings.target is not None else None,
        allow_device_write=settings.allow_device_write,
    )


def check_case(p: IoParams, target: Target | None) -> None:
    """Raise UserError when the case cannot run as asked (on `target`, or a scratch file when None)."""
    for check in (_limits, _memory, _alignment, _verify_block, _room, _io_size):
        problem = check(p, target)
        if problem:
            raise UserError(f"{p.engine}: {problem}")


def _limits(p: IoParams, target: Target | None) -> str | None:
    if p.bs <= 0:
        return "bs must be at least 1 byte"
    if p.bs > MAX_BLOCK:
        return f"bs={iofile.format_size(p.bs)} is above the 64 MiB gpubench allows per I/O"
    if p.jobs > MAX_JOBS:
        return f"jobs={p.jobs}: at most {MAX_JOBS} jobs"
    if p.jobs < 1 or p.qd < 1:
        return f"jobs={p.jobs}, qd={p.qd}: each must be at least 1"
    if p.engine == "iouring" and p.qd > MAX_QUEUE_DEPTH:
        return f"qd={p.qd} is beyond the ring limit of {MAX_QUEUE_DEPTH} entries"
    if p.engine == "psync" and p.qd > MAX_PSYNC_THREADS:
        return f"qd={p.qd} threads per job; at most {MAX_PSYNC_THREADS}"
    return None


def _memory(p: IoParams, target: Target | None) -> str | None:
    import psutil

    buffers = p.jobs * p.qd * p.bs  # one buffer per I/O in flight
    available = psutil.virtual_memory().available
    if buffers > available // 2:
        return (f"jobs={p.jobs} x qd={p.qd} x bs={iofile.format_size(p.bs)} needs {buffers / 2**30:,.1f} GiB of I/O "
                f"buffers, more than half the {available / 2**30:,.1f} GiB of memory available")
    return None


def _alignment(p: IoParams, target: Target | None) -> str | None:
    if not p.direct:
        return None
    need = target.alignment.offset if target else MIN_DIO_ALIGNMENT
    source = f" ({target.alignment.source} of {target.path})" if target else ""
    return f"bs={p.bs} is not a multiple of the O_DIRECT alignment {need} bytes{source}" if p.bs % need else None


def _verify_block(p: IoParams, target: Target | None) -> str | None:
    if p.verify and p.bs < iofile.MIN_VERIFY_BLOCK:
        return f"verify needs bs of at least {iofile.MIN_VERIFY_BLOCK} bytes (header and CRC)"
    return None


def _room(p: IoParams, target: Target | None) -> str | None:
    """Every job (and psync thread) that needs a region of its own gets one block at least; verify
    finds a block for every I/O in flight."""
    span, count = span_of(p, target), regions(p)
    if span < p.bs * count:
        each = (f", jobs={p.jobs}" + (f" and {p.qd} threads per job" if p.engine == "psync" else "")
                + ": each works on a region of its own, of one block at least") if count > 1 else ""
        return f"size {span} bytes is too small for bs={p.bs}{each}"
    blocks_per_job = span // count // p.bs
    if p.verify and p.engine == "iouring" and blocks_per_job < p.qd:
        return (f"verify keeps one I/O per block in flight: size {span} bytes gives each job {blocks_per_job} "
                f"blocks of bs={p.bs}, fewer than qd={p.qd}")
    return None


def _io_size(p: IoParams, target: Target | None) -> str | None:
    return f"io_size={p.io_size} is smaller than one block ({p.bs})" if p.io_size and p.io_size < p.bs else None


def regions(p: IoParams) -> int:
    """How many disjoint regions the file is split into (iojob.regions): one per job, and within
    a psync job one per thread; 1 where jobs share the whole file."""
    if not iojob.needs_own_region(p.pattern, p.verify, p.writes):
        return 1
    return p.jobs * (p.qd if p.engine == "psync" else 1)


def span_of(p: IoParams, target: Target | None) -> int:
    """The bytes of the file the case addresses."""
    if target and target.kind in ("file", "block"):
        return min(p.size, target.size) if p.size and target.kind == "block" else target.size
    return p.size
