"""Benchmark at the user's scale: the full knockout sweep on a 7B-shaped LLaVA-NeXT-Video, on one CUDA device.

    python benchmarks/bench_gpu.py                       # needs a CUDA GPU (H100/H200 class: under 5 minutes)
    python benchmarks/bench_gpu.py --device cpu --tiny   # the same code path on a tiny model (what a test runs)

Random weights, bf16, the real language-model shape of LLaVA-NeXT-Video-7B (Llama/Vicuna-7B: 32 layers,
hidden 4096, 32 heads, intermediate 11008) behind a CLIP ViT-L/14-336-shaped vision tower; 8 frames x 144
video tokens plus text, n ~ 1,270. Per sample, all 11 paper conditions x 32 windows (width 9) run:
(a) the authors' protocol: eager attention, dense additive masks, a full VLM forward per knockout
    (timed on a subset of windows and extrapolated per knockout: the output says so);
(b) the same protocol with sdpa, every knockout;
(c) flowcheck's fast engine, sdpa backend; (d) the same with the flex backend (FlexAttention block masks;
    its time includes torch.compile's compilation).
Prints per-method seconds and peak CUDA memory (torch.cuda.max_memory_allocated, reset before each method),
per-group shares of the FLOP bound, and the summary line of bench_sweep.py. CI never runs it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sweep import GROUPS, VIDEO_TOKEN, video_llm_config
from reference_authors import authors_last_probs

from flowcheck.edges import paper_conditions, sweep_windows
from flowcheck.engine import condition_knockout, find_decoder
from flowcheck.engine.attention import backend
from flowcheck.engine.fast import FastScorer
from flowcheck.layout import synthetic_layout
from flowcheck.models.capture import capture_decoder_inputs, lm_inputs_from_capture

METHODS = ("(a) authors: eager, dense", "(b) authors' protocol, sdpa", "(c) flowcheck, sdpa", "(d) flowcheck, flex")
NO_GPU = (
    "bench_gpu.py needs a CUDA device and none is available (torch.cuda.is_available() is False). "
    "It measures flowcheck on a 7B-shaped model in bf16 on one GPU (H100/H200 class, under 5 minutes). "
    "Run `python benchmarks/bench_gpu.py --device cpu --tiny` to exercise the same code on CPU."
)


def build(device: torch.device, tiny: bool, seed: int = 0):
    """A random-weight LLaVA-NeXT-Video (7B language-model shape unless tiny) on `device`, in eval mode."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoForConditionalGeneration

    torch.manual_seed(seed)
    if tiny:
        frames, image, patch = 2, 48, 4
        vision = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=48,
            patch_size=4,
        )
        text = dict(hidden_size=32, intermediate_size=88, num_hidden_layers=4, num_attention_heads=4)
        dtype = torch.float32
    else:  # CLIP ViT-L/14-336 and Vicuna-7B shapes
        frames, image, patch = 8, 336, 14
        vision = CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=336,
            patch_size=14,
            projection_dim=768,
        )
        text = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
        dtype = torch.bfloat16
    text_config = LlamaConfig(
        vocab_size=32064, num_key_value_heads=text["num_attention_heads"], max_position_embeddings=4096, **text
    )
    config = video_llm_config(vision, text_config)
    with torch.device(device):
        model = LlavaNextVideoForConditionalGeneration._from_config(config, dtype=dtype).eval()
    side = image // patch // 2
    layout = synthetic_layout(
        system=40,
        frames=frames,
        tokens_per_frame=side * side,
        between=4,
        question_prefix=3,
        question_only=14,
        options_header=4,
        option_lengths=[6, 6, 6, 6],
        post=16,
    )
    return model, layout, frames, image, dtype


def sample_inputs(layout, frames: int, image: int, dtype, device, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VIDEO_TOKEN, (1, layout.n), generator=gen)
    ids[0, layout.video.start : layout.video.end] = VIDEO_TOKEN
    pixels = torch.randn(1, frames, 3, image, image, generator=gen)
    return {"input_ids": ids.to(device), "pixel_values_videos": pixels.to(device, dtype)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model (4 layers, 2 frames) for CPU smoke runs")
    parser.add_argument("--samples", type=int, default=2, help="samples (default 2)")
    parser.add_argument(
        "--authors-windows", type=int, default=4, help="windows per condition timed for (a) (default 4)"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 2
    model, layout, frames, image, dtype = build(device, args.tiny)
    decoder = find_decoder(model)
    layers = decoder.num_layers
    windows = sweep_windows(layers, width=9 if layers >= 16 else 3)
    conditions = list(paper_conditions().values())
    pairs = [(c, w) for c in conditions for w in windows]
    step = max(1, len(windows) // args.authors_windows)
    subset = [(c, w) for c in conditions for w in windows[::step]]
    group_of = {c: g for g, names in GROUPS.items() for c in names}
    methods = METHODS
    seconds = dict.fromkeys(methods, 0.0)
    peak = dict.fromkeys(methods, 0.0)
    groups = {m: dict.fromkeys([*GROUPS, "baseline"], 0.0) for m in methods}
    diffs = dict.fromkeys(methods, 0.0)  # max |p - p(b)| over the knockouts both ran
    print(
        f"model: {layers} layers, hidden {decoder.config.hidden_size}, n={layout.n} tokens, {dtype}, {device}; "
        f"{len(pairs)} knockouts per sample (11 conditions x {len(windows)} windows), {args.samples} sample(s)",
        flush=True,
    )
    for s in range(args.samples):
        inputs = sample_inputs(layout, frames, image, dtype, device, seed=100 + s)
        with torch.inference_mode():
            lm_inputs = lm_inputs_from_capture(capture_decoder_inputs(model, decoder, inputs))
        probs: dict[str, dict] = {m: {} for m in methods}
        # (a) on a subset of windows, extrapolated per knockout of each group
        with torch.device(device):  # the reference builds its dense masks with factory defaults
            base = authors_last_probs(model, inputs, [], [], "eager")
            predicted = int(base.argmax())
            for attention, method, chosen in (("eager", methods[0], subset), ("sdpa", methods[1], pairs)):
                _reset_peak(device)
                per = dict.fromkeys(GROUPS, 0.0)
                for condition, window in chosen:
                    _sync(device)
                    t = time.perf_counter()
                    rects = [(q.positions(), k.positions()) for q, k in condition.rectangles(layout)]
                    p = authors_last_probs(model, inputs, rects, window.layers, attention)
                    probs[method][(condition.name, window.label())] = float(p[predicted])
                    _sync(device)
                    per[group_of[condition.name]] += time.perf_counter() - t
                scale = {g: sum(group_of[c.name] == g for c, _ in pairs) for g in GROUPS}
                chosen_count = {g: sum(group_of[c.name] == g for c, _ in chosen) for g in GROUPS}
                for g in GROUPS:
                    groups[method][g] += per[g] * scale[g] / chosen_count[g]
                peak[method] = max(peak[method], _peak_mb(device))
        for method, name in ((methods[2], "sdpa"), (methods[3], "flex")):
            _reset_peak(device)
            with backend(name):
                _sync(device)
                t = time.perf_counter()
                scorer = FastScorer(decoder, lm_inputs)
                if not scorer.ok:
                    raise RuntimeError("the fast engine's self-check failed on the benchmark model")
                _sync(device)
                groups[method]["baseline"] += time.perf_counter() - t
                for g in GROUPS:
                    chosen = [(c, w) for c, w in pairs if group_of[c.name] == g]
                    _sync(device)
                    t = time.perf_counter()
                    _, scored = scorer.score([condition_knockout(c, w, layout) for c, w in chosen], [predicted])
                    _sync(device)
                    groups[method][g] += time.perf_counter() - t
                    for (c, w), sc in zip(chosen, scored, strict=True):
                        probs[method][(c.name, w.label())] = float(sc.probs[0])
            peak[method] = max(peak[method], _peak_mb(device))
            del scorer
        reference = probs[methods[1]]
        for method in methods:
            diffs[method] = max(diffs[method], max(abs(p - reference[k]) for k, p in probs[method].items()))
        print(f"sample {s + 1}/{args.samples} done", flush=True)
    for m in methods:
        seconds[m] = sum(groups[m].values())
    bound = flop_bound(layout, pairs, layers)
    print(f"\n(a) timed on {len(subset)} of {len(pairs)} knockouts per sample and extrapolated per group (estimate)")
    print(f"{'method':<30}{'seconds':>10}{'peak MB':>10}")
    for m in methods:
        print(f"{m:<30}{seconds[m]:>10.2f}{round(peak[m]) if device.type == 'cuda' else 'n/a':>10}")
    print(f"\n{'group':<16}{'a/c':>8}{'b/c':>8}{'b/d':>8}{'FLOP bound':>12}{'b/c of bound':>14}")
    a, b, c, d = methods
    bound_seconds = 0.0
    for g in GROUPS:
        bc = groups[b][g] / groups[c][g]
        bound_seconds += groups[b][g] / bound[g]
        print(
            f"{g:<16}{groups[a][g] / groups[c][g]:>8.1f}{bc:>8.1f}{groups[b][g] / groups[d][g]:>8.1f}"
            f"{bound[g]:>12.1f}{bc / bound[g]:>13.0%}"
        )
    print(f"baseline forward + self-check: (c) {groups[c]['baseline']:.2f} s, (d) {groups[d]['baseline']:.2f} s")
    print(
        f"\nmax |p - p(b)|: (a) {diffs[a]:.2e} on its subset, (c) {diffs[c]:.2e}, (d) {diffs[d]:.2e} "
        f"({'bf16: kernels differ' if dtype == torch.bfloat16 else 'fp32'})"
    )
    print(
        f"ratio_authors={seconds[a] / seconds[c]:.2f} ratio_sdpa={seconds[b] / seconds[c]:.2f} "
        f"max_abs_diff={diffs[c]:.3e} peak_mem_ratio={peak[c] / max(peak[b], 1e-9) if peak[b] else float('nan'):.2f} "
        f"sweep_bound_share={bound_seconds / seconds[c]:.2f} flex_over_sdpa={seconds[d] / seconds[c]:.2f}"
    )
    return 0


def flop_bound(layout, pairs, layers: int) -> dict[str, float]:
    """Per group, full-forward work over the work of recomputing only affected rows from each window's first layer."""
    n = layout.n
    full, minimal = dict.fromkeys(GROUPS, 0.0), dict.fromkeys(GROUPS, 0.0)
    group_of = {c: g for g, names in GROUPS.items() for c in names}
    for condition, window in pairs:
        ko = condition_knockout(condition, window, layout)
        full[group_of[condition.name]] += n * layers
        minimal[group_of[condition.name]] += (n - ko.earliest_query(n)) * (layers - ko.first_layer)
    return {g: full[g] / minimal[g] for g in GROUPS}


if __name__ == "__main__":
    sys.exit(run())
