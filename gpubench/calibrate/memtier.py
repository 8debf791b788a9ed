"""Calibrate memtier against C: the same triad and pointer chase, built with the system compiler.

The C reference (gpubench/bench/engines/csrc/memtier_ref.c) is compiled with `cc -O3 -fopenmp
-march=native` into a temporary directory and started once as a server; gpubench's side runs through
the memtier benchmark's own prepare(), so what is calibrated is what the benchmark measures. Both
sides get the same array and chase sizes, thread count, CPU set, memory node (the C process starts
under an MPOL_BIND policy for that node and its pages are checked in its numa_maps), huge-page
advice and permutation approach, and each round measures them back to back in alternating order,
so the per-round ratios cancel the host's drift.

Triad is compared twice, like with like: gpubench's streaming-store kernel against C with the
streaming-store intrinsic, and both plain loops.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from gpubench.bench import memtier
from gpubench.bench.core.interface import BenchFailure, Context, Sample
from gpubench.bench.engines import numa
from gpubench.calibrate.paired import Arm, Goal, Judged, PairedRatios, interleave
from gpubench.errors import UserError
from gpubench.probe.model import Profile

MIB = 1 << 20
CFLAGS = ("-O3", "-fopenmp", "-march=native")
TRIAD_GOAL = Goal(0.9)  # gpubench / C, at least
LATENCY_GOAL = Goal(0.10, two_sided=True)  # |gpubench / C - 1|, at most


@dataclass(frozen=True)
class Row(Judged):
    """One measurement compared across rounds: gpubench's values, C's, and their per-round ratios."""

    name: str
    unit: str
    gpubench_variant: str
    c_variant: str
    gpubench: tuple[float, ...]
    c: tuple[float, ...]
    goal: Goal

    @property
    def paired(self) -> PairedRatios:
        return PairedRatios(self.gpubench, self.c)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "gpubench_variant": self.gpubench_variant,
            "c_variant": self.c_variant,
            "gpubench": list(self.gpubench),
            "c": list(self.c),
            "gpubench_median": statistics.median(self.gpubench),
            "c_median": statistics.median(self.c),
            **self.paired.to_dict(),
            "goal": self.goal.text("C"),
            "met": self.met,
        }


@dataclass(frozen=True)
class Calibration:
    array_bytes: int
    chase_bytes: int
    hops: int
    threads: int
    rounds: int
    best_of: int
    cpus: tuple[int, ...]
    node: int
    compiler: str
    rows: tuple[Row, ...]
    placement: dict[str, str] = field(default_factory=dict)  # side -> how its pages were checked

    def to_dict(self) -> dict[str, Any]:
        return {
            "array_bytes": self.array_bytes,
            "chase_bytes": self.chase_bytes,
            "hops": self.hops,
            "threads": self.threads,
            "rounds": self.rounds,
            "best_of": self.best_of,
            "cpus": list(self.cpus),
            "node": self.node,
            "compiler": self.compiler,
            "rows": [r.to_dict() for r in self.rows],
            "placement": dict(self.placement),
        }


def c_source() -> str:
    return resources.files("gpubench.bench.engines").joinpath("csrc/memtier_ref.c").read_text()


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise UserError("calibrate memtier needs a C compiler: none found as cc or gcc (apt: gcc)")
    return cc


def build_reference(workdir: Path) -> tuple[Path, str]:
    """Compile the C reference into `workdir`; return the program and the compiler's version line."""
    cc = compiler()
    source = workdir / "memtier_ref.c"
    source.write_text(c_source())
    program = workdir / "memtier_ref"
    done = subprocess.run([cc, *CFLAGS, str(source), "-o", str(program)], capture_output=True, text=True)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise UserError(f"calibrate memtier: {cc} {' '.join(CFLAGS)} failed: {first}")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()
    return program, f"{cc} {' '.join(CFLAGS)} ({version[0] if version else 'version unknown'})"


class Reference:
    """The C reference process: started once, asked for one measurement per line."""

    def __init__(self, program: Path, array_bytes: int, chase_bytes: int, seed: int, hugepages: bool, threads: int, cpus: list[int], node: int | None):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}

        def place_child() -> None:
            os.sched_setaffinity(0, cpus)
            if node is not None:
                numa.set_membind(node)

        self.proc = subprocess.Popen(
            [str(program), str(array_bytes), str(chase_bytes), str(seed), "1" if hugepages else "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=place_child,
        )
        header = self.proc.stdout.readline().split() if self.proc.stdout else []
        if not header or header[0] != "ready":
            self.close()
            raise BenchFailure(f"the C reference did not start: {self._stderr() or 'no output'}")
        self.facts = dict(item.split("=", 1) for item in header[1:] if "=" in item)
        self.streaming = self.proc.stdout.readline().strip().removeprefix("streaming ") if self.proc.stdout else ""

    def ask(self, command: str) -> list[str]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().split()
        if not answer or answer[0] == "error":
            raise BenchFailure(f"the C reference failed on {command!r}: {self._stderr() or ' '.join(answer) or 'no answer'}")
        return answer

    def placement(self, node: int) -> str:
        """Where the C process's buffers are, from its /proc/PID/numa_maps."""
        proc = Path(f"/proc/{self.proc.pid}")
        notes = []
        for name in ("a", "b", "c", "chase"):
            entry = numa.numa_maps_entry(int(self.facts[name], 16), proc)
            if entry is None:
                return f"unverified: no numa_maps line for its array {name}"
            notes.append((entry.policy, entry.fraction_on(node)))
        if all(f == 1.0 for _, f in notes) and all(p == f"bind:{node}" for p, _ in notes):
            return f"set_mempolicy(MPOL_BIND, node {node}) verified via numa_maps"
        return "unverified: " + ", ".join(f"{p} {f:.0%} on node {node}" for p, f in notes)

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        return (self.proc.stderr.read() if self.proc.stderr else "").strip()[:200]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.write("quit\n")
                    self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def calibrate(
    profile: Profile,
    size_mib: float = 256,
    threads: int | None = None,
    rounds: int = 5,
    hops: int = 5_000_000,
    best_of: int = 5,
    progress: Callable[[str], None] = lambda message: None,
) -> Calibration:
    """Measure gpubench's triad and chase against the C reference in one interleaved run."""
    if rounds < 1:
        raise UserError("calibrate memtier: --rounds must be at least 1")
    if size_mib <= 0:
        raise UserError("calibrate memtier: --size must be larger than zero")
    cpu_node = memtier.topology(profile).cpu_nodes[0]
    options = _options(cpu_node.id, size_mib, threads, hops, best_of)
    bench = memtier.MemTier()
    streaming = {c.params["kernel"]: c for c in bench.cases(profile, "default", {**options, "stores": "streaming"})}
    plain = bench.cases(profile, "default", {**options, "stores": "plain", "kernels": "triad"})[0]
    triad_case, chase_case = streaming["triad"], streaming["chase"]
    nthreads = int(triad_case.params["threads"])
    allowed = os.sched_getaffinity(0)
    cpus = [c for c in triad_case.params["cpus"] if c in allowed]
    node = cpu_node.id
    bound = _can_bind(node)
    chase_cpu = cpus[0]  # where memtier's chase runs: the first allowed CPU of the node

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpubench-calibrate-")))
        progress("building the C reference")
        program, compiler_line = build_reference(workdir)
        ctx = Context(workdir, profile, progress=progress)
        progress(f"allocating and touching: gpubench 2 x 3 x {size_mib:g} MiB + chase, C 3 x {size_mib:g} MiB + chase")
        ours = {
            "triad streaming": stack.enter_context(bench.prepare(triad_case, ctx)),
            "triad plain": stack.enter_context(bench.prepare(plain, ctx)),
            "chase": stack.enter_context(bench.prepare(chase_case, ctx)),
        }
        ref = Reference(program, int(triad_case.params["array_bytes"]), int(chase_case.params["chase_bytes"]),
                        int(chase_case.params["seed"]), bool(triad_case.params["hugepages"]), nthreads, cpus, node if bound else None)
        stack.callback(ref.close)
        theirs: dict[str, Callable[[], float]] = {
            "triad streaming": lambda: _gbps(ref.ask(f"triad streaming {best_of}"), triad_case),
            "triad plain": lambda: _gbps(ref.ask(f"triad plain {best_of}"), triad_case),
            "chase": lambda: float(ref.ask(f"chase {hops} {chase_cpu}")[0]) / hops * 1e9,
        }
        # One untimed pass each: the first pass after allocation pays for what the OS still owes.
        for key in ours:
            ours[key]()
            theirs[key]()

        started: set[int] = set()

        def before(r: int, c: int, arm: Arm[Any]) -> None:
            if r not in started:
                started.add(r)
                progress(f"round {r + 1}/{rounds}")

        comparisons = [(Arm("gpubench", ours[key]), Arm("C", theirs[key])) for key in ours]
        measured = dict(zip(ours, interleave(rounds, comparisons, before)))
        values = {key: (tuple(s.value for s in samples), tuple(c_values)) for key, (samples, c_values) in measured.items()}
        last: dict[str, Sample] = {key: samples[-1] for key, (samples, _) in measured.items()}
        for key in ("triad streaming", "triad plain"):
            timed_on = last[key].extra.get("thread_cpus")
            if timed_on is not None and timed_on != sorted(cpus):
                raise BenchFailure(f"gpubench's {key} ran with its threads on CPUs {timed_on}, the C reference on {sorted(cpus)}: not like with like")
        placement = {
            "gpubench": last["triad streaming"].extra.get("placement", ""),
            "C": ref.placement(node) if bound else "unverified: no memory policies on this kernel",
        }

    variant = ref.streaming
    rows = (
        Row("triad, streaming stores", "GB/s", "numba, nontemporal 64 B stores", f"gcc, {variant}", *values["triad streaming"], TRIAD_GOAL),
        Row("triad, plain stores", "GB/s", "numba, plain loop", "gcc, plain loop", *values["triad plain"], TRIAD_GOAL),
        Row("pointer chase", "ns", "numba, uint64 index", "gcc, uint64 index", *values["chase"], LATENCY_GOAL),
    )
    return Calibration(
        array_bytes=int(triad_case.params["array_bytes"]),
        chase_bytes=int(chase_case.params["chase_bytes"]),
        hops=hops,
        threads=nthreads,
        rounds=rounds,
        best_of=best_of,
        cpus=tuple(cpus),
        node=node,
        compiler=compiler_line,
        rows=rows,
        placement=placement,
    )


def _options(node: int, size_mib: float, threads: int | None, hops: int, best_of: int) -> dict[str, str]:
    """The memtier parameters of gpubench's side: both kernels on the first CPU node and its memory."""
    options = {
        "size": f"{size_mib}M",
        "chase_size": f"{size_mib}M",
        "hops": str(hops),
        "best_of": str(best_of),
        "kernels": "triad,chase",
        "nodes": str(node),
        "cpu_nodes": str(node),
    }
    if threads is not None:
        if threads < 1:
            raise UserError("calibrate memtier: --threads must be at least 1")
        options["threads"] = str(threads)
    return options


def _gbps(answer: list[str], case: Any) -> float:
    seconds = float(answer[0])
    n = int(case.params["array_bytes"]) // 8
    return int(case.params["bytes_per_element"]) * n / seconds / 1e9


def _can_bind(node: int) -> bool:
    if not numa.calls().available:
        return False
    try:
        return node in numa.allowed_nodes()
    except numa.NumaError:
        return False
