"""Module paths written as strings move with the code: the benchmark registry, the command list,
the probe areas, the export formats, child-process entry points and package resources each
resolve here, so a moved module or file fails a test rather than turning into a waiver, a probe
verdict or a missing command at run time."""

from __future__ import annotations

import ast
from importlib import import_module, resources
from importlib.util import find_spec
from pathlib import Path

import pytest

import gpubench
from gpubench.bench.core import registry
from gpubench.cli import COMMAND_MODULES, app
from gpubench.probe import AREAS
from gpubench.report.exports import RENDERERS, ExportFormat

PACKAGE = Path(gpubench.__file__).resolve().parent


@pytest.mark.parametrize("key", list(registry.BENCHMARKS))
def test_every_registry_entry_imports_and_is_the_benchmark_it_names(key: str) -> None:
    benchmark = registry.load(key)
    assert benchmark.key == key
    assert benchmark.description and isinstance(benchmark.options, tuple)


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_every_command_module_imports_and_registers_its_commands(name: str) -> None:
    module = import_module(name)
    assert callable(module.register)
    commands = {command.callback for command in app.registered_commands}
    commands |= {command.callback for group in app.registered_groups for command in group.typer_instance.registered_commands}
    assert any(getattr(callback, "__module__", "") == name for callback in commands), f"{name} registered no command"


@pytest.mark.parametrize(("area", "name"), list(AREAS.items()))
def test_every_probe_area_module_imports_with_its_checks(area: str, name: str) -> None:
    assert import_module(name).CHECKS


def test_every_export_format_has_a_renderer_that_imports() -> None:
    assert set(RENDERERS) == set(ExportFormat)
    for target in RENDERERS.values():
        module, function = target.split(":")
        assert callable(getattr(import_module(module), function)), target


def test_child_process_entry_points_are_modules() -> None:
    from gpubench.probe.iouring import SELFTEST

    module = SELFTEST[SELFTEST.index("-m") + 1]
    assert find_spec(module) is not None, module


def _resource_lookups() -> list[tuple[str, str, str]]:
    """Every `resources.files("pkg").joinpath("path")` and `PackageLoader("pkg", "dir")` in
    gpubench whose names are written out: (file, package, path)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            constants = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if name == "PackageLoader" and len(constants) == 2:
                found.append((path.name, constants[0], constants[1]))
            inner = func.value if isinstance(func, ast.Attribute) else None
            if name == "joinpath" and isinstance(inner, ast.Call) and getattr(inner.func, "attr", getattr(inner.func, "id", "")) == "files":
                package = [a.value for a in inner.args if isinstance(a, ast.Constant)]
                if package and constants:
                    found.append((path.name, package[0], "/".join(constants)))
    return found


def test_every_package_resource_the_code_names_is_in_the_package() -> None:
    lookups = _resource_lookups()
    assert ("memtier.py", "gpubench.bench.engines", "csrc/memtier_ref.c") in lookups
    for where, package, name in lookups:
        assert resources.files(package).joinpath(name).is_file() or resources.files(package).joinpath(name).is_dir(), (where, package, name)


def test_the_c_reference_source_reads_through_its_lookup() -> None:
    from gpubench.calibrate.memtier import c_source

    assert "main(" in c_source()
