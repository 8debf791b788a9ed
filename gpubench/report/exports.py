"""The formats a stored run exports to, each rendered by its own module (loaded when asked)."""

from __future__ import annotations

import enum
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpubench.results.model import Run


class ExportFormat(str, enum.Enum):
    JSON = "json"
    CSV = "csv"
    JUNIT = "junit"
    PROMETHEUS = "prometheus"
    BMF = "bmf"


# format -> "module:function" that turns a Run into the text to write
RENDERERS: dict[ExportFormat, str] = {
    ExportFormat.JSON: "gpubench.results.jsonio:run_to_json",
    ExportFormat.CSV: "gpubench.report.csvout:run_csv",
    ExportFormat.JUNIT: "gpubench.report.junit:run_junit",
    ExportFormat.PROMETHEUS: "gpubench.report.prometheus:run_textfile",
    ExportFormat.BMF: "gpubench.report.bmf:run_bmf",
}


def render_export(run: Run, fmt: ExportFormat) -> str:
    module, function = RENDERERS[fmt].split(":")
    return getattr(import_module(module), function)(run)
