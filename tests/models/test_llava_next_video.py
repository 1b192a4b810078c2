"""LLaVA-NeXT-Video adapter: a tiny checkpoint of the real class, saved and loaded through flowcheck.load."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_checkpoint import save_tiny_checkpoint, synthetic_sample

import flowcheck
from flowcheck.edges import make_window, paper_conditions
from flowcheck.engine import condition_knockout, knockout
from flowcheck.models import AdapterError
from flowcheck.models.hf_native import letter_token_ids


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    folder = save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llava-next-video"))
    return flowcheck.load(str(folder))


def decode(adapter, ids, span) -> str:
    return adapter.tokenizer.decode(ids[span.start : span.end])


def test_loads_through_the_config_model_type(adapter):
    assert adapter.family == "llava-next-video" and adapter.num_layers == 4
    assert adapter.tokens_per_frame == 4 and len(adapter.fingerprint()) == 24


def test_layout_spans_are_where_the_template_puts_them(adapter):
    sample, frames = synthetic_sample("moving_direction")
    enc = adapter.encode(sample, frames)
    layout, ids = enc.layout, enc.input_ids
    video_positions = (ids == adapter.model.config.video_token_id).nonzero().flatten().tolist()
    assert video_positions == list(layout.video.positions())  # the model's own placeholder mask
    assert len(layout.frames) == 8 and all(len(f) == 4 for f in layout.frames)
    assert decode(adapter, ids, layout.question_only) == sample.question.replace("?", " ?")
    for i, option in enumerate(sample.options):
        assert decode(adapter, ids, layout.options[i]) == f"( {'AB'[i]} ) {option}"
    assert decode(adapter, ids, layout.question).startswith("Question :")
    assert adapter.tokenizer.decode(ids[-1:]) == "(" and layout.last.start == len(ids) - 1
    assert decode(adapter, ids, layout.post).endswith("Best option :")
    assert layout.system.end == layout.video.start
    assert list(enc.option_ids) == [adapter.tokenizer.convert_tokens_to_ids(x) for x in "AB"]


def test_decoder_inputs_reproduce_the_vlm_forward(adapter):
    sample, frames = synthetic_sample("action_sequence")
    enc = adapter.encode(sample, frames)
    rendered = adapter.render(sample)
    inputs = adapter.processor(text=rendered.text, videos=[list(frames)], return_tensors="pt")
    with torch.no_grad():
        full = adapter.model(**inputs).logits[0, -1]
        mask = torch.ones(1, enc.inputs.n, dtype=torch.long)
        hidden = adapter.decoder.module(**enc.inputs.kwargs(), attention_mask=mask).last_hidden_state
        via_decoder = adapter.decoder.lm_head(hidden[0, -1])
    assert (full - via_decoder).abs().max() <= 1e-5


def test_knocking_out_video_to_last_changes_only_the_last_row(adapter):
    sample, frames = synthetic_sample("scene_transition")
    enc = adapter.encode(sample, frames)
    ko = condition_knockout(paper_conditions()["video->last"], make_window(4, 1, 3), enc.layout)
    mask = torch.ones(1, enc.inputs.n, dtype=torch.long)
    with torch.no_grad():
        base = adapter.decoder.module(**enc.inputs.kwargs(), attention_mask=mask).last_hidden_state[0]
        with knockout(adapter.model, ko.plan[1], ko.plan):
            knocked = adapter.decoder.module(**enc.inputs.kwargs(), attention_mask=mask).last_hidden_state[0]
    changed = (base != knocked).any(-1).nonzero().flatten().tolist()
    assert changed == [enc.layout.n - 1]


def test_unknown_architectures_name_the_supported_families(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba_vlm"}))
    with pytest.raises(AdapterError, match=r"no flowcheck adapter for model_type 'mamba_vlm'.*llava-next-video"):
        flowcheck.load(str(tmp_path))
    with pytest.raises(AdapterError, match="no checkpoint folder"):
        flowcheck.load(str(tmp_path / "missing"))


def test_option_letters_must_be_single_known_tokens(adapter):
    assert len(letter_token_ids(adapter.tokenizer, 4)) == 4
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({"<unk>": 0, "Best": 1, "option": 2, ":": 3, "(": 4, "A": 5}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")
    with pytest.raises(AdapterError, match="option letter 'B' is not a single token"):
        letter_token_ids(tokenizer, 2)
