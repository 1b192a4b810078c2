"""Checkpoint gating: each model's key numbers against a recorded baseline, within per-metric tolerances.

Record a baseline:   pytest suites/test_gating.py --flow-model MODEL --snapshot-update
Gate a checkpoint:   pytest suites/test_gating.py --flow-model NEW --flow-baseline MODEL

Without --flow-baseline a model is compared with its own recorded numbers (a regression test), and
skipped when it has none.
"""

from pathlib import Path

import pytest

from flowcheck.gating import extension_with, gate_name


def test_gate(flow_case, flow, snapshot, request):
    baseline = flow.options.baseline
    if baseline and request.config.option.update_snapshots:
        pytest.fail(
            "--snapshot-update with --flow-baseline would overwrite the baseline; record it without --flow-baseline"
        )
    extension = extension_with(flow.registry.tolerances)
    name = gate_name(baseline or flow_case.model)
    location = Path(extension.get_location(test_location=snapshot.test_location, index=name))
    recorded = location.exists()
    if not (recorded or request.config.option.update_snapshots):
        who = baseline or flow_case.model
        pytest.skip(
            f"no recorded baseline named {who!r} ({location.name}): "
            f"record one with pytest suites/test_gating.py --flow-model {who}=PATH_OR_HUB_ID --snapshot-update"
        )
    numbers = flow.gate_numbers(flow_case.model)
    matched = numbers == snapshot(extension_class=extension, name=name)
    if not matched:
        problems = extension.last_problems or [
            f"no recorded baseline {name!r}: run with --snapshot-update to record it"
        ]
        pytest.fail(f"{flow_case.model} drifted from baseline {name}:\n  " + "\n  ".join(problems), pytrace=False)
