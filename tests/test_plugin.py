"""The pytest plugin, suites and report, driven with pytester on a tiny checkpoint and a small synthetic set."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from flowcheck.data.synth import write_benchmark

pytest_plugins = ["pytester"]
SUITES = Path(__file__).resolve().parents[1] / "suites"


BUNDLED = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-video-ft"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The bundled trained model (claims need correctly answered samples) and a small synthetic set."""
    root = tmp_path_factory.mktemp("assets")
    source = Path(os.environ.get("FLOWCHECK_TEST_MODEL", BUNDLED))
    if not (source / "config.json").exists():
        pytest.skip(f"no trained tiny model at {source}")
    model = root / "tiny-model"
    shutil.copytree(source, model)
    write_benchmark(root / "bench", seed=2, per_task=4, tasks=["moving_direction", "scene_transition"], progress=False)
    return model, root / "bench"


@pytest.fixture
def project(pytester, assets):
    for path in SUITES.glob("*.py"):
        shutil.copy(path, pytester.path / path.name)
    model, bench = assets

    def run(*args, cache="cache", reports="reports"):
        base = [
            "-p",
            "no:cacheprovider",
            "--flow-model",
            str(model),
            "--flow-data",
            f"synthetic={bench}",
            "--flow-cache",
            str(pytester.path / cache),
            "--flow-report-dir",
            str(pytester.path / reports),
        ]
        return pytester.runpytest_subprocess(*base, *args)

    return run


def claim_outcomes(report_dir: Path) -> dict[str, tuple[str, dict]]:
    (run,) = [p for p in report_dir.iterdir() if p.is_dir()]
    data = json.loads((run / "results.json").read_text())
    return {c["nodeid"].split("::")[-1]: (c["outcome"], c["measured"]) for c in data["claims"]}


def test_a_run_writes_the_report_with_the_claims_table_and_figures(project, pytester, monkeypatch):
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = project("test_knockout_route.py", "test_pruning.py", "test_answer_readiness.py", "test_logit_lens.py")
    result.stdout.fnmatch_lines(["*flowcheck: * claim checks: * passed, * failed, * expected failures -> *REPORT.md"])
    (run,) = list((pytester.path / "reports").iterdir())
    report = (run / "REPORT.md").read_text()
    for section in ("## Claims", "## Table 2", "## Table 3", "## Figures", "route_video_to_question", "tiny-model"):
        assert section in report
    assert list(run.glob("fig3-route-*.png")) and list(run.glob("fig9-answer-probability-*.png"))
    outcomes = claim_outcomes(pytester.path / "reports")
    assert "test_knockout_route_video_to_question[tiny-model-moving_direction]" in outcomes
    assert "test_pruning_parity[tiny-model-all]" in outcomes
    assert "## Claims" in summary.read_text() and "## Figures" not in summary.read_text()


def test_dash_k_selects_a_suite_of_claims(project):
    result = project("--collect-only", "-q", "-k", "knockout")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids and all("knockout" in line for line in ids)
    assert any("test_knockout_cross_frame_early[tiny-model-scene_transition]" in line for line in ids)
    assert not any("pruning" in line or "logit_lens" in line for line in ids)


def test_impossible_thresholds_fail_with_the_measured_values(project, pytester, assets):
    model, _ = assets
    registry = pytester.path / "impossible.toml"
    registry.write_text(f"[models.'{model}'.thresholds.route_no_direct_video_to_last]\nmax_abs_change_pct = -1.0\n")
    result = project("test_knockout_route.py", "-k", "no_direct", "--flow-claims", str(registry))
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["*route_no_direct_video_to_last does not hold*Measured max_abs_pct=*thresholds max_abs_change_pct=-1.0*"]
    )
    bad = pytester.path / "bad.toml"
    bad.write_text(f"[models.'{model}'.thresholds.route_no_direct_video_to_last]\nmax_abs = 1\n")
    project("test_knockout_route.py", "--flow-claims", str(bad)).stdout.fnmatch_lines(["*unknown threshold*max_abs*"])


def test_parallel_run_matches_serial_and_writes_one_report(project, pytester):
    serial = project("test_knockout_route.py", reports="serial", cache="cache-serial")
    parallel = project(
        "test_knockout_route.py", "-n", "2", "--dist", "loadgroup", reports="parallel", cache="cache-parallel"
    )
    assert serial.ret == parallel.ret
    assert len(list((pytester.path / "parallel").iterdir())) == 1
    assert claim_outcomes(pytester.path / "serial") == claim_outcomes(pytester.path / "parallel")


def test_two_shards_and_a_merge_equal_one_full_run(project, pytester):
    full = project("test_knockout_cross_frame.py", "-k", "early", cache="full", reports="r-full")
    project("test_knockout_cross_frame.py", "-k", "early", "--flow-shard", "0/2", cache="s0", reports="r0")
    project("test_knockout_cross_frame.py", "-k", "early", "--flow-shard", "1/2", cache="s1", reports="r1")
    merge = pytester.run(
        sys.executable,
        "-m",
        "flowcheck.cli",
        "merge",
        pytester.path / "s0",
        pytester.path / "s1",
        "--into",
        pytester.path / "merged",
    )
    assert merge.ret == 0 and "merged" in merge.stdout.str()
    files_before = sorted(p.name for p in (pytester.path / "merged").rglob("*.json"))
    merged = project("test_knockout_cross_frame.py", "-k", "early", cache="merged", reports="r-merged")
    assert sorted(p.name for p in (pytester.path / "merged").rglob("*.json")) == files_before  # nothing recomputed
    assert merged.ret == full.ret
    assert claim_outcomes(pytester.path / "r-merged") == claim_outcomes(pytester.path / "r-full")


def test_gating_snapshot_passes_within_tolerance_and_fails_on_drift(project, pytester):
    unrecorded = project("test_gating.py", "-rs")
    unrecorded.assert_outcomes(skipped=1)
    unrecorded.stdout.fnmatch_lines(["*no recorded baseline*--snapshot-update*"])
    project("test_gating.py", "--flow-baseline", "never-recorded").assert_outcomes(failed=1)
    record = project("test_gating.py", "--snapshot-update")
    record.assert_outcomes(passed=1)
    (snapshot,) = list((pytester.path / "__snapshots__").rglob("*.json"))
    project("test_gating.py").assert_outcomes(passed=1)
    data = json.loads(snapshot.read_text())
    kind = "accuracy"
    metric = next(iter(data[kind]))
    data[kind][metric] += 1.0  # within the 2-point accuracy tolerance
    snapshot.write_text(json.dumps(data))
    project("test_gating.py").assert_outcomes(passed=1)
    data[kind][metric] += 10.0  # far outside it
    snapshot.write_text(json.dumps(data))
    result = project("test_gating.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*drifted from baseline*", f"*{metric}*"])


def test_bad_models_and_datasets_stop_the_run_with_the_reason(pytester, assets):
    for path in SUITES.glob("*.py"):
        shutil.copy(path, pytester.path / path.name)
    model, bench = assets
    result = pytester.runpytest_subprocess(
        "--flow-model", str(pytester.path / "nowhere"), "--flow-data", f"synthetic={bench}", "test_pruning.py"
    )
    result.stdout.fnmatch_lines(["*--flow-model*nowhere*no checkpoint folder*"])
    result = pytester.runpytest_subprocess(
        "--flow-model", str(model), "--flow-data", "tvbench=/no/such/root", "test_pruning.py"
    )
    result.stdout.fnmatch_lines(["*--flow-data tvbench*does not exist*FunAILab/TVBench*"])
