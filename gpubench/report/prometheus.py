"""A run as a node_exporter textfile (Prometheus text format), rendered by prometheus_client.

Per result: median, the bounds of its 95% confidence interval and the sample count, labelled by
benchmark, case and unit; a state set `gpubench_result_status` (1 for the result's status, 0 for
the others) so alerts can fire on a benchmark that stopped running; run-level info and times.
The run's uid is only a label of `gpubench_run_info`, so series stay stable from run to run.
"""

from __future__ import annotations

from typing import Any, Iterator

from gpubench.results.model import ResultStatus, Run

PREFIX = "gpubench"


class _RunCollector:
    def __init__(self, run: Run) -> None:
        self.run = run

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        run = self.run
        kernel = run.metadata.get("kernel")
        release = kernel if isinstance(kernel, str) else ""
        info = GaugeMetricFamily(f"{PREFIX}_run_info", "The gpubench run these figures come from.", labels=["uid", "label", "status", "kernel"])
        info.add_metric([run.uid, run.label, run.status.value, release], 1.0)
        yield info
        started = GaugeMetricFamily(f"{PREFIX}_run_start_time_seconds", "When the run started, seconds since the Unix epoch.")
        started.add_metric([], run.started)
        yield started
        if run.ended is not None:
            ended = GaugeMetricFamily(f"{PREFIX}_run_end_time_seconds", "When the run ended, seconds since the Unix epoch.")
            ended.add_metric([], run.ended)
            yield ended

        labels = ["benchmark", "case", "unit"]
        median = GaugeMetricFamily(f"{PREFIX}_result_median", "Median of the raw samples, in the unit label's unit.", labels=labels)
        ci_low = GaugeMetricFamily(f"{PREFIX}_result_ci_low", "Lower bound of the 95% confidence interval of the median.", labels=labels)
        ci_high = GaugeMetricFamily(f"{PREFIX}_result_ci_high", "Upper bound of the 95% confidence interval of the median.", labels=labels)
        samples = GaugeMetricFamily(f"{PREFIX}_result_samples", "Number of raw samples behind the median.", labels=["benchmark", "case"])
        higher = GaugeMetricFamily(f"{PREFIX}_result_higher_is_better", "1 when a larger value is better (throughput), 0 when smaller is (latency).", labels=["benchmark", "case"])
        status = GaugeMetricFamily(f"{PREFIX}_result_status", "1 for the result's status (ok, waived, failed, interrupted), 0 for the others.", labels=["benchmark", "case", "status"])
        seen: set[tuple[str, str]] = set()
        for result in run.results:
            if result.key in seen:
                continue  # one series per case: a repeated case keeps its first result, as compare does
            seen.add(result.key)
            key = [result.benchmark, result.case]
            for value in ResultStatus:
                status.add_metric([*key, value.value], 1.0 if result.status is value else 0.0)
            higher.add_metric(key, 1.0 if result.higher_is_better else 0.0)
            samples.add_metric(key, float(len(result.samples)))
            if result.summary is not None:
                median.add_metric([*key, result.unit], result.summary.median)
                ci_low.add_metric([*key, result.unit], result.summary.ci_low)
                ci_high.add_metric([*key, result.unit], result.summary.ci_high)
        yield from (median, ci_low, ci_high, samples, higher, status)


def run_textfile(run: Run) -> str:
    """The node_exporter textfile for one run (write it as NAME.prom in the collector's directory)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RunCollector(run))
    return generate_latest(registry).decode("utf-8")
