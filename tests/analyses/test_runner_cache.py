"""The runner end to end on a tiny checkpoint: records, resumable cache, merge, pruning consistency."""

from __future__ import annotations

import pytest
from tiny_checkpoint import save_tiny_checkpoint

import flowcheck
from flowcheck.analyses.runner import AnalysisPlan, run_analyses
from flowcheck.analyses.summary import summarise
from flowcheck.cache import ResultCache, merge_caches
from flowcheck.data.folder import load_tvbench_layout
from flowcheck.data.synth import write_benchmark
from flowcheck.edges import full_edges

PLAN = AnalysisPlan(conditions=("cross_frame", "vql-to-ql"), logit_lens="synthetic", seed=3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), layers=4)
    bench = tmp_path_factory.mktemp("bench")
    write_benchmark(bench, seed=1, per_task=4, tasks=["moving_direction", "scene_transition"], progress=False)
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
    assert len(results.records) == per_sample * len(samples)
    assert set(results.answer_probs) == set(results.lens_hits) == {s.id for s in samples}
    summary = summarise(results, "moving_direction")
    assert summary.n == 4 and summary.accuracy is not None and summary.accuracy.layers == [0, 1]
    for p in results.pruning:
        layout = next(b.token_layout for b in results.baselines if b.sample_id == p.sample_id)
        assert p.full_edges == full_edges(layout.n) * 4
        assert p.effective_edges == p.random_edges < p.full_edges


def test_a_second_identical_run_computes_nothing(setup, tmp_path):
    adapter, samples = setup
    first = run_analyses(adapter, samples, PLAN, ResultCache(tmp_path), dataset="synthetic")
    calls, handle = count_forwards(adapter)
    try:
        second = run_analyses(adapter, samples, PLAN, ResultCache(tmp_path), dataset="synthetic")
    finally:
        handle.remove()
    assert calls == [] and second.computed == 0 and second.cached == len(samples)
    assert [r.p_new for r in second.records] == [r.p_new for r in first.records]


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
    monkeypatch.setattr(type(adapter), "encode", encode)
    resumed = run_analyses(adapter, samples, PLAN, ResultCache(tmp_path), dataset="synthetic")
    assert resumed.cached == 3 and resumed.computed == len(samples) - 3


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
