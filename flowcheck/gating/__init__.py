"""Checkpoint gating: a new checkpoint's numbers against a recorded baseline, with paired statistics (McNemar,
bootstrap clustered by video), curve-profile tolerances and a provenance check.

Modules: `numbers` (summary numbers), `samples` (per-sample records), `paired` (paired tests), `profile` (curve
profiles), `mismatch` (provenance), `compare` (the gate), `table` (its markdown), `snapshot` (the syrupy file),
`config` (``[gating]`` of the claims registry).
"""

from flowcheck.gating.compare import FORMAT, GateResult, gate, parse_record
from flowcheck.gating.config import GateConfig, GateConfigError, gate_config
from flowcheck.gating.numbers import KINDS, drift, drift_rows, key_numbers
from flowcheck.gating.snapshot import GateSnapshot, compact_json, extension_with, gate_name

__all__ = [
    "FORMAT",
    "KINDS",
    "GateConfig",
    "GateConfigError",
    "GateResult",
    "GateSnapshot",
    "compact_json",
    "drift",
    "drift_rows",
    "extension_with",
    "gate",
    "gate_config",
    "gate_name",
    "key_numbers",
    "parse_record",
]
