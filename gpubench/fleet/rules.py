"""Rules a node must meet whatever its peers do, from a TOML file (in the spirit of Superbench's
diagnosis rules): per benchmark and case a minimum or maximum value and a largest drop against a
baseline; capabilities that must be `yes`. Each failed rule is a finding on the node that names it.

    [[rule]]
    name = "STREAM triad floor"   # optional
    benchmark = "memtier"
    case = "triad-*"              # a shell pattern; default: every case of the benchmark
    min = 40.0                    # in the case's unit (max = ... for a ceiling, e.g. ns)
    max_drop = "10%"              # at most this much worse than --baseline
    nodes = "gpu[01-16]"          # optional: only these nodes (a Slurm host list)

    [[rule]]
    capabilities = ["io_uring", "io_uring binding"]
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from gpubench.errors import UserError
from gpubench.files import read_user_file
from gpubench.fleet.hostlist import expand
from gpubench.fleet.model import CaseKey, Finding, FindingKind, NodeRun
from gpubench.probe.model import Status
from gpubench.numbers import number

CASE_KEYS = ("name", "benchmark", "case", "min", "max", "max_drop", "nodes")
CAPABILITY_KEYS = ("name", "capabilities", "nodes")


@dataclass(frozen=True)
class Rule:
    name: str
    benchmark: str = ""
    case: str = "*"
    minimum: float | None = None
    maximum: float | None = None
    max_drop: float | None = None  # a fraction, e.g. 0.1
    capabilities: tuple[str, ...] = ()
    nodes: frozenset[str] | None = None  # None: every node

    def applies_to(self, node: str) -> bool:
        return self.nodes is None or node in self.nodes

    def matches(self, key: CaseKey) -> bool:
        return key[0] == self.benchmark and fnmatch.fnmatchcase(key[1], self.case)


@dataclass(frozen=True)
class RuleSet:
    source: str
    rules: tuple[Rule, ...]

    @property
    def needs_baseline(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.rules if rule.max_drop is not None)


def load_rules(path: Path) -> RuleSet:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        document = tomllib.loads(read_user_file(path, "a TOML rules file").decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: not a rules file") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML: {e}") from None
    extra = set(document) - {"rule"}
    if extra or not isinstance(document.get("rule"), list) or not document["rule"]:
        raise UserError(f"{path}: expected [[rule]] tables only" + (f" (found {', '.join(sorted(extra))})" if extra else ""))
    return RuleSet(str(path), tuple(_rule(item, index, path) for index, item in enumerate(document["rule"], start=1)))


def _rule(item: Any, index: int, path: Path) -> Rule:
    where = f"{path}: rule {index}"
    if not isinstance(item, dict):
        raise UserError(f"{where}: expected a table")
    name = item.get("name", "")
    if not isinstance(name, str):
        raise UserError(f"{where}: name: expected text")
    where += f" ({name})" if name else ""
    allowed = CAPABILITY_KEYS if "capabilities" in item else CASE_KEYS
    unknown = sorted(set(item) - set(allowed))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; a rule takes {', '.join(allowed)}")
    nodes = frozenset(expand(_text(item, "nodes", where))) if "nodes" in item else None
    if "capabilities" in item:
        names = item["capabilities"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise UserError(f"{where}: capabilities: expected a list of capability names (gpubench probe lists them)")
        return Rule(name or f"capabilities {', '.join(names)} must be yes", capabilities=tuple(names), nodes=nodes)
    benchmark = _text(item, "benchmark", where)
    case = _text(item, "case", where) if "case" in item else "*"
    limits = {key: _number(item, key, where) for key in ("min", "max") if key in item}
    drop = _fraction(item["max_drop"], f"{where}: max_drop") if "max_drop" in item else None
    if not limits and drop is None:
        raise UserError(f"{where}: give min, max or max_drop (or capabilities)")
    return Rule(name or f"{benchmark}/{case}", benchmark, case, limits.get("min"), limits.get("max"), drop, nodes=nodes)


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: {key}: expected text")
    return value.strip()


def _number(item: dict[str, Any], key: str, where: str) -> float:
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: {key}: expected a number in the case's unit")
    return float(value)


def _fraction(value: Any, where: str) -> float:
    """'10%' or 0.1."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100
        except ValueError:
            raise UserError(f"{where}: expected a percentage such as 10%") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UserError(f"{where}: expected a percentage such as 10%, or a fraction below 1")
    return float(value)


def check_rules(rules: RuleSet, runs: Sequence[NodeRun], baseline: Mapping[CaseKey, float]) -> tuple[dict[str, list[Finding]], list[str]]:
    """Findings per node, and notes on what could not be checked."""
    found: dict[str, list[Finding]] = {}
    notes: list[str] = []
    known = sorted({key for run in runs for key in run.cases})
    for rule in rules.rules:
        keys = [key for key in known if rule.matches(key)]
        if not rule.capabilities and not keys:
            raise UserError(f"{rules.source}: rule {rule.name!r} matches no case in any node's run ({rule.benchmark}/{rule.case})")
        missing = [key for key in keys if key not in baseline] if rule.max_drop is not None else []
        if missing:
            notes.append(f"rule {rule.name!r}: the baseline has no value for {', '.join('/'.join(k) for k in missing)}; max_drop not checked there")
        for run in runs:
            if rule.applies_to(run.node):
                failures = (_capability_failures(rule, run) if rule.capabilities
                            else [f for key in keys if (f := _case_failure(rule, run, key, baseline))])
                found.setdefault(run.node, []).extend(failures)
    return {node: findings for node, findings in found.items() if findings}, notes


def _capability_failures(rule: Rule, run: NodeRun) -> list[Finding]:
    failures = []
    for name in rule.capabilities:
        cap = next((c for c in run.capabilities if c.name == name), None)
        if cap is None:
            failures.append(Finding(FindingKind.RULE, rule.name, f"{name}: not probed"))
        elif cap.status is not Status.YES:
            failures.append(Finding(FindingKind.RULE, rule.name, f"{name}: {cap.status.value}" + (f": {cap.why}" if cap.why else "")))
    return failures


def _case_failure(rule: Rule, run: NodeRun, key: CaseKey, baseline: Mapping[CaseKey, float]) -> Finding | None:
    subject = "/".join(key)
    case = run.cases.get(key)
    if case is None or case.value is None:
        why = "not in its run" if case is None else f"{case.status.value}" + (f": {case.reason}" if case.reason else "")
        return Finding(FindingKind.RULE, rule.name, f"{subject} not measured ({why})")
    value, unit = case.value, case.unit
    if rule.minimum is not None and value < rule.minimum:
        return Finding(FindingKind.RULE, rule.name, f"{subject}: {number(value)} {unit}, below the minimum {number(rule.minimum)}")
    if rule.maximum is not None and value > rule.maximum:
        return Finding(FindingKind.RULE, rule.name, f"{subject}: {number(value)} {unit}, above the maximum {number(rule.maximum)}")
    base = baseline.get(key)
    if rule.max_drop is not None and base:
        drop = (base - value) / base if case.higher_is_better else (value - base) / base
        if drop > rule.max_drop:
            return Finding(FindingKind.RULE, rule.name, (f"{subject}: {number(value)} {unit}, {drop:.0%} worse than the "
                                                         f"baseline {number(base)} (at most {rule.max_drop:.0%})"))
    return None
