"""The gate's statistics on constructed records: paired McNemar and bootstrap rows, video clustering, curve
profiles, provenance refusal, old baselines, the per-sample records and the configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from flowcheck.analyses.records import Baseline, KnockoutRecord, SampleSweep
from flowcheck.analyses.runner import ModelResults
from flowcheck.data.sample import Sample
from flowcheck.gating import FORMAT, GateConfig, GateConfigError, compact_json, gate, gate_config
from flowcheck.gating.compare import OLD_FORMAT_NOTE
from flowcheck.gating.config import ProfileTolerance
from flowcheck.gating.mismatch import compare_provenance, flatten
from flowcheck.gating.paired import accuracy_rows, curve_rows, pair
from flowcheck.gating.profile import compare_profiles
from flowcheck.gating.samples import dataset_fingerprint, per_sample_records, sample_identity
from flowcheck.gating.table import FAIL, MOVED, PASS, SIGNIFICANT, gate_markdown
from flowcheck.provenance import NO_TEMPLATE, prompt_template_hash, resolved_options
from flowcheck.stats import paired_bootstrap_ci

CONFIG = GateConfig(tolerances={"accuracy": {"abs": 2.0}, "change_pct": {"abs": 3.0}, "layer": {"abs": 1.0}})


def task_record(correct, *, videos=None, knocked=None, curves=None, prefix="s"):
    """A per-sample task record (flowcheck.gating.samples) of len(correct) samples."""
    n = len(correct)
    out = {
        "id": [f"{prefix}{i}" for i in range(n)],
        "fingerprint": [f"fp{i:04d}" for i in range(n)],
        "video": list(videos or [f"v{i}" for i in range(n)]),
        "correct": {"base": "".join("1" if c else "0" for c in correct)},
        "curves": {},
    }
    if knocked is not None:
        out["correct"]["cross_frame_first_half"] = "".join("1" if c else "0" for c in knocked)
    for condition, (centers, rows) in (curves or {}).items():
        out["curves"][condition] = {"centers": list(centers), "values": [None if r is None else list(r) for r in rows]}
    return out


def snapshot(tasks, numbers=None, provenance=None):
    return {
        "format": FORMAT,
        "provenance": provenance or {},
        "numbers": numbers or {},
        "samples": {"bench": tasks},
    }


# -- paired accuracy: McNemar and the bootstrap interval ---------------------------------------


def test_accuracy_row_is_exact_mcnemar_and_the_paired_bootstrap():
    rng = np.random.default_rng(0)
    old = rng.random(300) < 0.7
    new = old.copy()
    flip_down = np.flatnonzero(old)[:40]  # right before, wrong now
    flip_up = np.flatnonzero(~old)[:10]  # wrong before, right now
    new[flip_down], new[flip_up] = False, True
    b, n = task_record(old), task_record(new)
    (row,) = accuracy_rows("bench/t", b, n, pair(b, n), CONFIG)
    assert row.p_value == f"{sps.binomtest(10, 50, 0.5).pvalue:.3g}"  # 10 discordant pairs up, 40 down
    diff, low, high = paired_bootstrap_ci(100 * new.astype(float), 100 * old.astype(float), clusters=n["video"])
    assert row.difference == f"{diff:+.2f} pts" and diff == pytest.approx(-10.0)
    assert row.ci == f"[{low:+.2f}, {high:+.2f}]"
    assert row.baseline == f"{100 * old.mean():.1f}%" and row.new == f"{100 * new.mean():.1f}%"
    assert row.verdict == FAIL  # -10 points > 2 and p << 0.05


def test_a_difference_beyond_tolerance_on_few_samples_is_not_significant():
    old = [True] * 8 + [False] * 2
    new = [True] * 7 + [False] * 3  # -10 points, one discordant pair: p = 1
    b, n = task_record(old), task_record(new)
    (row,) = accuracy_rows("bench/t", b, n, pair(b, n), CONFIG)
    assert float(row.p_value) == 1.0 and row.verdict == MOVED


def test_a_significant_difference_within_tolerance_passes():
    old = [True] * 1000 + [False] * 1000
    new = list(old)
    for i in range(1000, 1030):  # 30 of 2000 flip up: +1.5 points (within 2), p ~ 2e-9
        new[i] = True
    b, n = task_record(old), task_record(new)
    (row,) = accuracy_rows("bench/t", b, n, pair(b, n), CONFIG)
    assert float(row.p_value) < 1e-6 and row.verdict == SIGNIFICANT


def test_a_model_against_itself_passes_with_p_one():
    old = [True, False, True, True, False, True]
    b = task_record(old, knocked=[True, False, False, True, False, True])
    result = gate(snapshot({"t": b}), snapshot({"t": b}), CONFIG)
    assert result.passed and all(r.verdict == PASS for r in result.rows)
    assert [r.p_value for r in result.rows if "accuracy" in r.metric or "first_half" in r.metric] == ["1", "1"]


def test_knockout_accuracies_pair_too_and_missing_marks_are_left_out():
    b = task_record([True] * 4, knocked=[True, True, False, False])
    n = task_record([True] * 4, knocked=[True, True, True, False])
    n["correct"]["cross_frame_first_half"] = "11-0"  # the third sample has no knockout record now
    rows = {r.metric: r for r in accuracy_rows("bench/t", b, n, pair(b, n), CONFIG)}
    assert set(rows) == {"bench/t/base_accuracy", "bench/t/cross_frame_first_half"}
    assert "3 pairs" in rows["bench/t/cross_frame_first_half"].test


def test_unpaired_samples_are_counted_and_listed():
    b = task_record([True, True, False])
    n = task_record([True, True, False, True])
    n["fingerprint"][0] = "changed"  # sample s0 changed (e.g. its question was edited): it never pairs
    p = pair(b, n)
    assert len(p.baseline) == 2 and p.baseline_only == ["s0"] and sorted(p.new_only) == ["s0", "s3"]
    result = gate(snapshot({"t": n}), snapshot({"t": b}), CONFIG)
    assert result.unpaired["bench/t"] == {"baseline_only": ["s0"], "new_only": ["s0", "s3"]}
    assert "3 unpaired" in " ".join(result.notes)
    numbers = {"accuracy": {"bench/all/pruning/full": 90.0}}
    with_summary = gate(snapshot({"t": n}, numbers), snapshot({"t": b}, numbers), CONFIG)
    assert any("each run's own samples" in note for note in with_summary.notes)
    assert "bench/t: 2 new only: s0, s3" in gate_markdown(result.to_dict())


# -- clustering by video --------------------------------------------------------------------


def test_two_identical_questions_per_video_give_the_interval_of_one():
    rng = np.random.default_rng(5)
    old = rng.random(60) < 0.6
    new = np.where(rng.random(60) < 0.2, ~old, old)
    single_b, single_n = task_record(old), task_record(new)
    twice = lambda a: np.repeat(a, 2)  # noqa: E731
    videos = [f"v{i}" for i in np.repeat(np.arange(60), 2)]
    double_b, double_n = task_record(twice(old), videos=videos), task_record(twice(new), videos=videos)
    (one,) = accuracy_rows("b/t", single_b, single_n, pair(single_b, single_n), CONFIG)
    (two,) = accuracy_rows("b/t", double_b, double_n, pair(double_b, double_n), CONFIG)
    assert (two.difference, two.ci) == (one.difference, one.ci)
    # resampling single questions treats the duplicates as independent: a narrower interval
    by_sample = GateConfig(tolerances=CONFIG.tolerances, resampling="sample")
    (narrow,) = accuracy_rows("b/t", double_b, double_n, pair(double_b, double_n), by_sample)
    width = lambda ci: float(ci.strip("[]").split(", ")[1]) - float(ci.strip("[]").split(", ")[0])  # noqa: E731
    assert width(narrow.ci) < 0.85 * width(two.ci)


# -- curves: paired bootstrap per window -------------------------------------------------------


def curve_pair(shift_at=None, delta=0.0, n=40, windows=6, noise=0.5, seed=1):
    rng = np.random.default_rng(seed)
    shape = -10.0 * np.exp(-((np.arange(windows) - 2) ** 2))
    old = shape + rng.normal(0, noise, size=(n, windows))
    new = old + rng.normal(0, noise, size=(n, windows))
    if shift_at is not None:
        new[:, shift_at] += delta
    centers = list(range(windows))
    return (
        task_record([True] * n, curves={"cross_frame": (centers, old.round(3))}),
        task_record([True] * n, curves={"cross_frame": (centers, new.round(3))}),
    )


def test_a_window_that_moves_beyond_tolerance_fails_and_is_named():
    b, n = curve_pair(shift_at=4, delta=-6.0)
    (row,), _ = curve_rows("b/t", b, n, pair(b, n), CONFIG)
    assert row.verdict == FAIL and row.metric.endswith("largest difference @ layer 5")
    diffs = np.array(n["curves"]["cross_frame"]["values"])[:, 4] - np.array(b["curves"]["cross_frame"]["values"])[:, 4]
    assert row.difference == f"{diffs.mean():+.2f} pts"
    assert "(99.17%)" in row.ci  # Bonferroni over 6 windows: 1 - 0.05 / 6


def test_noise_within_tolerance_passes_and_only_pairs_correct_in_both_count():
    b, n = curve_pair()
    (row,), _ = curve_rows("b/t", b, n, pair(b, n), CONFIG)
    assert not row.failed and "40 pairs" in row.test  # the largest of 6 noisy windows may be "significant"
    n["correct"]["base"] = "0" * 10 + "1" * 30
    (row,), _ = curve_rows("b/t", b, n, pair(b, n), CONFIG)
    assert "30 pairs" in row.test


def test_a_large_move_on_three_samples_is_not_significant():
    b, n = curve_pair(shift_at=1, delta=-6.0, n=3, noise=3.0)
    (row,), _ = curve_rows("b/t", b, n, pair(b, n), CONFIG)
    assert row.verdict == MOVED and "fewer than 10 pairs" in row.test
    (row,), _ = curve_rows("b/t", b, n, pair(b, n), GateConfig(tolerances=CONFIG.tolerances, min_curve_pairs=3))
    assert row.verdict == FAIL  # the bootstrap of 3 values alone calls it significant: why min_curve_pairs exists


# -- curve profiles ------------------------------------------------------------------------------


def profile_curve(center: int, depth: float = -20.0, layers: int = 16) -> list[float]:
    return list(depth * np.exp(-(((np.arange(layers) - center) / 2.0) ** 2)))


def test_a_scaled_curve_keeps_its_profile():
    centers = list(range(16))
    base = profile_curve(6)
    p = compare_profiles(centers, base, [0.5 * v for v in base], ProfileTolerance())
    assert p.reasons == [] and p.rho == pytest.approx(1.0) and p.argmin_baseline == p.argmin_new == 6


def test_a_shifted_curve_fails_argmin_and_top_windows():
    centers = list(range(16))
    p = compare_profiles(centers, profile_curve(4), profile_curve(10), ProfileTolerance())
    assert p.argmin_new - p.argmin_baseline == 6
    assert any("argmin moved +6" in r for r in p.reasons)
    assert any("0 of the top 3" in r for r in p.reasons)
    assert any("Spearman" in r for r in p.reasons)  # the ranks of a moved dip disagree
    near = compare_profiles(centers, profile_curve(4), profile_curve(5), ProfileTolerance())
    assert near.reasons == []  # one layer, within +-2


def test_profile_tolerances_are_per_condition_and_flat_curves_are_skipped():
    centers = list(range(16))
    loose = ProfileTolerance(argmin_layers=6, min_spearman=-1.0, min_top_overlap=0)
    assert compare_profiles(centers, profile_curve(4), profile_curve(10), loose).reasons == []
    flat = compare_profiles(centers, profile_curve(4, -0.5), profile_curve(10, -0.5), ProfileTolerance())
    assert flat.flat and flat.reasons == []
    with pytest.raises(ValueError, match="one value per window"):
        compare_profiles(centers, profile_curve(4), profile_curve(4)[:5], ProfileTolerance())


def test_the_gate_reports_a_moved_profile_as_a_failing_row_when_the_curves_differ_significantly():
    centers = list(range(16))
    config = GateConfig(
        tolerances=CONFIG.tolerances,
        profile_conditions={"cross_frame": ProfileTolerance(argmin_layers=1)},
    )

    def profile_row(n_pairs):
        b = task_record([True] * n_pairs, curves={"cross_frame": (centers, [profile_curve(4)] * n_pairs)})
        n = task_record([True] * n_pairs, curves={"cross_frame": (centers, [profile_curve(10)] * n_pairs)})
        result = gate(snapshot({"t": n}), snapshot({"t": b}), config)
        (row,) = [r for r in result.rows if r.metric.endswith("/profile")]
        return row

    row = profile_row(12)
    assert row.failed and "argmin 5" in row.baseline and "argmin 11" in row.new
    assert "argmin ±1" in row.tolerance and "12 pairs" in row.test
    few = profile_row(5)  # below min_curve_pairs: no window can be significant
    assert few.verdict == MOVED and "no window differs significantly" in few.test


def test_a_profile_is_compared_on_the_pairs_both_runs_answer_correctly():
    centers = list(range(16))
    rows = [profile_curve(4)] * 12 + [profile_curve(12)] * 12
    b = task_record([True] * 24, curves={"cross_frame": (centers, rows)})
    n = task_record([True] * 12 + [False] * 12, curves={"cross_frame": (centers, rows[:12] + [None] * 12)})
    result = gate(snapshot({"t": n}), snapshot({"t": b}), CONFIG)
    (row,) = [r for r in result.rows if r.metric.endswith("/profile")]
    # the baseline's own curve over its 24 samples has another shape; over the 12 shared pairs it is the same
    assert row.verdict == PASS and "argmin 5" in row.baseline and "argmin 5" in row.new


# -- provenance ----------------------------------------------------------------------------------


PROVENANCE = {
    "git_commit": "abc",
    "dtype": "float32",
    "datasets": {"bench": {"fingerprint": "f1", "samples": 4}},
    "options": {"max_samples": {"value": None, "source": "default"}},
    "model": {"fingerprint": "weights-1"},
}
NUMBER_CHANGING = ("dtype", "datasets.*.fingerprint", "options.max_samples.value")


def changed(**paths):
    out = json.loads(json.dumps(PROVENANCE))
    for path, value in paths.items():
        *parents, leaf = path.split("__")
        node = out
        for p in parents:
            node = node[p]
        node[leaf] = value
    return out


def test_provenance_differing_in_a_number_changing_field_is_refused_with_the_fields_named():
    config = GateConfig(tolerances=CONFIG.tolerances, number_changing=NUMBER_CHANGING)
    b = task_record([True, False])
    new = snapshot({"t": b}, provenance=changed(dtype="bfloat16", model__fingerprint="weights-2", git_commit="def"))
    result = gate(new, snapshot({"t": b}, provenance=PROVENANCE), config)
    assert result.refused and not result.passed and result.rows == []
    assert [f["field"] for f in result.provenance.refused] == ["dtype"]
    assert "dtype: baseline float32, new bfloat16" in result.message()
    assert "--flow-gate-allow dtype" in result.message()
    assert {f["field"] for f in result.provenance.other} == {"git_commit", "model.fingerprint"}


def test_an_allowed_field_is_compared_and_listed():
    config = GateConfig(tolerances=CONFIG.tolerances, number_changing=NUMBER_CHANGING)
    b = task_record([True, False])
    new = snapshot({"t": b}, provenance=changed(datasets__bench__fingerprint="f2", options__max_samples__value=2))
    refused = gate(new, snapshot({"t": b}, provenance=PROVENANCE), config)
    assert {f["field"] for f in refused.provenance.refused} == {
        "datasets.bench.fingerprint",
        "options.max_samples.value",
    }
    allowed = gate(new, snapshot({"t": b}, provenance=PROVENANCE), config, allow=["datasets", "options.max_*"])
    assert allowed.passed and len(allowed.provenance.allowed) == 2
    assert "Allowed provenance differences" in gate_markdown(allowed.to_dict())


def test_flatten_and_a_baseline_without_provenance():
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1]}) == {"a.b": 1, "a.c": {}, "d": [1]}
    check = compare_provenance({}, PROVENANCE, NUMBER_CHANGING)
    assert not check.checked and not check.refused


# -- old baselines -------------------------------------------------------------------------------


def test_an_old_baseline_without_per_sample_records_is_compared_by_tolerance_with_a_note():
    numbers = {"accuracy": {"bench/t/base_accuracy": 50.0}, "layer": {"bench/t/cross_frame/argmin": 3}}
    new = snapshot({"t": task_record([True, False])}, numbers=numbers)
    result = gate(new, dict(numbers), CONFIG)  # format 1: the numbers object alone
    assert result.passed and OLD_FORMAT_NOTE in result.notes
    assert "the baseline records no provenance: settings not checked" in result.notes
    assert {r.metric for r in result.rows} == {"bench/t/base_accuracy", "bench/t/cross_frame/argmin"}
    drifted = gate(new, {"accuracy": {"bench/t/base_accuracy": 60.0}, "layer": numbers["layer"]}, CONFIG)
    (bad,) = drifted.failing_rows()
    assert bad.metric == "bench/t/base_accuracy" and "tolerance only" in bad.test
    assert "bench/t/base_accuracy: baseline 60, new 50" in drifted.message()


def test_paired_tests_replace_the_summary_numbers_they_cover():
    numbers_old = {"accuracy": {"bench/t/base_accuracy": 50.0, "bench/all/pruning/full": 90.0}}
    numbers_new = {"accuracy": {"bench/t/base_accuracy": 99.0, "bench/all/pruning/full": 90.5}}
    b = task_record([True, False])
    result = gate(snapshot({"t": b}, numbers_new), snapshot({"t": b}, numbers_old), CONFIG)
    metrics = [r.metric for r in result.rows]
    assert metrics.count("bench/t/base_accuracy") == 1  # the paired row, not the summary number
    assert "bench/all/pruning/full" in metrics and result.passed


# -- per-sample records, identities, serialisation, configuration ---------------------------------------


def _baseline(sample_id: str, task: str, correct: bool) -> Baseline:
    return Baseline(sample_id, task, "bench", 0, [10, 11], [0.6, 0.3], 10 if correct else 11, 0.6, {})


def _record(sample_id: str, condition: str, center, style: str, p_new: float, argmax: int) -> KnockoutRecord:
    return KnockoutRecord(sample_id, condition, "g", center, style, [0], 0.6, p_new, argmax, [])


def test_per_sample_records_from_model_results(tmp_path):
    samples = []
    for i, task in enumerate(["a", "a", "b"]):
        video = tmp_path / f"{i}.mp4"
        video.write_bytes(b"same video" if i < 2 else b"other")
        samples.append(Sample(f"bench/{task}/{i}", task, video, f"q{i}", ("x", "y"), 0, dataset="bench"))
    results = ModelResults("m", "fp", 2, "bench", info={"accuracy": {"knockouts": [["cross_frame", "explicit:0:1"]]}})
    sweeps = {}
    for i, s in enumerate(samples):
        base = _baseline(s.id, s.task, correct=i != 1)
        results.baselines.append(base)
        records = [
            _record(s.id, "cross_frame", 0, "center", 0.3, 10),
            _record(s.id, "cross_frame", 1, "center", 0.6, 10),
            _record(s.id, "cross_frame", None, "explicit:0:1", 0.1, 11 if i == 0 else 10),
        ]
        sweeps[s.id] = SampleSweep(base, records)
    results.results["sweep"] = sweeps
    identities = {s.id: sample_identity("bench", s) for s in samples}
    out = per_sample_records(results, samples, identities, decimals=2)
    assert sorted(out) == ["a", "b"]
    a = out["a"]
    assert a["id"] == ["bench/a/0", "bench/a/1"] and a["video"][0] == a["video"][1]
    assert a["correct"] == {"base": "10", "cross_frame_0:1": "01"}
    # relative change (0.3 - 0.6) / 0.6 = -50 %; the wrongly answered sample keeps no curve values
    assert a["curves"]["cross_frame"] == {"centers": [0, 1], "values": [[-50.0, 0.0], None]}
    assert out["b"]["video"][0] != a["video"][0]
    assert len(dataset_fingerprint(identities)) == 16


def test_a_changed_question_or_video_changes_the_fingerprint(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"frames")
    sample = Sample("bench/t/0", "t", video, "What happens?", ("a", "b"), 0)
    fp, vid = sample_identity("bench", sample)
    edited = Sample("bench/t/0", "t", video, "What happens first?", ("a", "b"), 0)
    assert sample_identity("bench", edited) == (sample_identity("bench", edited)[0], vid)
    assert sample_identity("bench", edited)[0] != fp
    assert sample_identity("other", sample)[0] != fp
    video.write_bytes(b"frames, re-encoded")
    assert sample_identity("bench", sample)[0] != fp and sample_identity("bench", sample)[1] != vid


def test_compact_json_round_trips_and_keeps_arrays_on_one_line():
    data = {"b": {"values": [[1.5, None], [2.0, -3.25]], "centers": [0, 1]}, "a": "x", "e": [], "f": {}}
    text = compact_json(data)
    assert json.loads(text) == data
    assert '"values": [[1.5,null],[2.0,-3.25]]' in text and text.index('"a"') < text.index('"b"')


def test_gate_config_reads_the_registry_and_refuses_bad_values(tmp_path):
    config = gate_config(["flowcheck/specs/claims.toml"], {"accuracy": {"abs": 2.0}})
    assert 0 < config.alpha < 1 and config.resampling == "video" and "dtype" in config.number_changing
    assert config.profile_for("cross_frame") != config.profile or "cross_frame" not in config.profile_conditions
    extra = tmp_path / "more.toml"
    extra.write_text('[gating]\nalpha = 0.01\n[gating.profile.conditions."video->question"]\nargmin_layers = 5\n')
    more = gate_config(["flowcheck/specs/claims.toml", str(extra)], {})
    assert more.alpha == 0.01 and more.profile_for("video->question").argmin_layers == 5
    for text, message in (
        ("[gating]\nalpha = 1.5\n", "alpha"),
        ("[gating]\nbogus = 1\n", "unknown key"),
        ("[gating]\nresampling = 'frames'\n", "resampling"),
        ("[gating.profile]\nmin_spearman = 'high'\n", "finite number"),
    ):
        extra.write_text(text)
        with pytest.raises(GateConfigError, match=message):
            gate_config(["flowcheck/specs/claims.toml", str(extra)], {})


def test_prompt_template_hash_and_resolved_options(tmp_path):
    assert prompt_template_hash(tmp_path) == NO_TEMPLATE
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    from_tokenizer = prompt_template_hash(tmp_path)
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    assert prompt_template_hash(tmp_path) == from_tokenizer  # the same template text, wherever it is kept
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}!")
    assert prompt_template_hash(tmp_path) != from_tokenizer
    options = resolved_options({"dtype": "float32", "cache_dir": Path("/c")}, {"dtype": "command line"})
    assert options == {
        "cache_dir": {"value": "/c", "source": "default"},
        "dtype": {"value": "float32", "source": "command line"},
    }


def test_a_non_finite_baseline_number_fails_its_row():
    from flowcheck.gating.numbers import drift, drift_rows

    current = {"probability": {"d/t/p": 99.0}}
    corrupt = {"probability": {"d/t/p": float("nan")}}
    tolerances = {"probability": {"abs": 5.0}}
    (row,) = drift_rows(current, corrupt, tolerances)
    assert row.verdict == FAIL and "not a finite number" in row.test
    assert drift(current, corrupt, tolerances) and drift(current, {"probability": {"d/t/p": "abc"}}, tolerances)
