"""Early exit: a tiny model constructed to decide at a known layer exits there; the exit rule on constructed
predictions; the decoder FLOP count by hand and against torch's FlopCounterMode; no extra forward in a run."""

from __future__ import annotations

import pytest
import torch
from tiny_checkpoint import save_tiny_checkpoint, synthetic_sample
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import Gemma2Config, LlamaConfig, LlamaModel, MistralConfig

import flowcheck
from flowcheck.analyses.base import ReportInput
from flowcheck.analyses.early_exit import (
    NO_OPTION,
    EarlyExit,
    check_settings,
    early_exit_spec,
    early_exit_summary,
    layer_predictions,
    settled_layers,
)
from flowcheck.analyses.flops import (
    DecoderShape,
    FlopCountError,
    attention_pairs,
    decoder_flops,
    gated_mlp,
    layer_flops,
)
from flowcheck.analyses.hidden import last_position_states
from flowcheck.analyses.runner import AnalysisPlan, run_analyses
from flowcheck.analyses.summary import summarise
from flowcheck.cache import ResultCache
from flowcheck.data.folder import load_tvbench_layout
from flowcheck.data.synth import write_benchmark

LAYERS = 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("exit"), layers=LAYERS)


def decided_at(adapter, k: int):
    """The tiny model made to read option letter 0 at layers < k and letter 1 from layer k on (0-based layer outputs).

    Every layer's residual contribution is zeroed (o_proj and down_proj weights), so the residual stays the input
    embedding; the last position's embedding is 5 e0, and the letters' lm_head rows are 100 e_j with a final norm of
    ones, so the read-out is letter 0 at every layer, and letter 0 is also the full-vocabulary argmax. A forward hook
    on layer k adds 5 (e1 - e0) at the last position: from layer k on the read-out is letter 1."""
    decoder = adapter.decoder
    sample, frames = synthetic_sample("moving_direction")
    encoded = adapter.encode(sample, frames)
    with torch.no_grad():
        for layer in decoder.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        decoder.norm.weight.fill_(1.0)
        d = decoder.lm_head.weight.shape[1]
        basis = torch.eye(d)
        for j, token in enumerate(encoded.option_ids):
            decoder.lm_head.weight[token] = 100 * basis[j]
        embeds = encoded.inputs.inputs_embeds.clone()
        embeds[0, -1] = 5 * basis[0]
        encoded.inputs.inputs_embeds = embeds
    shift = 5 * (basis[1] - basis[0])

    def hook(_module, _args, output):
        out = (output[0] if isinstance(output, tuple) else output).clone()
        out[0, -1] += shift
        return (out, *output[1:]) if isinstance(output, tuple) else out

    return encoded, decoder.layers[k].register_forward_hook(hook)


@pytest.mark.parametrize("k", [0, 3, LAYERS - 1])
def test_a_model_constructed_to_decide_at_layer_k_exits_at_k(checkpoint, k):
    adapter = flowcheck.load(str(checkpoint))  # fresh weights: the construction edits them
    encoded, handle = decided_at(adapter, k)
    try:
        predicted = layer_predictions(adapter.decoder, encoded)
    finally:
        handle.remove()
    assert predicted["options"] == [0] * k + [1] * (LAYERS - k)
    assert predicted["vocabulary"] == predicted["options"]
    assert settled_layers(torch.tensor([predicted["options"]]).numpy()).tolist() == [k]
    flops = [decoder_flops(DecoderShape.from_config(adapter.decoder.config, True), encoded.inputs.n)]
    true_index = encoded.layout.true_index
    s = early_exit_summary([predicted["options"]], [true_index], flops, agreement=0.95)
    assert s.exit_layer == k and s.agreement_pct == 100.0 and s.settled_pct == 100.0
    # equal layers (no sliding window): the layers after k are (L - 1 - k) / L of the decoder FLOPs
    assert s.flops_saved_pct == pytest.approx((LAYERS - 1 - k) / LAYERS * 100)
    assert s.exit_accuracy == s.full_accuracy == (100.0 if true_index == 1 else 0.0)


def test_the_last_layer_reads_the_models_own_logits(checkpoint):
    """The read-out of the last layer is the model's prediction (its logits at the last position)."""
    adapter = flowcheck.load(str(checkpoint))
    sample, frames = synthetic_sample("scene_transition")
    encoded = adapter.encode(sample, frames)
    predicted = layer_predictions(adapter.decoder, encoded)
    with torch.inference_mode():
        out = adapter.decoder.owner(inputs_embeds=encoded.inputs.inputs_embeds, **encoded.inputs.extra)
    logits = out.logits[0, -1]
    letters = list(encoded.option_ids)
    assert predicted["options"][-1] == int(logits[letters].argmax())
    top = int(logits.argmax())
    assert predicted["vocabulary"][-1] == (letters.index(top) if top in letters else NO_OPTION)
    # shared states: kept for the same embeddings, recomputed for new ones
    first = last_position_states(adapter.decoder, encoded.inputs, reuse=True)
    assert last_position_states(adapter.decoder, encoded.inputs, reuse=True) is first
    assert last_position_states(adapter.decoder, encoded.inputs) is not first  # without reuse: a forward of its own
    encoded.inputs.inputs_embeds = encoded.inputs.inputs_embeds * 2
    again = last_position_states(adapter.decoder, encoded.inputs, reuse=True)
    assert again is not first and not torch.equal(again[1], first[1])


def test_settling_counts_only_predictions_that_stay():
    # sample 0 agrees with its final 1 at layer 1, changes at layer 2 and agrees again from layer 3: settled at 3
    choices = [[0, 1, 2, 1, 1], [2, 2, 2, 2, 2], [0, 0, 0, 0, 1]]
    assert settled_layers(torch.tensor(choices).numpy()).tolist() == [3, 0, 4]


def _samples(settle: list[int], layers: int = 6) -> list[list[int]]:
    """Samples predicting option 1 before their settled layer and option 0 from it on (final 0)."""
    return [[1] * s + [0] * (layers - s) for s in settle]


def test_the_exit_layer_is_where_the_agreement_share_is_first_reached():
    # 19 of 20 settled at layer 2, one at layer 5: 19 / 20 = 0.95 >= 0.95 at layer 2
    s = early_exit_summary(_samples([2] * 19 + [5]), [0] * 20, None, agreement=0.95)
    assert s.exit_layer == 2 and s.settled_pct == 95.0 and s.agreement_pct == 95.0
    assert s.flops_saved_pct is None
    # 18 of 20 at layer 2: 90 % < 95 % until layer 5 (the last), where everything has settled
    s = early_exit_summary(_samples([2] * 18 + [5, 5]), [0] * 20, None, agreement=0.95)
    assert s.exit_layer == 5 and s.settled_by_layer == [0.0, 0.0, 90.0, 90.0, 90.0, 100.0]
    # a lower share exits earlier; exit accuracy counts the prediction at the exit layer against the truth
    s = early_exit_summary(_samples([2] * 18 + [5, 5]), [0] * 10 + [1] * 10, None, agreement=0.9)
    assert s.exit_layer == 2
    assert s.full_accuracy == 50.0  # final prediction 0 for all, true option 0 for half
    # at layer 2: samples 0-17 predict 0 (0-9 right, 10-17 wrong), samples 18-19 still predict 1 (right): 12 of 20
    assert s.exit_accuracy == 60.0


def test_agreement_at_the_exit_layer_includes_samples_that_change_again():
    # sample 0 equals its final at layer 1 but leaves it at layer 2; the other 19 settle at layer 1
    choices = [[1, 0, 1, 0, 0, 0], *_samples([1] * 19)]
    s = early_exit_summary(choices, [0] * 20, None, agreement=0.95)
    assert s.exit_layer == 1 and s.agreement_pct == 100.0 and s.settled_pct == 95.0


def test_flops_saved_weighs_samples_by_their_cost():
    # two samples exit after layer 0 of 2: the second layer costs 1 and 3 of totals 2 and 4
    s = early_exit_summary([[0, 0], [0, 0]], [0, 0], [[1, 1], [1, 3]], agreement=1.0)
    assert s.exit_layer == 0 and s.flops_saved_pct == pytest.approx(4 / 6 * 100)
    with pytest.raises(ValueError, match=r"early exit needs predictions \[samples, layers\]"):
        early_exit_summary([], [], None, agreement=0.95)


def test_settings_are_data_and_checked():
    spec = early_exit_spec()
    assert spec == {"agreement": 0.95, "prediction": "options"}
    with pytest.raises(ValueError, match=r"agreement must be a share in \(0, 1\]"):
        check_settings(95, "options")
    with pytest.raises(ValueError, match="prediction must be one of options, vocabulary"):
        check_settings(0.95, "letters")


# --- decoder FLOPs


def tiny_shape(**kw) -> DecoderShape:
    base = dict(
        hidden_size=8,
        num_heads=2,
        num_kv_heads=1,
        head_dim=4,
        intermediate_size=16,
        gated_mlp=True,
        windows=(None, 2),
    )
    return DecoderShape(**{**base, **kw})


def test_layer_flops_by_hand():
    shape = tiny_shape()
    n = 3
    # Q 2*3*8*8 = 384; K, V 2 * 2*3*8*4 = 384; O 2*3*8*8 = 384 -> 1152
    # causal pairs 3*4/2 = 6: logits 2*8*6 = 96, values 96 -> 192
    # gated MLP 3 * 2*3*8*16 = 2304
    assert layer_flops(shape, 0, n) == 1152 + 192 + 2304 == 3648
    # layer 1 has a window of 2: pairs 1 + 2 + 2 = 5 -> attention 2 * 2*8*5 = 160
    assert layer_flops(shape, 1, n) == 1152 + 160 + 2304
    # an ungated MLP has two matrices: 2 * 2*3*8*16 = 1536
    assert layer_flops(tiny_shape(gated_mlp=False), 0, n) == 1152 + 192 + 1536
    assert decoder_flops(shape, n) == [3648, 3616]


@pytest.mark.parametrize(("n", "window"), [(0, None), (1, None), (7, None), (7, 3), (7, 7), (7, 9), (5, 1)])
def test_attention_pairs_match_brute_force(n, window):
    brute = sum(1 for q in range(n) for k in range(q + 1) if window is None or q - k < window)
    assert attention_pairs(n, window) == brute


def test_the_count_equals_torchs_flop_counter_on_a_real_decoder():
    """Independent reference: torch.utils.flop_counter counts every matmul of an eager LlamaModel forward. Eager
    attention multiplies all n x n (query, key) pairs before masking, so the reference is the count with n^2 pairs."""
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    model = LlamaModel(config).eval()
    n = 7
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=torch.randint(0, 64, (1, n)))
    counts = counter.get_flop_counts()
    shape = DecoderShape.from_config(config, gated_mlp(model.layers[0]))
    assert shape.gated_mlp and shape.num_kv_heads == 2 and shape.head_dim == 8
    for layer in range(2):
        assert sum(counts[f"LlamaModel.layers.{layer}"].values()) == layer_flops(shape, layer, n, pairs=n * n)
    # causal attention computes n (n + 1) / 2 of the n^2 pairs: the difference is in the logits and values only
    full, causal = layer_flops(shape, 0, n, pairs=n * n), layer_flops(shape, 0, n)
    assert full - causal == 2 * 2 * 32 * (n * n - n * (n + 1) // 2)


def test_windows_come_from_the_config():
    gemma = DecoderShape.from_config(
        Gemma2Config(num_hidden_layers=4, sliding_window=16, hidden_size=64, num_attention_heads=2, head_dim=32),
        True,
    )
    assert gemma.windows == (16, None, 16, None) and gemma.head_dim == 32
    assert DecoderShape.from_config(MistralConfig(num_hidden_layers=2, sliding_window=8), True).windows == (8, 8)
    assert DecoderShape.from_config(LlamaConfig(num_hidden_layers=3), True).windows == (None, None, None)
    shape = DecoderShape.from_config(LlamaConfig(num_hidden_layers=3), False)
    assert DecoderShape.from_dict(shape.to_dict()) == shape


def test_uncountable_decoders_are_refused_by_name():
    moe = LlamaConfig(num_hidden_layers=2)
    moe.num_local_experts = 8
    with pytest.raises(FlopCountError, match="num_local_experts=8: a mixture-of-experts MLP"):
        DecoderShape.from_config(moe, True)

    class Layer(nn.Module):
        def __init__(self, **children):
            super().__init__()
            self.mlp = nn.Module()
            for name, module in children.items():
                setattr(self.mlp, name, module)

    assert gated_mlp(Layer(gate_proj=nn.Linear(2, 2), up_proj=nn.Linear(2, 2), down_proj=nn.Linear(2, 2)))
    assert not gated_mlp(Layer(fc1=nn.Linear(2, 2), fc2=nn.Linear(2, 2)))
    with pytest.raises(FlopCountError, match=r"has \['experts', 'router'\]: neither a gated"):
        gated_mlp(Layer(router=nn.Linear(2, 2), experts=nn.ModuleList()))


# --- in a run: no forward of its own, consistent with the baseline, summarised and reported


def test_early_exit_costs_no_forward_beside_answer_probability(checkpoint, tmp_path):
    """Forwards that return hidden states (the knockout sweep's do not, and its count depends on its batching)."""
    adapter = flowcheck.load(str(checkpoint))
    bench = tmp_path / "bench"
    write_benchmark(bench, seed=1, per_task=1, tasks=["moving_direction"])
    samples, _ = load_tvbench_layout(bench, dataset="synthetic")
    settings = {"sweep": {"conditions": ("cross_frame",)}}

    def forwards(names: tuple[str, ...], cache: str):
        calls = []

        def count(_module, _args, kwargs):
            calls.extend([1] if kwargs.get("output_hidden_states") else [])

        handle = adapter.decoder.module.register_forward_pre_hook(count, with_kwargs=True)
        try:
            plan = AnalysisPlan(names, settings=settings)
            results = run_analyses(adapter, samples, plan, ResultCache(tmp_path / cache), dataset="synthetic")
        finally:
            handle.remove()
        return len(calls), results

    assert forwards(("sweep", "answer_probability"), "a")[0] == len(samples)  # one per sample
    both, results = forwards(("sweep", "answer_probability", "early_exit"), "b")
    assert both == len(samples)  # the read-out reuses answer_probability's forward
    assert forwards(("sweep", "early_exit"), "c")[0] == len(samples)  # or makes it when that analysis does not run
    for baseline in results.baselines:
        stored = results.results["early_exit"][baseline.sample_id]
        assert stored["vocabulary"][-1] == baseline.predicted  # the last layer is the model's own answer
        probs = baseline.option_probs
        assert stored["options"][-1] == probs.index(max(probs))
        assert stored["n"] == baseline.token_layout.n and stored["decoder"]["gated_mlp"] is True
    s = summarise(results, "moving_direction").get("early_exit")
    assert s.n == len(samples) and 0 <= s.exit_layer < LAYERS and s.prediction == "options"
    task = results.for_task("moving_direction")
    right = [task.results["early_exit"][b.sample_id]["options"][-1] == b.true_index for b in task.baselines]
    assert s.full_accuracy == 100.0 * sum(right) / len(samples)
    run = ReportInput("tiny", "synthetic", LAYERS, {"moving_direction": {"early_exit": s}, "all": {}}, [])
    table = EarlyExit.report([run]).tables[0]
    assert table.rows == [
        [
            "tiny",
            "synthetic",
            "moving_direction",
            f"{s.exit_layer + 1} of {LAYERS}",
            f"{s.agreement_pct:.1f}",
            f"{s.settled_pct:.1f}",
            f"{s.exit_accuracy:.1f}",
            f"{s.full_accuracy:.1f}",
            f"{s.flops_saved_pct:.1f}",
            len(samples),
        ]
    ]
    assert "forced choice among the option letters" in table.intro and "95%" in table.intro
