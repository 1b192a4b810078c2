"""Checkpoint gating: each model against a recorded baseline, with paired statistics and provenance checks.

Record a baseline:   pytest suites/test_gating.py --flow-model MODEL --snapshot-update
Gate a checkpoint:   pytest suites/test_gating.py --flow-model NEW --flow-baseline MODEL

Without --flow-baseline a model is compared with its own recorded baseline (a regression test), and
skipped when it has none. A row fails when a difference exceeds its tolerance and is significant at
[gating] alpha (exact McNemar for accuracies, paired bootstrap for curves), or a curve profile check
fails; runs whose provenance differs in a number-changing field are refused (--flow-gate-allow FIELD).
"""

import json
from pathlib import Path

import pytest

from flowcheck.gating import extension_with, gate_name
from flowcheck.pytest_plugin import GATE_PROPERTY


def test_gate(flow_case, flow, snapshot, request):
    baseline = flow.options.baseline
    updating = bool(request.config.option.update_snapshots)
    if baseline and updating:
        pytest.fail(
            "--snapshot-update with --flow-baseline would overwrite the baseline; record it without --flow-baseline"
        )
    name = gate_name(baseline or flow_case.model)
    extension = extension_with(
        flow.gate_config(), model=flow_case.model, baseline=name, allow=flow.options.gate_allow, exact=updating
    )
    location = Path(extension.get_location(test_location=snapshot.test_location, index=name))
    if not (location.exists() or updating):
        who = baseline or flow_case.model
        if baseline:  # named explicitly: a missing baseline (a typo) must not turn a CI gate green
            pytest.fail(
                f"--flow-baseline {baseline!r}: no recorded baseline {location.name} in {location.parent}; "
                f"record one with pytest suites/test_gating.py --flow-model {baseline}=PATH_OR_HUB_ID "
                "--snapshot-update",
                pytrace=False,
            )
        pytest.skip(
            f"no recorded baseline named {who!r} ({location.name}): "
            f"record one with pytest suites/test_gating.py --flow-model {who}=PATH_OR_HUB_ID --snapshot-update"
        )
    record = flow.gate_record(flow_case.model, Path(request.config.rootpath))
    matched = record == snapshot(extension_class=extension, name=name)
    result = extension.last_result if not updating else None
    if result is not None:
        request.node.user_properties.append((GATE_PROPERTY, json.dumps(result.to_dict())))
    if not matched and result is not None:
        pytest.fail(result.message(), pytrace=False)
    if not matched and location.exists() and not updating:
        try:
            json.loads(location.read_text(encoding="utf-8"))
            why = "its content is not a gating record of this format"
        except (ValueError, OSError) as err:
            why = f"it is not readable JSON ({err})"
        pytest.fail(
            f"the recorded baseline {location} could not be read: {why}. Restore it from version control "
            f"(git checkout -- {location}); re-recording it from the checkpoint under test would hide a regression",
            pytrace=False,
        )
    if not matched:
        pytest.fail(f"no recorded baseline {name!r}: run with --snapshot-update to record it", pytrace=False)
