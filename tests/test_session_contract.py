"""A model whose adapter fails its contract on the run's data computes no number; the report says which check."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowcheck import session as session_module
from flowcheck.analyses.contract import Check, Verification
from flowcheck.claims import load_registry
from flowcheck.data.synth import write_benchmark
from flowcheck.options import resolve
from flowcheck.session import ContractError, FlowSession


def failing(model: str) -> Verification:
    checks = (Check("video_span", "fail", "video rows [49, 81) vs layout [48, 80)"), Check("fast_engine", "pass", ""))
    return Verification(model, "llava-next-video", "f", "s/t/1", "x", "float32", "cpu", "0", checks, "prompt")


def test_a_failing_contract_stops_the_model_before_any_number(tmp_path: Path, monkeypatch):
    bench = tmp_path / "bench"
    write_benchmark(bench, seed=1, per_task=1, tasks=["moving_direction"], progress=False)
    options = resolve(
        {"models": ["tiny-video-ft"], "data": [f"synthetic={bench}"], "cache_dir": tmp_path / "cache"}, {}, {}
    )
    session = FlowSession(options, load_registry())
    monkeypatch.setattr(session_module, "verify", lambda handle, *a, **k: failing(handle.name))
    computed = []
    monkeypatch.setattr(session_module, "run_analyses", lambda *a, **k: computed.append(a))
    with pytest.raises(ContractError, match=r"video_span .*\[49, 81\).*flowcheck verify tiny-video-ft"):
        session.results("tiny-video-ft", "synthetic")
    assert not computed
    assert session.verification("tiny-video-ft").summary() == "contract FAILED: video_span"


def test_the_system_prompt_mode_is_part_of_every_cached_result_s_identity():
    from flowcheck.analyses.contract import model_identity
    from flowcheck.analyses.runner import result_identity
    from flowcheck.data.frames import FRAME_RULE
    from flowcheck.models.handle import ModelHandle

    auto, drop = ModelHandle("tiny-video-ft"), ModelHandle("tiny-video-ft", system_mode="drop")
    assert result_identity(auto) == {
        "model": auto.fingerprint(),
        "dtype": "float32",
        "frames": 8,
        "frame_rule": FRAME_RULE,
    }
    assert result_identity(drop) == {**result_identity(auto), "system_mode": "drop"}
    assert model_identity(auto)["system_mode"] == "auto" and model_identity(drop)["system_mode"] == "drop"
