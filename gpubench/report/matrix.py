"""Pairwise results as matrices: one row per source device, one column per destination.

A result takes part when the p2p benchmark's pair record (gpubench.bench.gpu.p2p.PairParams)
reads from it: the GPU pairs. Results are grouped by their kind, size and unit, one matrix each;
a bidirectional kind measures an unordered pair and fills both of its cells. A pair copied through
host memory rather than peer to peer is marked, from the record of the path that ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from gpubench.bench.core.params import format_size
from gpubench.bench.gpu.p2p import PairParams
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


def _pair(result: Result) -> PairParams | None:
    return PairParams.from_params(result.params, result.extra)


def pair_matrices(results: Sequence[Result]) -> list[Matrix]:
    groups: dict[tuple[str, int | None, str], list[tuple[PairParams, Result]]] = {}
    for result in results:
        pair = _pair(result)
        if pair is not None:
            groups.setdefault((pair.kind, pair.size, result.unit), []).append((pair, result))
    return [_matrix(kind, size, unit, members) for (kind, size, unit), members in groups.items()]


def _matrix(kind: str, size: int | None, unit: str, members: list[tuple[PairParams, Result]]) -> Matrix:
    models: dict[int, str] = {}
    for pair, _ in members:
        models.setdefault(pair.src, pair.src_model)
        models.setdefault(pair.dst, pair.dst_model)
    order = sorted(models)
    index = {device: i for i, device in enumerate(order)}
    cells = [[Cell(NOT_MEASURED) for _ in order] for _ in order]
    for pair, result in members:
        cell = _cell(pair, result)
        cells[index[pair.src]][index[pair.dst]] = cell
        if pair.both_ways:
            cells[index[pair.dst]][index[pair.src]] = cell
    size_text = f" {format_size(size)}" if size is not None else ""
    both_ways = members[0][0].both_ways
    title = f"{kind or 'pairs'}{size_text} ({unit}{', both directions together' if both_ways else ''})"
    devices = tuple(f"{d} ({models[d]})" if models[d] else str(d) for d in order)
    return Matrix(title, devices, tuple(tuple(row) for row in cells))


def _cell(pair: PairParams, result: Result) -> Cell:
    via_host = pair.via == "host"
    if result.status is not ResultStatus.OK or result.summary is None:
        return Cell(result.status.value, result.status.value, via_host)
    return Cell(formats.number(result.summary.median), result.status.value, via_host)
