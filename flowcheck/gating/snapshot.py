"""The gating record as a syrupy snapshot: one JSON file per gate name, compared by the gate (`compare.gate`).

With ``--snapshot-update`` the record is written whenever it differs from the stored one (exact comparison); without
it, syrupy's match is the gate's verdict and the result is kept on the extension for the test's message and the
report. Per-sample arrays are written on one line each, so a baseline stays a readable, diffable file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar

from syrupy.extensions.json import JSONSnapshotExtension

from flowcheck.gating.compare import GateResult, gate
from flowcheck.gating.config import GateConfig
from flowcheck.naming import file_stem


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def compact_json(value: Any, indent: int = 0) -> str:
    """JSON with sorted keys, objects indented by one space per level, and lists of scalars (or of lists of
    scalars) on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {compact_json(value[k], indent + 1)}" for k in sorted(value)]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and all(_scalar(v) or (isinstance(v, list) and all(map(_scalar, v))) for v in value):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, list):
        return "[\n" + ",\n".join(f"{inner}{compact_json(v, indent + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value)


class GateSnapshot(JSONSnapshotExtension):
    """Gating records compared by the gate; one file per gate name, whatever the test's parameters."""

    config: ClassVar[GateConfig] = GateConfig()
    allow: ClassVar[tuple[str, ...]] = ()
    exact: ClassVar[bool] = False
    model: ClassVar[str] = ""
    baseline: ClassVar[str] = ""
    last_result: ClassVar[GateResult | None] = None

    @classmethod
    def get_snapshot_name(cls, *, test_location, index=0) -> str:
        # "test_gate[<model>]" is the parametrized test id, so syrupy relates the file to the test.
        return f"{test_location.methodname}[{index}]"

    def serialize(self, data, *, exclude=None, include=None, matcher=None) -> str:
        return compact_json(data) + "\n"

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        if self.exact:
            return json.loads(serialized_data) == json.loads(snapshot_data)
        result = gate(
            json.loads(serialized_data),
            json.loads(snapshot_data),
            self.config,
            model=self.model,
            baseline_name=self.baseline,
            allow=self.allow,
        )
        type(self).last_result = result
        return result.passed


def extension_with(
    config: GateConfig, *, model: str, baseline: str, allow: Iterable[str] = (), exact: bool = False
) -> type[GateSnapshot]:
    """A GateSnapshot subclass bound to the gate's settings (`exact`: match only identical records, for
    ``--snapshot-update``)."""
    attributes = {"config": config, "allow": tuple(allow), "exact": exact, "model": model, "baseline": baseline}
    return type("GateSnapshotFor", (GateSnapshot,), attributes)


def gate_name(model: str) -> str:
    """The file-system-safe gate name of a model's unique run name (``org/model`` -> ``org--model``), so that two
    checkpoints never share a baseline."""
    return file_stem(model)
