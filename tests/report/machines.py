"""Stored runs of machines this one is not: the families plan their cases on recorded snapshots
(a 4-GPU NVLink server given PCIe links, a host with a CXL memory node), and each case gets
samples around a chosen figure, so that the reports can be checked against known ratios."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Callable

from gpubench.bench.core.interface import Case
from gpubench.bench.gpu import gds, hmm, memcpy, p2p
from gpubench.bench.memtier import MemTier
from gpubench.probe import Profile, Source, probe
from gpubench.results.metadata import capture
from gpubench.results.model import ROUND_KEY, Result, ResultStatus, Run, RunStatus
from gpubench.results.stats import summarize
from gpubench.telemetry.summary import TelemetrySummary

PROBES = Path(__file__).resolve().parents[2] / "probes"
H100 = ("0000:1b:00.0", "0000:43:00.0", "0000:52:00.0", "0000:61:00.0")
NVSWITCH = "0000:a0:00.0"
STARTED = 1_750_000_000.0


def gpu_server(tmp: Path) -> Profile:
    """probes/nvidia-multigpu with each H100 on a PCIe 5.0 x16 link (idle at 2.5 GT/s, as H100s
    are), and 18 NVLinks each into an NVSwitch fabric at 26.562 GB/s a link."""
    root = tmp / "nvidia-multigpu"
    shutil.copytree(PROBES / "nvidia-multigpu", root, symlinks=True)
    for address in H100:
        device = root / "sys/bus/pci/devices" / address
        for name, value in (("current_link_speed", "2.5 GT/s PCIe"), ("current_link_width", "16"),
                            ("max_link_speed", "32.0 GT/s PCIe"), ("max_link_width", "16")):
            (device / name).write_text(value + "\n")
    nvml = root / ".gpubench/commands/nvml.json"
    data = json.loads(nvml.read_text())
    for device in data["devices"]:
        device["nvlinks"] = {"links": [{"link": i, "active": True, "remote_pci": NVSWITCH} for i in range(18)],
                             "speed_mbps": 26562, "error": None}
    nvml.write_text(json.dumps(data))
    return probe(Source(root))


def cxl_host() -> Profile:
    return probe(Source(PROBES / "cxl-host"))


def measured(bench: str, case: Case, centre: float, seed: int, extra: dict | None = None, rounds: int = 3, per_round: int = 4) -> Result:
    """A result with samples within 2% of `centre`, taken in rounds as a run takes them."""
    rng = random.Random(seed)
    samples = [centre * (1 + rng.uniform(-0.02, 0.02)) for _ in range(rounds * per_round)]
    return Result(bench, case.name, case.params, case.unit, case.higher_is_better, ResultStatus.OK, samples=tuple(samples),
                  sample_metrics=tuple({ROUND_KEY: 1 + i // per_round} for i in range(len(samples))),
                  extra=dict(extra or {}), summary=summarize(samples), started=STARTED + seed, ended=STARTED + seed + 1)


def run_of(profile: Profile, results: list[Result], label: str = "synthetic") -> Run:
    return Run(uid=f"{abs(hash(label)) % 16**8:08x}" + "0" * 24, label=label, started=STARTED, ended=STARTED + 300,
               status=RunStatus.COMPLETE, metadata=capture(profile, label), profile=profile.to_dict(), results=tuple(results))


Figure = Callable[[Case], float | None]


def results_for(bench: str, cases: list[Case], figure: Figure, extra: Callable[[Case], dict] = lambda c: {}) -> list[Result]:
    out = []
    for seed, case in enumerate(cases):
        value = figure(case)
        if value is not None:
            out.append(measured(bench, case, value, seed, extra(case)))
    return out


def gpu_run(profile: Profile) -> Run:
    """memcpy h2d pinned 55 GB/s, pageable 20; gds kvikio cold 12 GB/s, its POSIX + copy 6;
    hmm system 30, managed 40, explicit copy 50; p2p uni-ce 380 GB/s, the 1->0 pair of it through
    the host at 20."""
    copy = {("h2d", "pinned"): 55.0, ("h2d", "pageable"): 20.0, ("d2h", "pinned"): 52.0, ("d2h", "pageable"): 18.0}
    placements = {"system-first-touch": 22.0, "system-second-pass": 30.0, "managed": 35.0, "managed-prefetch": 40.0,
                  "device-from-pinned": 50.0, "device-from-pageable": 25.0, "mapped-pinned": 45.0}
    results = results_for("memcpy", memcpy.plan(profile, "quick", {}),
                          lambda c: copy.get((c.params["direction"], c.params["host_memory"])) if c.params["engine"] == "ce" else None)
    results += results_for("gds", gds.plan(profile, "quick", {}),
                           lambda c: None if c.params["op"] != "read" or c.params["cache"] != "cold" else 6.0 if c.params["engine"] != "kvikio" else 12.0)
    results += results_for("hmm", hmm.plan(profile, "quick", {}), lambda c: placements[c.params["placement"]])
    pairs = [c for c in p2p.plan(profile, "quick", {}) if c.params["kind"] == "uni-ce"]
    results += results_for("p2p", pairs, lambda c: 20.0 if c.params["src"] == 1 else 380.0,
                           lambda c: {"via": "host" if c.params["src"] == 1 else "peer"})
    return run_of(profile, results, "gpu server")


def tier_run(profile: Profile) -> Run:
    """Node 0 local: copy 100 GB/s, chase 100 ns; CPU-less node 1: copy 40 GB/s, chase 250 ns."""
    cases = [c for c in MemTier().cases(profile, "quick", {}) if c.params["kernel"] in ("copy", "chase")]
    figures = {("copy", 0): 100.0, ("chase", 0): 100.0, ("copy", 1): 40.0, ("chase", 1): 250.0}
    return run_of(profile, results_for("memtier", cases, lambda c: figures.get((c.params["kernel"], c.params["mem_node"]))), "cxl host")


def gpu_telemetry(level_w: float, seconds: float = 10.0, bytes_moved: float = 2.5e10, throttle_every: int = 9) -> TelemetrySummary:
    """What the telemetry session stores for a GPU case: its summary of a synthetic 10 Hz trace
    (idle at 70 W, a plateau at `level_w` with power-cap throttling, cooldown)."""
    import math

    from gpubench.telemetry.phases import summarize
    from gpubench.telemetry.series import SeriesKey
    from gpubench.telemetry.trace import Reading, Trace

    end = 5.0 + seconds
    readings = []
    for k in range(int((end + 7) * 10)):
        t = k / 10
        running = 5 <= t < end
        power = (level_w if running else 70.0) + 4 * math.sin(k / 3)
        temp = 33.0 + (min(t - 5, seconds) * 3.2 if t >= 5 else 0) - (max(t - end, 0) * 2.5)
        values = {SeriesKey.parse("gpu0.power_w"): power, SeriesKey.parse("gpu0.temp_c"): temp,
                  SeriesKey.parse("gpu0.sm_clock_mhz"): 1980.0 if running else 345.0}
        readings.append(Reading(t, values, ("sw_power_cap",) if running and k % throttle_every == 0 else ()))
    marks = {"baseline_start": 0.0, "start": 5.0, "end": end, "cooldown_end": end + 7.0}
    metadata = {"samplers": ["nvml"], "hz": 10.0, "not_available": {"rapl": "no RAPL powercap zone on this machine"}}
    return summarize(Trace(metadata, tuple(readings), marks), bytes_moved=bytes_moved)


def with_telemetry(run: Run) -> Run:
    """Each result of `run` with a telemetry summary whose power follows its figure."""
    from dataclasses import replace

    results = tuple(replace(r, telemetry=gpu_telemetry(150.0 + 4 * (r.summary.median if r.summary else 0) % 500,
                                                        throttle_every=7 + i % 5))
                    for i, r in enumerate(run.results))
    return replace(run, results=results)
