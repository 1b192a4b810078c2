"""Smoke test of the bundled models' training script: both stages run, save loadable models and resume exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowcheck.data.synth_tasks import SPATIAL_TASK, TEMPORAL_TASKS
from flowcheck.models import load
from flowcheck.tiny import train as train_module

FEW_STEPS = ["--steps", "4", "--eval-every", "2", "--eval-per-task", "2", "--batch-size", "4", "--threads", "1"]
SMALL = ["--text-layers", "2", "--hidden", "32", "--warmup", "2"]


def run(out: Path, *extra: str) -> dict:
    return train_module.train(train_module.parse_args(["--out", str(out), *FEW_STEPS, *SMALL, *extra]))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("image")
    run(out, "--stage", "image")
    return out


def test_image_stage_logs_held_out_accuracy_and_saves_a_loadable_model(image_run):
    log = json.loads((image_run / "log.json").read_text())
    assert [e["step"] for e in log["evals"]] == [2, 4]
    assert set(log["evals"][-1]["accuracy"]) == {"spatial_attribute"}
    adapter = load(str(image_run / "final"))
    assert adapter.num_layers == 2


def test_video_stage_starts_from_the_image_model_and_trains_every_task(image_run, tmp_path):
    run(tmp_path, "--stage", "video", "--init", str(image_run / "final"))
    log = json.loads((tmp_path / "log.json").read_text())
    assert set(log["evals"][-1]["accuracy"]) == {*TEMPORAL_TASKS, SPATIAL_TASK}
    before, after = weights(image_run / "final"), weights(tmp_path / "final")
    vision = [k for k in before if "vision_tower" in k]
    language = [k for k in before if "language_model" in k]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)  # the vision tower stays frozen
    assert any(not torch.equal(before[k], after[k]) for k in language)


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    run(tmp_path / "straight", "--stage", "image")

    real_evaluate, calls = train_module.evaluate, []

    def evaluate_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second evaluation: the step-2 checkpoint is on disk
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", evaluate_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "interrupted", "--stage", "image")
    assert not (tmp_path / "interrupted" / "final").exists()
    monkeypatch.setattr(train_module, "evaluate", real_evaluate)
    run(tmp_path / "interrupted", "--stage", "image", "--resume")

    straight, resumed = weights(tmp_path / "straight" / "final"), weights(tmp_path / "interrupted" / "final")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_model_card_recipe_is_the_training_command(image_run, tmp_path):
    from flowcheck.tiny.card import recipe_command

    log = json.loads((image_run / "log.json").read_text())
    command = recipe_command(log["args"]).replace("\\\n", " ").replace("<run folder>", str(tmp_path))
    assert str(image_run) not in command, "the card must not show this machine's paths"
    argv = command.split()[3:]  # after "python -m flowcheck.tiny.train"
    reparsed = vars(train_module.parse_args(argv))
    original = vars(train_module.parse_args(["--out", str(image_run), *FEW_STEPS, *SMALL, "--stage", "image"]))
    for key in ("out", "resume"):
        reparsed.pop(key), original.pop(key)
    assert reparsed == original
