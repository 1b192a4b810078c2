"""The dataset registry: each dataset's loader, temporal tasks, default keyword list and option convention."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from flowcheck.data import paper_tasks, registry, synth_tasks, tvbench
from flowcheck.data.registry import DatasetSpec, OptionConvention, dataset_spec, datasets, load_dataset, register
from flowcheck.data.report import DataError, LoadReport
from flowcheck.data.sample import Sample
from flowcheck.data.synth import write_benchmark

SHARED_TOMATO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tomato"
PAPER_FIVE = ("action_antonym", "action_sequence", "moving_direction", "object_count", "scene_transition")
TVBENCH_TEN = (
    "action_antonym",
    "action_count",
    "action_localization",
    "action_sequence",
    "egocentric_sequence",
    "moving_direction",
    "object_count",
    "object_shuffle",
    "scene_transition",
    "unexpected_action",
)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_benchmark(root, seed=5, per_task=4, progress=False)
    return root


def test_the_four_datasets_are_registered():
    assert list(datasets()) == ["folder", "synthetic", "tomato", "tvbench"]
    assert all(spec.name == name for name, spec in datasets().items())
    assert dataset_spec("tvbench").hub_id == "FunAILab/TVBench" and dataset_spec("tomato").hub_id == "yale-nlp/TOMATO"
    assert dataset_spec("synthetic").hub_id is None and dataset_spec("folder").hub_id is None


def test_the_five_temporal_task_names_are_defined_once():
    assert paper_tasks.TEMPORAL_TASKS == PAPER_FIVE  # the paper's TVBench tasks (paper-numbers.json paper_tasks)
    assert tvbench.PAPER_TASKS is paper_tasks.TEMPORAL_TASKS
    assert synth_tasks.TEMPORAL_TASKS is paper_tasks.TEMPORAL_TASKS
    assert dataset_spec("synthetic").temporal is paper_tasks.TEMPORAL_TASKS
    assert dataset_spec("tvbench").temporal is paper_tasks.TEMPORAL_TASKS


def test_temporal_tasks_per_dataset_keep_the_order_given():
    synthetic = ["spatial_attribute", "scene_transition", "action_antonym", "object_count"]
    assert dataset_spec("synthetic").temporal_tasks(synthetic) == ["scene_transition", "action_antonym", "object_count"]
    assert dataset_spec("tvbench").temporal_tasks(TVBENCH_TEN) == list(PAPER_FIVE)
    assert dataset_spec("tvbench").temporal_tasks(["object_shuffle", "action_count"]) == []
    tomato = ["rotation", "count", "shape&trend"]
    assert dataset_spec("tomato").temporal_tasks(tomato) == tomato  # TOMATO and folder: every task
    assert dataset_spec("folder").temporal_tasks(iter(["b", "a"])) == ["b", "a"]


def test_default_keyword_lists_are_bundled_files():
    assert {name: spec.keywords for name, spec in datasets().items()} == {
        "folder": "action_sequence",
        "synthetic": "synthetic",
        "tomato": "action_sequence",
        "tvbench": "action_sequence",
    }
    for spec in datasets().values():
        data = json.loads(resources.files("flowcheck.specs").joinpath("keywords", f"{spec.keywords}.json").read_text())
        assert set(data["lists"]) == {"spatial", "temporal"}


def test_option_conventions():
    synthetic, tomato = dataset_spec("synthetic").options, dataset_spec("tomato").options
    assert (synthetic.min_options, synthetic.max_options, synthetic.answer) == (2, 4, "text")
    assert (tomato.min_options, tomato.max_options, tomato.answer) == (3, 7, "index")
    assert tomato.letters(5) == ("A", "B", "C", "D", "E")
    with pytest.raises(ValueError, match="8 options: this dataset's questions have 3 to 7 options"):
        tomato.letters(8)
    assert dataset_spec("tvbench").options.admits(1) and dataset_spec("tvbench").options.admits(26)
    assert not dataset_spec("folder").options.admits(27)
    with pytest.raises(ValueError, match="1 <= min <= max <= 26"):
        OptionConvention(3, 2, "text")


def test_the_generated_synthetic_benchmark_follows_its_declared_convention(synthetic_root):
    spec = dataset_spec("synthetic")
    samples, report = spec.load(synthetic_root)
    assert report.dataset == "synthetic" and not report.skipped
    counts = {len(s.options) for s in samples}
    assert all(spec.options.admits(c) for c in counts) and (min(counts), max(counts)) == (2, 4)
    assert spec.temporal_tasks(sorted({s.task for s in samples})) == list(PAPER_FIVE)


def test_the_real_tomato_annotations_follow_the_declared_convention():
    if not SHARED_TOMATO.exists():
        pytest.skip(f"real TOMATO annotations not found at {SHARED_TOMATO}")
    files = sorted(SHARED_TOMATO.glob("*.json"))
    counts = [len(e["options"]) for f in files for e in json.loads(f.read_text()).values()]
    assert len(counts) == 1484 and (min(counts), max(counts)) == (3, 7)
    assert all(dataset_spec("tomato").options.admits(c) for c in counts)


def test_load_dataset_goes_through_the_spec(synthetic_root):
    samples, report = load_dataset("synthetic", synthetic_root, tasks=["object_count"], max_per_task=2)
    assert [s.task for s in samples] == ["object_count", "object_count"] and report.loaded == 2
    folder, _ = load_dataset("folder", synthetic_root, tasks=["object_count"], max_per_task=1)
    assert folder[0].dataset == synthetic_root.name  # a folder dataset is named after its folder


def test_unknown_names_and_missing_roots_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'ucf'; datasets: folder, synthetic, tomato, tvbench"):
        dataset_spec("ucf")
    with pytest.raises(DataError, match="unknown dataset 'ucf'"):
        load_dataset("ucf")
    with pytest.raises(DataError, match=r"tvbench dataset root .* does not exist; .* hub dataset FunAILab/TVBench"):
        load_dataset("tvbench", tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"folder dataset root .* does not exist; give an existing folder"):
        load_dataset("folder", tmp_path / "nowhere")
    with pytest.raises(DataError, match="the folder dataset needs a root: --flow-data folder=PATH"):
        load_dataset("folder")


def test_a_new_dataset_is_one_spec_and_its_registration(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))
    video = tmp_path / "v.mp4"

    def load(root, tasks, max_per_task):
        report = LoadReport("toy", str(root))
        samples = [Sample(f"toy/{t}/0", t, video, "Which?", ("x", "y"), 0, dataset="toy") for t in tasks or ["a", "b"]]
        report.loaded = len(samples)
        return samples, report

    spec = register(
        DatasetSpec("toy", "a toy", load, temporal=("b",), keywords="synthetic", options=OptionConvention(2, 2, "text"))
    )
    samples, report = load_dataset("toy", tmp_path)
    assert [s.id for s in samples] == ["toy/a/0", "toy/b/0"] and report.loaded == 2
    assert dataset_spec("toy").temporal_tasks(["a", "b"]) == ["b"]
    assert register(spec) is spec  # registering the same spec again is harmless
    with pytest.raises(ValueError, match="dataset 'toy' is registered twice"):
        register(DatasetSpec("toy", "another", load, None, "synthetic", OptionConvention(2, 2, "text")))
