"""Node exports for the fleet tests, made from a real run (reports/cpu-vm/default-aa/run-1.json,
a default-size run of the CPU VM): each node gets its own uid and hostname, optionally slower
cases, a capability it lost, another CPU, or cases it did not run."""

from __future__ import annotations

import copy
import hashlib
import json
import random
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "reports" / "cpu-vm" / "default-aa" / "run-1.json"


@lru_cache(maxsize=1)
def template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())


def node_export(
    node: str,
    *,
    slow: Mapping[str, float] = {},
    lose: Iterable[str] = (),
    cpu: str | None = None,
    skip: Iterable[str] = (),
    jitter: float = 0.02,
    seed: int | None = None,
    kernel: str | None = None,
) -> dict[str, Any]:
    """One node's run. `slow`: case name -> factor its figure gets worse by (2.0: half the
    MB/s, twice the ns). `lose`: capability names that become "no". `skip`: cases left out.
    Every figure is jittered by up to `jitter` (seeded by the node's name), as identical nodes are."""
    document = copy.deepcopy(template())
    rng = random.Random(seed if seed is not None else int(hashlib.sha256(node.encode()).hexdigest()[:8], 16))
    document["uid"] = hashlib.sha256(f"{node}-{seed}".encode()).hexdigest()[:32]
    document["metadata"]["hostname"] = node
    if cpu is not None:
        document["metadata"]["cpu_model"] = cpu
    if kernel is not None:
        document["metadata"]["kernel"] = kernel
    skipped = set(skip)
    document["results"] = [r for r in document["results"] if r["case"] not in skipped]
    for result in document["results"]:
        factor = (1 + rng.uniform(-jitter, jitter)) * _worse(slow.get(result["case"], 1.0), result["higher_is_better"])
        result["samples"] = [v * factor for v in result["samples"]]
        result["summary"] = None  # made again from the samples on import
    for cap in document["profile"]["capabilities"]:
        if cap["name"] in set(lose):
            cap["status"], cap["why"] = "no", f"{cap['name']} cannot be used on this node (test)"
    return document


def _worse(factor: float, higher_is_better: bool) -> float:
    return 1 / factor if higher_is_better else factor


def write_exports(directory: Path, documents: Iterable[dict[str, Any]]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for document in documents:
        path = directory / f"{document['metadata']['hostname']}.json"
        path.write_text(json.dumps(document))
        paths.append(path)
    return paths
