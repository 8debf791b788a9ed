"""Fixtures every test directory may use. Shared helpers that are not fixtures live in modules of
this package (tests.factories) and are imported."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from gpubench.results.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A new, empty result history, open for writing."""
    with Store.open(tmp_path / "results.db") as opened:
        yield opened
