"""Pairwise results as matrices: one row per source device, one column per destination.

Any result whose parameters name integer `src` and `dst` devices takes part (the p2p benchmark's
GPU pairs). Results are grouped by their `kind` and `size` parameters and unit, one matrix each;
a bidirectional kind (`bidir-...`) measures an unordered pair and fills both of its cells. A pair
copied through host memory rather than peer to peer is marked, read from the result's own record
of the path that ran (`via` in its extras, else in its parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from gpubench.bench.core.params import format_size
from gpubench.report import formats
from gpubench.results.model import Result, ResultStatus

NOT_MEASURED = "—"


@dataclass(frozen=True)
class Cell:
    text: str
    status: str = ""  # the result's status, "" where no result covers the pair
    via_host: bool = False


@dataclass(frozen=True)
class Matrix:
    title: str
    devices: tuple[str, ...]  # "0 (NVIDIA H100)": index and model, rows and columns alike
    rows: tuple[tuple[Cell, ...], ...]

    @property
    def any_via_host(self) -> bool:
        return any(cell.via_host for row in self.rows for cell in row)


def _pair(result: Result) -> tuple[int, int] | None:
    src, dst = result.params.get("src"), result.params.get("dst")
    if isinstance(src, int) and isinstance(dst, int) and not isinstance(src, bool) and not isinstance(dst, bool) and src >= 0 and dst >= 0:
        return src, dst
    return None


def pair_matrices(results: Sequence[Result]) -> list[Matrix]:
    groups: dict[tuple[str, Any, str], list[Result]] = {}
    for result in results:
        if _pair(result) is not None:
            key = (str(result.params.get("kind", "")), result.params.get("size"), result.unit)
            groups.setdefault(key, []).append(result)
    return [_matrix(kind, size, unit, members) for (kind, size, unit), members in groups.items()]


def _matrix(kind: str, size: Any, unit: str, results: list[Result]) -> Matrix:
    models: dict[int, str] = {}
    for r in results:
        src, dst = _pair(r)  # type: ignore[misc]
        models.setdefault(src, str(r.params.get("src_model") or ""))
        models.setdefault(dst, str(r.params.get("dst_model") or ""))
    order = sorted(models)
    index = {device: i for i, device in enumerate(order)}
    cells = [[Cell(NOT_MEASURED) for _ in order] for _ in order]
    both_ways = kind.startswith("bidir")
    for r in results:
        src, dst = _pair(r)  # type: ignore[misc]
        cell = _cell(r)
        cells[index[src]][index[dst]] = cell
        if both_ways:
            cells[index[dst]][index[src]] = cell
    size_text = f" {format_size(size)}" if isinstance(size, int) and not isinstance(size, bool) else ""
    title = f"{kind or 'pairs'}{size_text} ({unit}{', both directions together' if both_ways else ''})"
    devices = tuple(f"{d} ({models[d]})" if models[d] else str(d) for d in order)
    return Matrix(title, devices, tuple(tuple(row) for row in cells))


def _cell(result: Result) -> Cell:
    via = result.extra.get("via") or result.params.get("via")
    via_host = via == "host"
    if result.status is not ResultStatus.OK or result.summary is None:
        return Cell(result.status.value, result.status.value, via_host)
    return Cell(formats.number(result.summary.median), result.status.value, via_host)
