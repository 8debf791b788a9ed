"""What a probe answers: capabilities with verdicts, evidence, why and how to fix."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    YES = "yes"
    NO = "no"
    PARTIAL = "partial"
    UNKNOWN = "unknown"


def probed_verdict(status: Status | None) -> str:
    """A capability's verdict in words; 'not probed' where there is none (a side of a comparison,
    a node or a probe that did not look at it)."""
    return status.value if status is not None else "not probed"


@dataclass(frozen=True)
class Evidence:
    source: str  # the file, sysctl or call that was read
    value: str  # what it said


@dataclass(frozen=True)
class Capability:
    area: str
    name: str
    status: Status
    evidence: tuple[Evidence, ...] = ()
    why: str = ""
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status is Status.YES

    def to_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "name": self.name,
            "status": self.status.value,
            "evidence": [{"source": e.source, "value": e.value} for e in self.evidence],
            "why": self.why,
            "fix": self.fix,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Capability:
        return cls(
            area=d["area"],
            name=d["name"],
            status=Status(d["status"]),
            evidence=tuple(Evidence(e["source"], e["value"]) for e in d.get("evidence", ())),
            why=d.get("why", ""),
            fix=d.get("fix", ""),
            details=dict(d.get("details") or {}),
        )


@dataclass(frozen=True)
class Profile:
    """Everything the probe found: what benchmarks are planned from."""

    root: str
    capabilities: tuple[Capability, ...]

    def get(self, name: str) -> Capability | None:
        return next((c for c in self.capabilities if c.name == name), None)

    def status(self, name: str) -> Status:
        cap = self.get(name)
        return cap.status if cap else Status.UNKNOWN

    def detail(self, name: str, key: str, default: Any = None) -> Any:
        cap = self.get(name)
        return cap.details.get(key, default) if cap else default

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "capabilities": [c.to_dict() for c in self.capabilities]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        return cls(root=d.get("root", "/"), capabilities=tuple(Capability.from_dict(c) for c in d["capabilities"]))


# Shown escaped wherever machine text (banners, model names, labels) meets a person: the C0 and C1
# controls (ESC opens terminal escape sequences), DEL, the line and paragraph separators, and the
# bidirectional overrides and isolates
# that reorder what a reader sees. Written as Python writes them in a string literal.
_ESCAPED = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_ESCAPED.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))})


def printable(text: str) -> str:
    """`text` with every control character and direction override escaped: what the probe table
    and the HTML reports show of anything read from a machine."""
    return text.translate(_ESCAPED)


EVIDENCE_LIMIT = 4096  # characters of one evidence value; a longer one is in `details` (or the file) whole


def _bounded(value: str) -> str:
    if len(value) <= EVIDENCE_LIMIT:
        return value
    return f"{value[:EVIDENCE_LIMIT]}… ({len(value)} characters in all)"


class Findings:
    """Collects evidence while a check runs, then becomes a Capability."""

    def __init__(self, area: str, name: str):
        self.area, self.name = area, name
        self.evidence: list[Evidence] = []
        self.details: dict[str, Any] = {}

    def saw(self, source: str, value: object) -> None:
        self.evidence.append(Evidence(source, _bounded(str(value))))

    def verdict(self, status: Status, why: str = "", fix: str = "") -> Capability:
        return Capability(self.area, self.name, status, tuple(self.evidence), why, fix, dict(self.details))

    def yes(self, why: str = "") -> Capability:
        return self.verdict(Status.YES, why)

    def no(self, why: str, fix: str = "") -> Capability:
        return self.verdict(Status.NO, why, fix)

    def partial(self, why: str, fix: str = "") -> Capability:
        return self.verdict(Status.PARTIAL, why, fix)

    def unknown(self, why: str, fix: str = "") -> Capability:
        return self.verdict(Status.UNKNOWN, why, fix)
