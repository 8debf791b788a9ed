"""JSON Schemas (draft 2020-12) of the JSON gpubench writes for other programs to read, shipped in
the package:

  run          a stored run: `gpubench export RUN --format json` (which `import` reads back),
               `run --json` (with the run's local number, `id`) and the JSON report beside a run's HTML
  probe        `gpubench probe --json`
  comparisons  `gpubench compare --json`

Each schema's `$id` is urn:gpubench:schema:NAME; the run schema refers to the probe schema for the
probe a run was planned from. A change to one of these documents bumps its schema_version
(results.model.SCHEMA_VERSION for runs, results.jsonio.COMPARISONS_SCHEMA_VERSION for comparisons)
and this file with it.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

NAMES = ("run", "probe", "comparisons")


def path(name: str) -> Traversable:
    """The schema file of `name` inside the installed package."""
    if name not in NAMES:
        raise KeyError(f"no schema {name!r}; known: {', '.join(NAMES)}")
    return resources.files(__name__).joinpath(f"{name}.json")


def load(name: str) -> dict[str, Any]:
    return json.loads(path(name).read_text(encoding="utf-8"))
