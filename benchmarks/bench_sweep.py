"""Benchmark: the full eleven-condition, all-window knockout sweep, three ways, on the same inputs.

    python benchmarks/bench_sweep.py            # realistic shape: 16 layers, hidden 256, 1152 video tokens
    python benchmarks/bench_sweep.py --quick    # reduced, under a minute

(a) the authors' protocol: eager attention, dense additive (1, H, n, n) masks, a full VLM forward
    (vision tower included) per condition and window, batch 1;
(b) the same with sdpa;
(c) flowcheck: encode once, fast engine (prefix and layer reuse, staggered batched rows).
The FLOP bound of a group is the work of (b) over the work of recomputing only each knockout's affected
rows from its window's first layer; b's time over the bound is the group's bound time, and
`sweep_bound_share` is the sum of the groups' bound times over flowcheck's total (both from this run).
Each runs in its own subprocess so peak memory (RSS high-water mark above the process's state
after building the model) is measured per method. Ratios are of wall times in the same run.
The last line is machine readable.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from reference_authors import authors_last_probs  # noqa: E402

from flowcheck.edges import condition_groups, paper_conditions, sweep_windows  # noqa: E402
from flowcheck.engine import condition_knockout, find_decoder  # noqa: E402
from flowcheck.engine.fast import FastScorer  # noqa: E402
from flowcheck.layout import synthetic_layout  # noqa: E402
from flowcheck.models.capture import capture_decoder_inputs, lm_inputs_from_capture  # noqa: E402

GROUPS = {
    "cross-frame": ["cross_frame"],
    "question-level": ["video->question", "video->question_only", "question_only->true_option", "video->true_option"],
    "-> last": [*condition_groups()["question-and-options-to-last"], "video->last", "question->last", "last->last"],
}
VIDEO_TOKEN = 1000


def video_llm_config(vision, text):
    """The LLaVA-NeXT-Video config both benchmarks use around a CLIP and a Llama config (2x2 pooling)."""
    from transformers import LlavaNextVideoConfig

    return LlavaNextVideoConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        video_token_id=VIDEO_TOKEN,
        image_token_id=VIDEO_TOKEN + 1,
        spatial_pool_stride=2,
        vision_feature_layer=-1,
    )


def build(quick: bool, seed: int = 0):
    """A random LLaVA-NeXT-Video: small CLIP (24x24 patches pooled to 12x12) and a Llama LM."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoForConditionalGeneration

    torch.manual_seed(seed)
    layers, hidden, frames = (8, 128, 4) if quick else (16, 256, 8)
    vision = CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=96, patch_size=4
    )
    text = LlamaConfig(
        vocab_size=1024,
        hidden_size=hidden,
        intermediate_size=hidden * 11 // 4,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 32,
        num_key_value_heads=hidden // 32,
        max_position_embeddings=2048,
    )
    model = LlavaNextVideoForConditionalGeneration(video_llm_config(vision, text)).eval()
    layout = synthetic_layout(
        system=40,
        frames=frames,
        tokens_per_frame=144,
        between=4,
        question_prefix=3,
        question_only=14,
        options_header=4,
        option_lengths=[6, 6, 6, 6],
        post=16,
    )
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VIDEO_TOKEN, (1, layout.n), generator=gen)
    ids[0, layout.video.start : layout.video.end] = VIDEO_TOKEN
    pixels = torch.randn(1, frames, 3, 96, 96, generator=gen)
    return model, layout, {"input_ids": ids, "pixel_values_videos": pixels}


def knockout_list(layout, layers: int, quick: bool):
    windows = sweep_windows(layers, width=9 if layers >= 16 else 3)
    if quick:
        windows = windows[::2]
    return [(c, w) for c in paper_conditions().values() for w in windows]


def run_method(method: str, quick: bool, out: Path) -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    model, layout, inputs = build(quick)
    decoder = find_decoder(model)
    pairs = knockout_list(layout, decoder.num_layers, quick)
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    per_group: dict[str, float] = {g: 0.0 for g in GROUPS}
    group_of = {c: g for g, names in GROUPS.items() for c in names}
    probs = []
    start = time.perf_counter()
    if method in ("authors", "sdpa"):
        attention = "eager" if method == "authors" else "sdpa"
        base = authors_last_probs(model, inputs, [], [], attention)
        predicted = int(base.argmax())
        for condition, window in pairs:
            t = time.perf_counter()
            rects = [(q.positions(), k.positions()) for q, k in condition.rectangles(layout)]
            p = authors_last_probs(model, inputs, rects, window.layers, attention)
            probs.append(float(p[predicted]))
            per_group[group_of[condition.name]] += time.perf_counter() - t
    else:
        with torch.inference_mode():
            lm_inputs = lm_inputs_from_capture(capture_decoder_inputs(model, decoder, inputs))
        # one baseline forward and self-check for the whole sweep (as score() does per sample), timed on its own;
        # each group then reuses it
        t = time.perf_counter()
        scorer = FastScorer(decoder, lm_inputs)
        assert scorer.ok, "the fast engine's self-check failed on the benchmark model"
        per_group["baseline"] = time.perf_counter() - t
        predicted = int(scorer.base.logits.argmax())
        for name in GROUPS:
            chosen = [(c, w) for c, w in pairs if group_of[c.name] == name]
            t = time.perf_counter()
            _, scored = scorer.score([condition_knockout(c, w, layout) for c, w in chosen], [predicted])
            per_group[name] += time.perf_counter() - t
            probs.extend((c.name, w.label(), float(s.probs[0])) for (c, w), s in zip(chosen, scored, strict=True))
        order = {(c.name, w.label()): i for i, (c, w) in enumerate(pairs)}
        probs = [p for _, _, p in sorted(probs, key=lambda x: order[(x[0], x[1])])]
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_rss
    out.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": peak_kb / 1024,
                "groups": per_group,
                "probs": probs,
                "knockouts": len(pairs),
                "n": layout.n,
                "layers": decoder.num_layers,
            }
        )
    )


def flop_bound(quick: bool) -> dict[str, float]:
    """Ratio of full-forward work to the work of recomputing only affected rows from each window's first layer."""
    model, layout, _ = build(quick)
    decoder = find_decoder(model)
    n, layers = layout.n, decoder.num_layers
    full, minimal = {g: 0.0 for g in GROUPS}, {g: 0.0 for g in GROUPS}
    group_of = {c: g for g, names in GROUPS.items() for c in names}
    for condition, window in knockout_list(layout, layers, quick):
        ko = condition_knockout(condition, window, layout)
        rows = n - ko.earliest_query(n)
        group = group_of[condition.name]
        full[group] += n * layers
        minimal[group] += rows * (layers - ko.first_layer)
    return {g: full[g] / minimal[g] for g in GROUPS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced model and sweep (under a minute)")
    parser.add_argument("--method", choices=["authors", "sdpa", "flowcheck"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        run_method(args.method, args.quick, args.out)
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("authors", "sdpa", "flowcheck"):
            out = Path(tmp) / f"{method}.json"
            cmd = [sys.executable, __file__, "--method", method, "--out", str(out)] + (
                ["--quick"] if args.quick else []
            )
            subprocess.run(cmd, check=True)
            results[method] = json.loads(out.read_text())
    a, b, c = results["authors"], results["sdpa"], results["flowcheck"]
    diff = float(np.max(np.abs(np.array(a["probs"]) - np.array(c["probs"]))))
    bound = flop_bound(args.quick)
    print(f"model: {c['layers']} layers, n={c['n']} tokens; {c['knockouts']} knockouts (11 conditions x windows)")
    print(f"{'method':<28}{'seconds':>10}{'peak MB':>10}")
    for name, r in (("(a) authors: eager, dense", a), ("(b) authors' protocol, sdpa", b), ("(c) flowcheck", c)):
        print(f"{name:<28}{r['seconds']:>10.2f}{r['peak_mb']:>10.1f}")
    print(f"\n{'group':<16}{'a/c':>8}{'b/c':>8}{'FLOP bound (b/min)':>20}{'b/c of bound':>14}")
    bound_seconds = 0.0
    for g in GROUPS:
        bc = b["groups"][g] / c["groups"][g]
        bound_seconds += b["groups"][g] / bound[g]
        print(f"{g:<16}{a['groups'][g] / c['groups'][g]:>8.1f}{bc:>8.1f}{bound[g]:>20.1f}{bc / bound[g]:>13.0%}")
    print(f"(c) baseline forward + self-check, shared by the groups: {c['groups']['baseline']:.2f} s")
    share = bound_seconds / c["seconds"]
    print(
        f"sum of the groups' FLOP-bound times {bound_seconds:.2f} s over flowcheck's {c['seconds']:.2f} s: "
        f"{share:.0%} of the bound"
    )
    print(f"\nmax |p(c) - p(a)| over all knockouts: {diff:.2e}")
    print(
        f"ratio_authors={a['seconds'] / c['seconds']:.2f} ratio_sdpa={b['seconds'] / c['seconds']:.2f} "
        f"max_abs_diff={diff:.3e} peak_mem_ratio={c['peak_mb'] / max(b['peak_mb'], 1e-9):.2f} "
        f"sweep_bound_share={share:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
