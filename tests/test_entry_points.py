"""Module paths written as strings move with the code: every benchmark in the registry imports,
every module gpubench runs as `python -m MODULE` exists and answers --help, and every child
process gpubench starts that way names one of them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import gpubench
from gpubench.bench.core import registry

PACKAGE = Path(gpubench.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] in ("__init__", "__main__") else parts)


def _sources() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(PACKAGE.rglob("*.py"))]


def runnable_modules() -> list[str]:
    """Modules with a `if __name__ == "__main__":` block, and packages with a __main__.py."""
    found = []
    for path, tree in _sources():
        main_block = any(
            isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators)
            for node in tree.body
        )
        if main_block or path.name == "__main__.py":
            found.append(_module_name(path))
    return sorted(set(found))


def started_modules() -> list[tuple[str, str]]:
    """(where, module) for every `"-m", MODULE` in a list or tuple in gpubench's source; MODULE a
    string or a module-level constant of the same file."""
    found = []
    for path, tree in _sources():
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.List, ast.Tuple)):
                continue
            items = node.elts
            for flag, module in zip(items, items[1:]):
                if isinstance(flag, ast.Constant) and flag.value == "-m":
                    name = module.value if isinstance(module, ast.Constant) else constants.get(getattr(module, "id", ""))
                    found.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", name))
    return found


@pytest.mark.parametrize("key", sorted(registry.BENCHMARKS))
def test_every_registry_entry_imports(key):
    bench = registry.load(key)
    assert bench.key == key


def test_every_started_module_is_one_that_runs():
    started = started_modules()
    assert len(started) >= 2, started  # the binding's selftest and the I/O job processes at least
    runnable = set(runnable_modules())
    missing = [(where, name) for where, name in started if name not in runnable]
    assert not missing, f"started with -m but not runnable: {missing}"


@pytest.mark.parametrize("module", runnable_modules())
def test_every_runnable_module_answers_help(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower(), proc.stdout


def test_the_probes_selftest_command_runs():
    """The command the iouring probe starts in a child process (it loads the liburing binding)."""
    from gpubench.probe.iouring import SELFTEST

    proc = subprocess.run(SELFTEST, capture_output=True, text=True, timeout=120)
    assert "No module named 'gpubench" not in proc.stderr
    if proc.returncode != 0 and "liburing" in proc.stderr:
        pytest.skip(f"the liburing binding does not load here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["loaded"] is True
