#!/usr/bin/env python3
"""How `gpubench fleet report` scales: merge and judge N synthetic node exports (N = 10, 100,
1,000 by default), each the size of a default run (reports/cpu-vm/default-aa/run-1.json, about
180 KB, with its own uid, hostname and figures), and print the seconds and the peak memory of the
command for each N.

Each report runs in a child process of its own (peak memory is its maximum resident set; CPU
seconds are its user and system time, which other work on the machine moves less than the wall
clock). As a
reference measured in the same run, a child that only reads and parses the same files: the ratio
of the two says what merging and judging cost beyond reading the exports, whatever the machine.

    python ci/fleet_merge_scale.py              # 10, 100, 1000
    python ci/fleet_merge_scale.py 10 100 3000
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "reports" / "cpu-vm" / "default-aa" / "run-1.json"
READ_ONLY = "import json, pathlib, sys\nfor p in sorted(pathlib.Path(sys.argv[1]).glob('*.json')): json.loads(p.read_bytes())\n"


def write_exports(directory: Path, count: int) -> int:
    """N node exports; returns their total size in bytes."""
    template = json.loads(TEMPLATE.read_text())
    rng = random.Random(count)
    total = 0
    for index in range(1, count + 1):
        node = f"node{index:04d}"
        template["uid"] = f"{index:08x}{rng.getrandbits(96):024x}"
        template["metadata"]["hostname"] = node
        for result in template["results"]:
            factor = 1 + rng.uniform(-0.02, 0.02)
            result["samples"] = [value * factor for value in result["samples"]]
        text = json.dumps(template)
        (directory / f"{node}.json").write_text(text)
        total += len(text)
    return total


def measure(command: list[str]) -> tuple[float, float, float, int]:
    """(seconds, CPU seconds, peak resident MiB, exit status) of a child process."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main(counts: list[int]) -> int:
    print(f"gpubench fleet report on N node exports shaped like {TEMPLATE.relative_to(REPO)} "
          f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start)")
    print(f"{'N':>6} {'export MB':>10} {'report s':>9} {'CPU s':>7} {'ms/node':>8} {'peak MiB':>9} {'read-only s':>12} {'ratio':>6}")
    rows = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="gpubench-fleet-scale-") as scratch:
            exports = Path(scratch) / "nodes"
            exports.mkdir()
            size = write_exports(exports, count)
            reference, _, _, _ = measure([sys.executable, "-c", READ_ONLY, str(exports)])
            seconds, cpu, peak, status = measure([sys.executable, "-m", "gpubench", "fleet", "report", str(exports), "--json",
                                                  "--db", str(Path(scratch) / "fleet.db")])
            if status not in (0, 3):
                print(f"fleet report failed on {count} exports (exit {status})", file=sys.stderr)
                return 1
        rows.append((count, seconds, cpu))
        print(f"{count:>6} {size / 1e6:>10.1f} {seconds:>9.2f} {cpu:>7.2f} {seconds / count * 1000:>8.1f} {peak:>9.0f} "
              f"{reference:>12.2f} {seconds / reference:>6.1f}")
    if len(rows) > 1:
        (small_n, small_s, small_cpu), (big_n, big_s, big_cpu) = rows[-2], rows[-1]
        print(f"per node, N={big_n} against N={small_n}: {big_s / big_n / (small_s / small_n):.2f}x the time, "
              f"{big_cpu / big_n / (small_cpu / small_n):.2f}x the CPU time (1.00x: linear; start-up weighs on small N)")
    return 0


if __name__ == "__main__":
    sys.exit(main([int(arg) for arg in sys.argv[1:]] or [10, 100, 1000]))
