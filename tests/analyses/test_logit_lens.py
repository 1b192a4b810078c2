"""Logit lens: video residuals forced to keyword embeddings at chosen layers give the constructed hits."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_checkpoint import save_tiny_checkpoint, synthetic_sample

import flowcheck
from flowcheck.analyses.logit_lens import (
    KeywordError,
    keyword_hits,
    layer_bins,
    resolve_keywords,
    summarise_hits,
    video_top1,
)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    return flowcheck.load(str(save_tiny_checkpoint(tmp_path_factory.mktemp("lens"), layers=6)))


def test_hits_and_mean_layers_come_out_as_constructed(adapter):
    tokenizer = adapter.tokenizer
    keywords = resolve_keywords(tokenizer, {"spatial": ["red", "square"], "temporal": ["left", "grow"]})
    assert keywords.multi_token == []
    sample, frames = synthetic_sample("moving_direction")
    enc = adapter.encode(sample, frames)
    video = enc.layout.video
    embedding = adapter.decoder.input_embeddings().weight
    red, left = tokenizer.convert_tokens_to_ids("red"), tokenizer.convert_tokens_to_ids("left")
    neutral = tokenizer.convert_tokens_to_ids("the")
    embeds = enc.inputs.inputs_embeds.clone()
    embeds[0, video.start : video.end] = embedding[neutral].detach() * 50  # layer 0 reads no keyword
    enc.inputs.inputs_embeds = embeds

    def force(token_id):
        def hook(_module, _args, output):
            out = output.clone()
            out[0, video.start : video.end] = embedding[token_id] * 50  # dominates every other row's dot product
            return out

        return hook

    # layer outputs 0-2 read "red", 3-5 read "left"; the lens reads the input of layer l (= output of l-1)
    hooks = [adapter.decoder.layers[i].register_forward_hook(force(red if i < 3 else left)) for i in range(6)]
    try:
        top1 = video_top1(adapter.decoder, enc)
    finally:
        for h in hooks:
            h.remove()
    assert top1.shape == (6, len(video))
    assert (top1[0] == neutral).all() and (top1[1:4] == red).all() and (top1[4:] == left).all()
    hits = keyword_hits(top1, keywords)
    positions = len(video)
    assert hits["spatial"][keywords.token_ids["spatial"].index(red)] == [0, positions, positions, positions, 0, 0]
    summary = summarise_hits(hits, bin_size=2, num_layers=6)
    assert summary.bins == [(0, 2), (2, 4), (4, 6)]
    assert summary.mean_layer["spatial"] == pytest.approx(2.0)
    assert summary.mean_layer["temporal"] == pytest.approx(4.5)
    assert summary.frequencies["spatial"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert summary.frequencies["temporal"] == pytest.approx([0.0, 0.0, 1.0])
    assert summary.kept_keywords == {"spatial": 1, "temporal": 1}


def test_bins_do_not_overlap_and_multi_token_words_are_explicit(adapter):
    assert layer_bins(10, 4) == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(KeywordError, match=r"share tokens: \['red'\] in 'a' and \['red'\] in 'b'"):
        resolve_keywords(adapter.tokenizer, {"a": ["red"], "b": ["red"]})

    class Splitting:
        unk_token_id = None

        def __call__(self, word, add_special_tokens=False):
            return type("E", (), {"input_ids": [ord(c) for c in word]})()

    kw = resolve_keywords(Splitting(), {"spatial": ["cup", "x"]})
    assert kw.multi_token == ["cup"] and kw.token_ids["spatial"] == sorted([ord("c"), ord("x")])
    assert resolve_keywords(Splitting(), {"spatial": ["cup", "x"]}, multi_token="skip").token_ids == {"spatial": [120]}
    np.testing.assert_array_equal(np.asarray(summarise_hits({"s": [[0, 0, 0]]}, 1, 3).frequencies["s"]), [0, 0, 0])


def test_a_list_with_no_word_in_the_vocabulary_is_named_and_summaries_survive_empty_lists():
    class Known:
        unk_token_id = 0

        def __call__(self, word, add_special_tokens=False):
            return type("E", (), {"input_ids": [7] if word == "red" else [0]})()

    with pytest.raises(KeywordError, match=r"'temporal'.*\(temporal: before, after\)"):
        resolve_keywords(Known(), {"spatial": ["red"], "temporal": ["before", "after"]})
    # a list without keyword ids used to raise StopIteration here (the number of layers came from its rows)
    summary = summarise_hits({"spatial": [], "temporal": [[0, 2, 0]]}, 1, 3)
    assert np.isnan(summary.mean_layer["spatial"]) and summary.mean_layer["temporal"] == 1.0
    assert summary.frequencies["spatial"] == [0.0, 0.0, 0.0]
