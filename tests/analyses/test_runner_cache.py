"""The runner end to end on a tiny checkpoint: records, resumable cache, merge, pruning consistency."""

from __future__ import annotations

import pytest
from tiny_checkpoint import save_tiny_checkpoint

import flowcheck
from flowcheck.analyses.base import analyses
from flowcheck.analyses.runner import AnalysisPlan, run_analyses, video_key
from flowcheck.analyses.summary import summarise
from flowcheck.cache import ResultCache, merge_caches
from flowcheck.data.folder import load_tvbench_layout
from flowcheck.data.synth import write_benchmark
from flowcheck.edges import full_edges

PLAN = AnalysisPlan(
    settings={"sweep": {"conditions": ("cross_frame", "vql-to-ql")}, "logit_lens": {"keywords": "synthetic"}}, seed=3
)


def records(results):
    return [r for sweep in results.results["sweep"].values() for r in sweep.records]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), layers=4)
    bench = tmp_path_factory.mktemp("bench")
    write_benchmark(bench, seed=1, per_task=4, tasks=["moving_direction", "scene_transition"])
    samples, _ = load_tvbench_layout(bench, dataset="synthetic")
    return flowcheck.load(str(folder)), samples


def count_forwards(adapter):
    calls = []
    handle = adapter.decoder.module.register_forward_pre_hook(lambda *a: calls.append(1))
    return calls, handle


def test_records_cover_every_condition_window_and_the_first_half(setup, tmp_path):
    adapter, samples = setup
    results = run_analyses(adapter, samples, PLAN, ResultCache(tmp_path), dataset="synthetic")
    assert results.computed == len(samples) == len(results.baselines) and not results.skipped
    per_sample = 5 * 4 + 1  # (cross_frame + 4 route conditions) x 4 windows + the first-half accuracy record
    assert len(records(results)) == per_sample * len(samples)
    assert set(results.results["answer_probability"]) == set(results.results["logit_lens"]) == {s.id for s in samples}
    summary = summarise(results, "moving_direction")
    assert summary.n == 4 and summary.get("accuracy") is not None and summary.get("accuracy").layers == [0, 1]
    assert results.videos == {s.id: video_key(s) for s in samples}  # the bootstrap's clusters, never cached
    by_video, by_sample = (summarise(results, selection="all", resampling=r) for r in ("video", "sample"))
    curve, plain = by_video.get("sweep").curves["cross_frame"], by_sample.get("sweep").curves["cross_frame"]
    assert (curve.resampling, plain.resampling) == ("video", "sample") and curve.mean == plain.mean
    for p in results.results["pruning"].values():
        layout = next(b.token_layout for b in results.baselines if b.sample_id == p.sample_id)
        assert p.full_edges == full_edges(layout.n) * 4
        assert p.effective_edges == p.random_edges < p.full_edges
        assert len(p.random_correct) == 5  # one per seed of the random control
    info = results.info["pruning"]
    held_out = set(info["discovery_samples"])
    assert info["source"] == "discovered" and info["spec"] == info["discovered"]["spec"]
    assert len(held_out) == 4 and sum("/moving_direction/" in s for s in held_out) == 2  # half of each task
    pruning = summarise(results).get("pruning")
    assert pruning.half == "validation" and pruning.n == 4 and pruning.discovery_half["n"] == 4
    assert pruning.random_lo <= pruning.random_accuracy <= pruning.random_hi


def test_a_second_identical_run_computes_nothing(setup, tmp_path):
    adapter, samples = setup
    first = run_analyses(adapter, samples, PLAN, ResultCache(tmp_path), dataset="synthetic")
    calls, handle = count_forwards(adapter)
    try:
        second = run_analyses(adapter, samples, PLAN, ResultCache(tmp_path), dataset="synthetic")
    finally:
        handle.remove()
    assert calls == [] and second.computed == 0 and second.cached == len(samples)
    assert [r.p_new for r in records(second)] == [r.p_new for r in records(first)]


def test_a_killed_run_resumes_where_it_stopped(setup, tmp_path, monkeypatch):
    adapter, samples = setup
    encode = type(adapter).encode
    done = []

    def dying_encode(self, sample, frames):
        if len(done) == 3:
            raise KeyboardInterrupt  # the run is killed while working on the fourth sample
        done.append(sample.id)
        return encode(self, sample, frames)

    monkeypatch.setattr(type(adapter), "encode", dying_encode)
    with pytest.raises(KeyboardInterrupt):
        run_analyses(adapter, samples, PLAN, ResultCache(tmp_path), dataset="synthetic")
    cache = ResultCache(tmp_path)
    assert len(list(cache.entries("sweep"))) == 3 and not list(cache.entries("pruning"))
    monkeypatch.setattr(type(adapter), "encode", encode)
    resumed = run_analyses(adapter, samples, PLAN, cache, dataset="synthetic")
    # the first pass computes the 5 samples it had not reached; the pruning pass (after discovery) all 8
    assert resumed.cached == 0 and resumed.computed == len(samples)
    assert len(list(cache.entries("sweep"))) == len(list(cache.entries("pruning"))) == len(samples)
    again = run_analyses(adapter, samples, PLAN, cache, dataset="synthetic")
    assert again.cached == len(samples) and again.computed == 0


def test_merged_caches_serve_a_full_run(setup, tmp_path):
    adapter, samples = setup
    half = len(samples) // 2
    run_analyses(adapter, samples[:half], PLAN, ResultCache(tmp_path / "a"), dataset="synthetic")
    run_analyses(adapter, samples[half:], PLAN, ResultCache(tmp_path / "b"), dataset="synthetic")
    copied, present = merge_caches([tmp_path / "a", tmp_path / "b"], tmp_path / "all")
    assert copied > 0 and present == 0
    merged = run_analyses(adapter, samples, PLAN, ResultCache(tmp_path / "all"), dataset="synthetic")
    assert merged.computed == 0 and merged.cached == len(samples)
    again, already = merge_caches([tmp_path / "a"], tmp_path / "all")
    assert again == 0 and already > 0


def test_cache_keys_are_those_of_the_per_analysis_runner(setup, tmp_path):
    """Caches written before the analysis registry stay valid: each kind's key is the description the earlier
    runner hashed (model identity + sample fingerprint + the analysis's parameters), written out here by hand."""
    from flowcheck.analyses.logit_lens import load_keyword_file, resolve_keywords
    from flowcheck.analyses.runner import result_identity, sample_fingerprint
    from flowcheck.cache import cache_key
    from flowcheck.edges import parse_layer_range, resolve_conditions, sweep_windows
    from flowcheck.models.handle import ModelHandle

    adapter, samples = setup
    cache = ResultCache(tmp_path)
    run_analyses(adapter, samples[:1], PLAN, cache, dataset="synthetic")
    handle = ModelHandle.from_adapter(adapter)
    desc = {**result_identity(handle), "sample": sample_fingerprint(samples[0])}
    windows = sweep_windows(4, None, "center")
    pairs = [
        (c.name, str(c.blocks), w.style, w.layers)
        for c in resolve_conditions(PLAN.settings["sweep"]["conditions"])
        for w in windows
    ]
    (cross_frame,) = resolve_conditions(["cross_frame"])
    pairs.append(
        (cross_frame.name, str(cross_frame.blocks), "explicit:first_half", parse_layer_range("first_half", 4).layers)
    )
    keywords = resolve_keywords(adapter.tokenizer, load_keyword_file("synthetic")["lists"])
    spec = run_analyses(adapter, samples[:1], PLAN, cache, dataset="synthetic").info["pruning"]
    expected = {
        "sweep": {"pairs": pairs},
        "answer_probability": {"final_norm": False},
        "logit_lens": {"keywords": keywords.token_ids, "unembedding": "input", "norm": False},
        "pruning": {"spec": spec["spec"], "mode": "keep", "seeds": [3, 4, 5, 6, 7], "random_mode": "uniform"},
        "early_exit": {"final_norm": True},  # issue 18: new kind, both prediction rules in each entry
    }
    for kind, parameters in expected.items():
        assert cache.get(kind, cache_key({**desc, **parameters})) is not None, kind
    # analyses added since then write their own kinds (their keys are checked by their own tests)
    default = {name for name, cls in analyses().items() if not getattr(cls, "opt_in", False)}
    written = {p.name for p in tmp_path.iterdir()}
    assert set(expected) <= written <= default  # (accuracy reads the sweep's entries: no kind of its own)
