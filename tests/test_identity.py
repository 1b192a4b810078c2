"""Every model of a run has a unique, stable name (test ids, gating baselines, figures, report)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowcheck.gating import gate_name
from flowcheck.models.identity import ModelNameError, derived_name, model_refs, parse_model
from flowcheck.naming import file_stem


def test_two_checkpoints_with_the_same_folder_name_get_different_names(tmp_path: Path):
    a, b = tmp_path / "runA" / "checkpoint-500", tmp_path / "runB" / "checkpoint-500"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    name_a, name_b = derived_name(str(a)), derived_name(str(b))
    assert name_a.startswith("runA/checkpoint-500-") and name_b.startswith("runB/checkpoint-500-")
    assert name_a != name_b and gate_name(name_a) != gate_name(name_b)
    assert derived_name(str(a)) == name_a  # stable
    assert derived_name(str(a) + "/") == name_a and derived_name(str(a / ".." / "checkpoint-500")) == name_a
    # the old rule (the folder's basename) gave both the same gating baseline
    assert Path(str(a)).name == Path(str(b)).name


def test_registry_names_and_hub_ids_are_kept_and_aliases_win(tmp_path: Path):
    assert derived_name("tiny-video-ft") == "tiny-video-ft"
    assert derived_name("llava-hf/LLaVA-NeXT-Video-7B-hf") == "llava-hf/LLaVA-NeXT-Video-7B-hf"
    assert derived_name("byminji/LLaVA-NeXT-7B-Video-FT@pllava") == "byminji/LLaVA-NeXT-7B-Video-FT@pllava"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    assert derived_name(f"{folder}@pllava").endswith("@pllava")
    ref = parse_model(f"baseline={folder}")
    assert (ref.name, ref.source) == ("baseline", str(folder))
    assert gate_name("llava-hf/LLaVA-NeXT-Video-7B-hf") == "llava-hf--LLaVA-NeXT-Video-7B-hf"
    assert file_stem("a/b@pllava") == "a--b@pllava"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["a=x", "a=y"], r"both named 'a'.*--flow-model a=x --flow-model b=y"),
        (["x", "x"], "given twice"),
        (["=x"], "ALIAS=PATH"),
        (["bad alias=x"], "may use letters"),
        (["a@b=x"], "may use letters"),
        (["tiny-image=/other/ckpt"], "bundled model's name"),  # its expected failures would apply to another model
    ],
)
def test_colliding_or_malformed_names_are_refused(items, message):
    with pytest.raises(ModelNameError, match=message):
        model_refs(items)


def test_the_same_folder_twice_under_two_spellings_is_refused(tmp_path: Path, monkeypatch):
    (tmp_path / "run" / "ckpt").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNameError, match="both named"):
        model_refs(["run/ckpt", str(tmp_path / "run" / "ckpt")])
    assert [r.name for r in model_refs(["one=run/ckpt", f"two={tmp_path / 'run' / 'ckpt'}"])] == ["one", "two"]
