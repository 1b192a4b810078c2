"""Provenance checks: the gate refuses to compare runs whose provenance differs in a field that changes numbers.

Provenance is a nested JSON object (`FlowSession.provenance`); fields are named by their dotted path
(``options.max_samples.value``, ``datasets.synthetic.fingerprint``). ``[gating] number_changing`` lists the
patterns of fields that change numbers (``*`` matches within a path); ``--flow-gate-allow FIELD,...`` allows a
field (its exact path, a parent path, or a pattern).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

ABSENT = "(absent)"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _matches(path: str, patterns: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + ".") or fnmatchcase(path, p) for p in patterns)


@dataclass
class ProvenanceCheck:
    """The differing fields of two provenances: `refused` (number-changing, not allowed), `allowed`
    (number-changing, allowed), `other` (informative: commit, paths, the model itself); each entry
    ``{"field", "baseline", "new"}``. `checked` is False when the baseline has no provenance."""

    refused: list[dict[str, str]] = field(default_factory=list)
    allowed: list[dict[str, str]] = field(default_factory=list)
    other: list[dict[str, str]] = field(default_factory=list)
    checked: bool = True

    def message(self) -> str:
        """Why the gate refuses, naming every field and how to allow it."""
        lines = [f"{f['field']}: baseline {f['baseline']!s}, new {f['new']!s}" for f in self.refused]
        names = ",".join(f["field"] for f in self.refused)
        return (
            "the runs' provenance differs in fields that change numbers, so their numbers are not comparable:\n  "
            + "\n  ".join(lines)
            + f"\nRe-run under the baseline's settings, re-record the baseline, or allow: --flow-gate-allow {names}"
        )


def compare_provenance(
    baseline: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    number_changing: Iterable[str],
    allow: Iterable[str] = (),
) -> ProvenanceCheck:
    """Compare two provenances field by field (`flatten`); a field in one only differs too."""
    if not baseline:
        return ProvenanceCheck(checked=False)
    patterns, allowed = list(number_changing), list(allow)
    old, cur = flatten(baseline), flatten(new)
    check = ProvenanceCheck()
    for path in sorted(set(old) | set(cur)):
        a, b = old.get(path, ABSENT), cur.get(path, ABSENT)
        if a == b:
            continue
        entry = {"field": path, "baseline": str(a), "new": str(b)}
        if not _matches(path, patterns):
            check.other.append(entry)
        elif _matches(path, allowed):
            check.allowed.append(entry)
        else:
            check.refused.append(entry)
    return check
