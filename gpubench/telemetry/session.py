"""A telemetry session: samplers read in a background thread around each benchmark.

    telemetry = open_telemetry(profile)
    with telemetry.around("case-name", cool_down=True) as window:
        ...run the benchmark...
    result_telemetry = window.summary(bytes_moved=total_bytes)
    telemetry.close()

Whatever goes wrong in telemetry stays in telemetry: a sampler that raises is dropped and the
summary says "partial" with the reason; the benchmark is never affected. The clock is injectable:
with a VirtualClock, time moves only when someone sleeps on it and samples are taken on the way,
so recorded traces replay in no real time.
"""

from __future__ import annotations

import statistics
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from gpubench.errors import UserError
from gpubench.probe.model import Profile, Status
from gpubench.telemetry.clock import Clock, RealClock, VirtualClock
from gpubench.telemetry.derive import derive, is_thermal
from gpubench.telemetry.phases import Bands, is_cooled, summarize
from gpubench.telemetry.samplers import (
    AmdSmiSampler,
    CpuFreqSampler,
    HwmonSampler,
    NvmlSampler,
    RaplSampler,
    Sampler,
    SamplerUnavailable,
)
from gpubench.telemetry.summary import Baseline, Measure, TelemetryStatus, TelemetrySummary
from gpubench.telemetry.series import SeriesKey
from gpubench.telemetry.trace import Reading, ReplaySampler, Trace, read_trace



class Window:
    """The telemetry of one benchmark: its readings, the marks of its phases, what happened."""

    def __init__(self, telemetry: Telemetry, label: str):
        self.label = label
        self._telemetry = telemetry
        self.readings: list[Reading] = []
        self.marks: dict[str, float] = {}
        self.notes: dict[str, Any] = {}

    def trace(self) -> Trace:
        meta = self._telemetry.metadata()
        meta.update(self.notes)
        meta["label"] = self.label
        return self._telemetry.trace_of(self.readings, meta, self.marks)

    def summary(self, bytes_moved: float | None = None) -> TelemetrySummary:
        """Phases, peak/sustained power, energy, throttling, cooldown, series, events (see phases.summarize)."""
        trace = self.trace()
        try:
            return summarize(trace, bytes_moved, self._telemetry.bands)
        except Exception as e:  # noqa: BLE001 - a telemetry defect must not cost the benchmark its result
            failures = dict(trace.metadata.get("failures") or {})
            failures["summary"] = f"{type(e).__name__}: {e}"
            return TelemetrySummary(samplers=tuple(trace.metadata.get("samplers") or ()), status=TelemetryStatus.PARTIAL, partial=failures)


class Telemetry:
    """The samplers chosen for this machine and the thread that reads them around each benchmark."""

    def __init__(
        self,
        samplers: list[Sampler],
        hz: float = 10.0,
        clock: Clock | None = None,
        not_available: dict[str, str] | None = None,
        bands: Bands = Bands(),
    ):
        if not (0 < hz <= 1000):
            raise UserError(f"telemetry rate must be between 0 and 1000 Hz, not {hz:g}")
        self.hz = hz
        self.period = 1.0 / hz
        self.bands = bands
        self.clock: Clock = clock or RealClock()
        self.not_available = dict(not_available or {})
        self._opened = list(samplers)
        self._live = list(samplers)
        self._failures: dict[str, str] = {}
        self._descriptions: dict[str, dict[str, Any]] = {}
        for s in samplers:
            try:
                self._descriptions[s.name] = s.describe()
            except Exception as e:  # noqa: BLE001
                self._descriptions[s.name] = {"describe_error": f"{type(e).__name__}: {e}"}
        self._last_read: dict[str, float] = {}
        self._buffer: list[Reading] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ticker: int | None = None
        self._idle: Baseline | None = None
        self.sample_count = 0
        self.sample_seconds = 0.0  # wall time inside the samplers, summed over all samples
        self.sample_cpu_seconds = 0.0  # CPU time the sampling itself used
        first = self._sample()
        # only a power or temperature reading makes waiting for a cooldown (or a steady state) worthwhile
        self.thermal = is_thermal(first.values)

    @property
    def samplers(self) -> list[str]:
        return [s.name for s in self._opened]

    @property
    def failures(self) -> dict[str, str]:
        return dict(self._failures)

    def rates(self) -> dict[str, float]:
        """Samples per second of each source: the session's rate, or the source's own cap when lower."""
        return {s.name: 1.0 / self._interval(s) for s in self._opened}

    def _interval(self, sampler: Any) -> float:
        return max(self.period, getattr(sampler, "min_interval_s", 0.0) or 0.0)

    @property
    def counters(self) -> dict[SeriesKey, float | None]:
        """The energy counters the samplers read, with their wrap range in joules (None: not known)."""
        counters: dict[SeriesKey, float | None] = {}
        for d in self._descriptions.values():
            counters.update(d.get("counters") or {})
        return counters

    def trace_of(self, readings: Sequence[Reading], metadata: dict[str, Any] | None = None, marks: dict[str, float] | None = None) -> Trace:
        return Trace(metadata or self.metadata(), tuple(readings), dict(marks or {}), self.counters)

    def metadata(self) -> dict[str, Any]:
        """What the trace records of the session (JSON-able; the counters go in the trace's own field)."""
        devices: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for d in self._descriptions.values():
            devices.update(d.get("devices") or {})
            extra.update({k: v for k, v in d.items() if k not in ("counters", "devices")})
        meta: dict[str, Any] = {"samplers": self.samplers, "hz": self.hz, **extra}
        if devices:
            meta["devices"] = devices
        if self._failures:
            meta["failures"] = dict(self._failures)
        if self.not_available:
            meta["not_available"] = dict(self.not_available)
        return meta

    # ------------------------------------------------------------ sampling

    def _sample(self, force: bool = False) -> Reading:
        started, cpu_started = time.perf_counter(), time.thread_time()
        t = self.clock.now()
        values: dict[SeriesKey, float] = {}
        reasons: list[str] = []
        for sampler in list(self._live):
            interval = getattr(sampler, "min_interval_s", 0.0)
            if interval and not force and t - self._last_read.get(sampler.name, -1e18) < interval - self.period / 2:
                continue  # a slow-changing source read at its own, lower rate
            self._last_read[sampler.name] = t
            try:
                v, r = sampler.read()
            except Exception as e:  # noqa: BLE001 - drop this sampler, keep the others going
                self._live.remove(sampler)
                self._failures[sampler.name] = f"{type(e).__name__}: {e}"
                try:
                    sampler.close()
                except Exception:  # noqa: BLE001
                    pass
                continue
            values.update(v)
            reasons.extend(x for x in r if x not in reasons)
        reading = Reading(t, values, tuple(reasons))
        if self._buffer is not None and (values or reasons):
            self._buffer.append(reading)
        self.sample_seconds += time.perf_counter() - started
        self.sample_cpu_seconds += time.thread_time() - cpu_started
        self.sample_count += 1
        return reading

    def _tick(self, force: bool = False) -> None:
        try:
            self._sample(force)
        except Exception as e:  # noqa: BLE001 - the sampling thread must never die
            self._failures.setdefault("telemetry", f"{type(e).__name__}: {e}")

    def _wake_period(self) -> float:
        """Wake no more often than the most frequent source needs: every wake-up takes the interpreter lock."""
        intervals = [self._interval(s) for s in self._live]
        return min(intervals) if intervals else self.period

    def _run(self) -> None:
        next_due = self.clock.now()
        while not self._stop.is_set():
            self._tick()
            next_due += self._wake_period()
            delay = next_due - self.clock.now()
            if delay < 0:  # fell behind (a slow sampler): skip the missed ticks
                next_due, delay = self.clock.now(), 0.0
            if self._stop.wait(delay):
                break

    def _start(self, window: Window) -> None:
        self._buffer = window.readings
        self._last_read.clear()  # every source in the window's first reading
        if isinstance(self.clock, VirtualClock):
            self._ticker = self.clock.every(self.period, self._tick)
        else:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="gpubench-telemetry", daemon=True)
            self._thread.start()

    def _finish(self) -> None:
        if self._ticker is not None and isinstance(self.clock, VirtualClock):
            self.clock.cancel(self._ticker)
            self._ticker = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5.0)
            self._thread = None
        self._tick(force=True)  # one reading of every source at the very end
        self._buffer = None

    # ------------------------------------------------------------ the window around one benchmark

    def _recent(self, window: Window, seconds: float) -> Trace:
        now = self.clock.now()
        recent = tuple(r for r in window.readings[-int(seconds * self.hz + 2) :] if r.t >= now - seconds - self.period)
        return self.trace_of(recent)

    def _latest(self, window: Window) -> tuple[float | None, float | None]:
        d = derive(self._recent(window, 2 * self.period))
        power = next((v for v in reversed(d.series.get(Measure.POWER, [])) if v is not None), None)
        temp = next((v for v in reversed(d.series.get(Measure.TEMP, [])) if v is not None), None)
        return power, temp

    def _baseline_of(self, window: Window, a: float, b: float) -> Baseline:
        d = derive(self.trace_of([r for r in window.readings if a <= r.t < b]))
        power = [v for v in d.series.get(Measure.POWER, []) if v is not None]
        temp = [v for v in d.series.get(Measure.TEMP, []) if v is not None]
        return Baseline(statistics.fmean(power) if power else None, statistics.fmean(temp) if temp else None)

    def _steady(self, window: Window, seconds: float) -> bool:
        d = derive(self._recent(window, seconds))
        for key, floor in ((Measure.POWER, self.bands.steady_floor_w), (Measure.TEMP, 1.0)):
            values = [v for v in d.series.get(key, []) if v is not None]
            if len(values) >= 4:
                half = len(values) // 2
                first, second = statistics.fmean(values[:half]), statistics.fmean(values[half:])
                return abs(second - first) <= max(floor, self.bands.steady_fraction * abs(second))
        return False

    def _guarded(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - telemetry trouble is reported, never raised into the benchmark
            self._failures.setdefault("telemetry", f"{what}: {type(e).__name__}: {e}")

    @contextmanager
    def around(
        self,
        label: str,
        *,
        baseline_s: float = 1.0,
        cooldown_timeout_s: float = 10.0,
        cool_down: bool = False,
        pre_warm: Callable[[], None] | None = None,
        cool_down_timeout_s: float = 60.0,
        pre_warm_timeout_s: float = 30.0,
    ) -> Iterator[Window]:
        """Sample around one benchmark: [cool-down wait], idle baseline, [pre-warm], body, cooldown."""
        window = Window(self, label)
        if not self._opened:
            if pre_warm is not None:
                pre_warm()  # nothing to judge steadiness by: one run, as asked
            yield window
            return
        clock = self.clock
        self._start(window)
        body_ok = False
        try:
            if cool_down:
                self._guarded("cool-down wait", lambda: self._wait_cool(window, cool_down_timeout_s))
            window.marks["baseline_start"] = clock.now()
            if self.thermal and baseline_s > 0:
                clock.sleep(baseline_s)
                self._guarded("baseline", lambda: self._keep_idle(window))
            if pre_warm is not None:
                self._pre_warm(window, pre_warm, pre_warm_timeout_s)
            window.marks["start"] = clock.now()
            yield window
            body_ok = True
        finally:
            window.marks["end"] = clock.now()
            if body_ok and self.thermal and cooldown_timeout_s > 0:
                self._guarded("cooldown", lambda: self._wait_cooldown(window, cooldown_timeout_s))
            window.marks["cooldown_end"] = clock.now()
            self._finish()

    def _wait_cool(self, window: Window, timeout_s: float) -> None:
        clock = self.clock
        started = window.marks["cool_down_start"] = clock.now()
        if not self.thermal:
            window.notes["cool_down"] = "skipped: no temperature or power reading"
        elif self._idle is None:
            window.notes["cool_down"] = "no idle reference yet: this benchmark's baseline becomes it"
        else:
            while True:
                power, temp = self._latest(window)
                if is_cooled(power, temp, self._idle, self.bands) is not False:
                    window.notes["cool_down"] = "back at the idle baseline"
                    break
                if clock.now() - started >= timeout_s:
                    window.notes["cool_down"] = f"still above the idle baseline after {timeout_s:g}s"
                    break
                clock.sleep(self.period)
        window.notes["cool_down_wait_s"] = round(clock.now() - started, 3)

    def _keep_idle(self, window: Window) -> None:
        baseline = self._baseline_of(window, window.marks["baseline_start"], self.clock.now())
        if not baseline.known:
            return
        idle = self._idle
        if idle is None or (baseline.temp_c is not None and (idle.temp_c is None or baseline.temp_c < idle.temp_c)):
            self._idle = baseline

    def _pre_warm(self, window: Window, pre_warm: Callable[[], None], timeout_s: float) -> None:
        clock = self.clock
        started = window.marks["pre_warm_start"] = clock.now()
        runs = 0
        while True:
            pre_warm()  # the benchmark's own code: its errors are the benchmark's
            runs += 1
            if not self.thermal:
                window.notes["pre_warm"] = "ran once: no power or temperature reading to judge steadiness"
                break
            elapsed = clock.now() - started
            if elapsed >= 2.0 and self._steady(window, 2.0):
                window.notes["pre_warm"] = f"steady after {runs} run{'s' if runs > 1 else ''}"
                break
            if elapsed >= timeout_s:
                window.notes["pre_warm"] = f"not steady after {timeout_s:g}s ({runs} runs)"
                break
        window.notes["pre_warm_s"] = round(clock.now() - started, 3)

    def _wait_cooldown(self, window: Window, timeout_s: float) -> None:
        clock = self.clock
        end = window.marks["end"]
        baseline = self._baseline_of(window, window.marks["baseline_start"], window.marks.get("pre_warm_start", window.marks["start"]))
        if not baseline.known:
            baseline = self._idle or baseline
        if not baseline.known:
            return
        while clock.now() - end < timeout_s:
            clock.sleep(self.period)
            power, temp = self._latest(window)
            if is_cooled(power, temp, baseline, self.bands):
                break

    def close(self) -> None:
        for s in self._opened:
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass
        self._live = []


def _ruled_out_by_profile(profile: Profile | None, *names: str) -> str | None:
    """A probe of this machine that says there is no such device: don't even load the library."""
    if profile is None or profile.root not in ("/", ""):
        return None  # no probe, or a probe of a recorded snapshot: it says nothing about this machine
    for name in names:
        cap = profile.get(name)
        if cap is not None and cap.status is Status.NO:
            return f"the probe found none ({name}: {cap.why or 'no'})"
    return None


def open_telemetry(
    profile: Profile | None,
    hz: float = 10.0,
    replay: Path | None = None,
    *,
    clock: Clock | None = None,
    root: Path = Path("/"),
) -> Telemetry:
    """Open every sampler this machine can read (or replay a recorded trace instead)."""
    if replay is not None:
        clock = clock or RealClock()
        trace = read_trace(replay)
        return Telemetry([ReplaySampler(trace, clock.now)], hz, clock)
    samplers: list[Sampler] = []
    not_available: dict[str, str] = {}

    def attempt(name: str, opener: Callable[[], Sampler], skip: str | None = None) -> None:
        if skip:
            not_available[name] = skip
            return
        try:
            samplers.append(opener())
        except SamplerUnavailable as e:
            not_available[name] = str(e)
        except Exception as e:  # noqa: BLE001 - a broken sensor stack must not stop a run
            not_available[name] = f"{type(e).__name__}: {e}"

    nvidia_present = (root / "proc/driver/nvidia").exists() or (root / "dev/nvidiactl").exists()
    attempt(
        "nvml",
        NvmlSampler.open,
        _ruled_out_by_profile(profile, "gpus", "nvidia driver") or (None if nvidia_present else "no NVIDIA driver loaded (/proc/driver/nvidia is absent)"),
    )
    amd_present = (root / "sys/module/amdgpu").exists()
    attempt(
        "amdsmi",
        AmdSmiSampler.open,
        _ruled_out_by_profile(profile, "gpus") or (None if amd_present else "no amdgpu driver loaded (/sys/module/amdgpu is absent)"),
    )
    attempt("hwmon", lambda: HwmonSampler(root))
    attempt("rapl", lambda: RaplSampler(root))
    attempt("cpufreq", CpuFreqSampler.open)
    return Telemetry(samplers, hz, clock, not_available)
