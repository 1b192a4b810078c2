"""The pytest plugin, suites and report, driven with pytester on a tiny checkpoint and a small synthetic set."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from flowcheck import bundled
from flowcheck.data.synth import write_benchmark

pytest_plugins = ["pytester"]
SUITES = Path(__file__).resolve().parents[1] / "suites"


BUNDLED = bundled.model_dir("tiny-video-ft")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The bundled trained model (claims need correctly answered samples) and a small synthetic set."""
    root = tmp_path_factory.mktemp("assets")
    source = Path(os.environ.get("FLOWCHECK_TEST_MODEL", BUNDLED))
    assert (source / "config.json").exists(), f"no trained tiny model at {source} (the package data is incomplete)"
    model = root / "tiny-model"
    shutil.copytree(source, model)
    write_benchmark(root / "bench", seed=2, per_task=4, tasks=["moving_direction", "scene_transition"], progress=False)
    return model, root / "bench"


@pytest.fixture
def project(pytester, assets):
    for path in SUITES.glob("*.py"):
        shutil.copy(path, pytester.path / path.name)
    model, bench = assets

    evidence = pytester.path / "evidence.toml"
    evidence.write_text("[evidence]\nmin_samples = 2  # 4 samples per task here\n")

    def run(*args, cache="cache", reports="reports"):
        base = [
            "--flow-claims",
            str(evidence),
            "-p",
            "no:cacheprovider",
            "--flow-model",
            f"tiny-model={model}",
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
    result.stdout.fnmatch_lines(["*flowcheck: * claim checks: * passed, * failed, * expected failures*-> *REPORT.md"])
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
    project("test_knockout_route.py", "--flow-claims", str(bad)).stderr.fnmatch_lines(["*unknown threshold*max_abs*"])


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
    never = project("test_gating.py", "--flow-baseline", "never-recorded", "-rs")
    never.assert_outcomes(failed=1)  # named explicitly: a typo must not pass a CI gate
    never.stdout.fnmatch_lines(
        ["*--flow-baseline 'never-recorded': no recorded baseline*--flow-model never-recorded=*"]
    )
    record = project("test_gating.py", "--snapshot-update")
    record.assert_outcomes(passed=1)
    (snapshot,) = list((pytester.path / "__snapshots__").rglob("*.json"))
    project("test_gating.py").assert_outcomes(passed=1)
    data = json.loads(snapshot.read_text())
    assert data["format"] == 2 and data["samples"]["synthetic"] and data["provenance"]["model"]["fingerprint"]
    kind = "accuracy"
    metric = next(m for m in data["numbers"][kind] if "pruning" in m)  # a summary number: compared by tolerance
    data["numbers"][kind][metric] += 1.0  # within the 2-point accuracy tolerance
    snapshot.write_text(json.dumps(data))
    project("test_gating.py").assert_outcomes(passed=1)
    data["numbers"][kind][metric] += 10.0  # far outside it
    snapshot.write_text(json.dumps(data))
    result = project("test_gating.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*differs from baseline*", f"*{metric}*"])
    data["provenance"]["dtype"] = "bfloat16"  # recorded under another dtype: refused, the field named
    snapshot.write_text(json.dumps(data))
    refused = project("test_gating.py")
    refused.assert_outcomes(failed=1)
    refused.stdout.fnmatch_lines(["*cannot be gated against baseline*", "*dtype: baseline bfloat16, new float32*"])


def test_bad_models_and_datasets_stop_the_run_with_the_reason(pytester, assets):
    for path in SUITES.glob("*.py"):
        shutil.copy(path, pytester.path / path.name)
    model, bench = assets
    result = pytester.runpytest_subprocess(
        "--flow-model", str(pytester.path / "nowhere"), "--flow-data", f"synthetic={bench}", "test_pruning.py"
    )
    result.stderr.fnmatch_lines(["ERROR: flowcheck: --flow-model*nowhere*no checkpoint folder*"])
    result = pytester.runpytest_subprocess(
        "--flow-model", str(model), "--flow-data", "tvbench=/no/such/root", "test_pruning.py"
    )
    result.stderr.fnmatch_lines(["ERROR: flowcheck: --flow-data tvbench*does not exist*FunAILab/TVBench*"])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flow-dtype", "int8"], "--flow-dtype: unknown dtype 'int8'"),
        (["--flow-data", "folder=/no/such/folder"], "--flow-data folder: *does not exist"),
        (["--flow-model", "a=/x", "--flow-model", "a=/y"], "two models are both named 'a'*"),
        (["--flow-analyses", "bogus"], "--flow-analyses: unknown analysis 'bogus'*"),
        (["--flow-pathway", "video->question@6-3"], "--flow-pathway: layers '6-3'*"),
        (["--flow-setting", "answers_under_knockout.max_tokens=3"], "--flow-setting: *unknown setting 'max_tokens'*"),
        (["--flow-setting", "open_ended_flow.prompt=mc"], "--flow-setting: *add --flow-analyses open_ended_flow*"),
        (["--flow-baseline", "other", "--snapshot-update"], "--snapshot-update with --flow-baseline*"),
    ],
)
def test_a_usage_error_is_reported_once_before_any_test_without_a_traceback(pytester, assets, workers, args, message):
    for path in SUITES.glob("*.py"):
        shutil.copy(path, pytester.path / path.name)
    model, bench = assets
    base = ["-p", "no:cacheprovider", "--flow-model", str(model), "--flow-data", f"synthetic={bench}"]
    result = pytester.runpytest_subprocess(*base, *args, *workers)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: flowcheck:")]
    assert len(errors) == 1, result.stderr.str()
    result.stderr.fnmatch_lines([f"ERROR: flowcheck: {message}*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_two_checkpoints_with_the_same_folder_name_get_distinct_test_ids_and_baselines(project, pytester, assets):
    model, _ = assets
    for run in ("runA", "runB"):
        shutil.copytree(model, pytester.path / run / "checkpoint-500")
    result = project(
        "--collect-only",
        "-q",
        "test_gating.py",
        "--flow-model",
        str(pytester.path / "runA" / "checkpoint-500"),
        "--flow-model",
        str(pytester.path / "runB" / "checkpoint-500"),
    )
    ids = sorted(line.split("[", 1)[1] for line in result.stdout.lines if "test_gate[" in line)
    assert len(ids) == 3 and ids[0].startswith("runA/checkpoint-500-") and ids[1].startswith("runB/checkpoint-500-")
    assert ids[0] != ids[1] and ids[2] == "tiny-model]"
    aliased = project("--collect-only", "-q", "test_gating.py", "--flow-model", f"baseline={model}")
    assert any("test_gate[baseline]" in line for line in aliased.stdout.lines)


def test_an_exception_in_a_claim_is_an_error_even_where_a_failure_is_expected(project, pytester, assets):
    """A strict expected failure absorbs only ClaimNotHeld: a crash (here a ZeroDivisionError put into one
    evaluator) is an error, and the report is still written with it."""
    model, _ = assets
    (pytester.path / "conftest.py").write_text(
        "from flowcheck import claims\nclaims.evaluator('route_last_to_last_flat')(lambda spec, evidence: 1 / 0)\n"
    )
    registry = pytester.path / "expected.toml"
    registry.write_text(
        f"[models.'{model}'.thresholds.route_no_direct_video_to_last]\nmax_abs_change_pct = -1.0\n"
        f"[models.'{model}'.xfail]\n"
        "route_no_direct_video_to_last = 'measured: the threshold cannot be met'\n"
        "route_last_to_last_flat = 'an expected failure must not absorb a crash'\n"
    )
    result = project("test_knockout_route.py", "-k", "no_direct or last_to_last", "--flow-claims", str(registry))
    result.assert_outcomes(failed=2, xfailed=2)
    outcomes = claim_outcomes(pytester.path / "reports")
    assert {o for (o, _) in outcomes.values()} == {"error", "xfailed"}
    assert all(o == "error" for k, (o, _) in outcomes.items() if "last_to_last" in k)
    (run,) = list((pytester.path / "reports").iterdir())
    record = json.loads((run / "results.json").read_text())
    assert any("ZeroDivisionError" in c["message"] for c in record["claims"] if c["outcome"] == "error")


def test_a_keyword_problem_makes_only_the_logit_lens_claim_not_evaluable(project, pytester, assets):
    model, _ = assets
    keywords = pytester.path / "keywords.json"
    keywords.write_text(json.dumps({"lists": {"spatial": ["zzqqxx", "qqzzyy"], "temporal": ["left", "right"]}}))
    registry = pytester.path / "kw.toml"
    registry.write_text(f"[models.'{model}']\nkeywords = '{keywords}'\n")
    result = project(
        "test_logit_lens.py",
        "test_knockout_route.py",
        "-k",
        "lens or video_to_question",
        "-rs",
        "--flow-claims",
        str(registry),
    )
    result.stdout.fnmatch_lines(["*not evaluable*'spatial'*zzqqxx*"])
    outcomes = claim_outcomes(pytester.path / "reports")
    assert outcomes["test_logit_lens_temporal_concepts_late[tiny-model-all]"][0] == "not evaluable"
    others = {o for k, (o, _) in outcomes.items() if "video_to_question" in k}
    assert others and others <= {"passed", "failed"}
    (run,) = list((pytester.path / "reports").iterdir())
    report = (run / "REPORT.md").read_text()
    assert "not evaluable" in report and "Fig. 4 for tiny-model" in report and "zzqqxx" in report


def test_the_skipped_count_agrees_everywhere(project, pytester, assets):
    _, bench = assets
    copy = pytester.path / "bench"
    shutil.copytree(bench, copy)
    broken = sorted((copy / "video").rglob("*.mp4"))[0]
    broken.write_bytes(b"not a video")
    result = project("test_knockout_route.py", "-k", "video_to_question", "--flow-data", f"synthetic={copy}")
    result.stdout.fnmatch_lines(["flowcheck: synthetic: 1 of 8 samples skipped*"])
    (run,) = list((pytester.path / "reports").iterdir())
    report = (run / "REPORT.md").read_text()
    assert ", 1 skipped |" in report and "## Skipped samples (1)" in report and broken.name in report
    record = json.loads((run / "results.json").read_text())
    assert record["metadata"]["datasets"][0]["skipped"] == len(record["skipped"]) == 1
