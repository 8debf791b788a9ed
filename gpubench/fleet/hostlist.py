"""Slurm host lists: 'gpu[01-03,07],login1' <-> the node names, as scontrol show hostnames does,
without needing scontrol where the list is read."""

from __future__ import annotations

import re

from gpubench.errors import UserError

MAX_NODES = 100_000  # beyond any cluster; a typo such as n[1-99999999] stops here


def expand(text: str) -> list[str]:
    """Every node name of a host list, in its order; UserError on a malformed list."""
    names: list[str] = []
    for item in _split(text.strip()):
        names += _expand_item(item, text)
        if len(names) > MAX_NODES:
            raise UserError(f"host list {text!r} names more than {MAX_NODES:,} nodes")
    return names


def _split(text: str) -> list[str]:
    """Split at the commas outside brackets."""
    items, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(text[start:index])
            start = index + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _expand_item(item: str, whole: str) -> list[str]:
    opening = item.find("[")
    if opening < 0:
        if "]" in item:
            raise UserError(f"host list {whole!r}: ']' without '['")
        return [item]
    closing = item.find("]", opening)
    if closing < 0 or "[" in item[opening + 1:closing]:
        raise UserError(f"host list {whole!r}: unbalanced '['")
    prefix, body, rest = item[:opening], item[opening + 1:closing], item[closing + 1:]
    tails = _expand_item(rest, whole) if rest else [""]
    return [prefix + value + tail for value in _range_values(body, whole) for tail in tails]


def _range_values(body: str, whole: str) -> list[str]:
    values = []
    for part in body.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise UserError(f"host list {whole!r}: {part!r} is not a number or a range such as 01-16")
        if not dash:
            values.append(low)
            continue
        first, last = int(low), int(high)
        if last < first or last - first >= MAX_NODES:
            raise UserError(f"host list {whole!r}: range {part!r} runs backwards or names too many nodes")
        values += [str(number).zfill(len(low)) for number in range(first, last + 1)]
    return values


def natural_key(name: str) -> tuple:
    """Sort n2 before n10: digit runs compare as numbers."""
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part)


def compress(names: list[str] | tuple[str, ...]) -> str:
    """The shortest usual host list for the names: n1,n2,n3,n7 -> n[1-3,7]."""
    runs: dict[tuple[str, str, int], list[int]] = {}
    alone: list[str] = []
    for name in names:
        found = re.match(r"^(.*?)(\d+)(\D*)$", name)
        if found is None:
            alone.append(name)
            continue
        prefix, digits, suffix = found.groups()
        runs.setdefault((prefix, suffix, len(digits) if digits.startswith("0") else 0), []).append(int(digits))
    for (prefix, suffix, width), numbers in list(runs.items()):  # gpu10 belongs with gpu01-09
        padded = runs.get((prefix, suffix, len(str(max(numbers))))) if width == 0 else None
        if padded is not None:
            same = [n for n in numbers if len(str(n)) == len(str(max(numbers)))]
            padded += same
            runs[(prefix, suffix, 0)] = [n for n in numbers if n not in same]
            if not runs[(prefix, suffix, 0)]:
                del runs[(prefix, suffix, 0)]
    parts = [(min(numbers), prefix, _bracket(sorted(set(numbers)), width), suffix) for (prefix, suffix, width), numbers in runs.items()]
    items = [f"{prefix}{body}{suffix}" for _, prefix, body, suffix in sorted(parts, key=lambda p: (natural_key(p[1]), p[0]))]
    return ",".join(sorted(alone, key=natural_key) + items)


def _bracket(numbers: list[int], width: int) -> str:
    spans, start = [], numbers[0]
    for previous, current in zip(numbers, numbers[1:] + [None]):  # type: ignore[operator]
        if current != previous + 1:
            spans.append((start, previous))
            start = current
    text = ",".join(f"{a:0{width}d}" if a == b else f"{a:0{width}d}-{b:0{width}d}" for a, b in spans)
    return text if len(numbers) == 1 else f"[{text}]"
