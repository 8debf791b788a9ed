"""The shape the code keeps: no module of gpubench/ above 500 lines and no function or method
above cyclomatic complexity 25 (radon's count: each branch, loop, boolean operator and handler
adds one). A ladder that grows past it is a sign to read facts into a dataclass and decide with
an ordered table, as the probe areas do."""

from __future__ import annotations

from pathlib import Path

import pytest

radon_complexity = pytest.importorskip("radon.complexity", reason="radon is in the test extra: pip install '.[test]'")

PACKAGE = Path(__file__).resolve().parents[1] / "gpubench"
MAX_LINES = 500
MAX_COMPLEXITY = 25
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_where_the_tests_look():
    assert len(MODULES) > 50 and (PACKAGE / "cli" / "__init__.py") in MODULES


def _inside(block):
    """A function or class with its methods and the functions defined inside them."""
    yield block
    for inner in (*getattr(block, "methods", ()), *getattr(block, "closures", ())):
        yield from _inside(inner)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_module_size_and_complexity(module: Path):
    text = module.read_text()
    lines = text.count("\n")
    assert lines <= MAX_LINES, f"{lines} lines: split it into rooms that each hold one idea"
    blocks = radon_complexity.cc_visit(text)
    flat = [b for block in blocks for b in _inside(block)]
    too_complex = sorted((b.complexity, b.fullname) for b in flat if b.complexity > MAX_COMPLEXITY)
    assert not too_complex, f"above complexity {MAX_COMPLEXITY}: {too_complex}"
