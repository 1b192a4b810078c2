"""Write a bundled model's card: recipe, training log, held-out accuracy and knockout observations.

    python -m flowcheck.tiny.card --model flowcheck/bundled/tiny-video-ft --log runs/video/log.json --stage video

Accuracy and curves come from the suite's own pipeline (flowcheck.load, the synthetic benchmark in
the TVBench layout decoded from mp4, the analyses runner), not from the training loop.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from flowcheck.analyses.runner import AnalysisPlan, run_analyses
from flowcheck.analyses.summary import summarise
from flowcheck.cache import ResultCache
from flowcheck.data.folder import load_tvbench_layout
from flowcheck.data.synth import write_benchmark
from flowcheck.data.synth_tasks import TEMPORAL_TASKS
from flowcheck.models import load
from flowcheck.progress import stderr_progress

CARD_SEED = 4242
STAGE_TEXT = {
    "image": "image stage: single frames, spatial questions",
    "video": "video stage: 8-frame videos, temporal tasks plus spatial questions, initialised from tiny-image",
}


def evaluate(model_dir: Path, per_task: int, cache: Path) -> dict:
    """Held-out accuracy per task and the knockout curves of the model on a fresh synthetic set."""
    with tempfile.TemporaryDirectory() as tmp:
        write_benchmark(Path(tmp), seed=CARD_SEED, per_task=per_task, progress=False)
        samples, _ = load_tvbench_layout(tmp, dataset="synthetic")
        adapter = load(str(model_dir))
        plan = AnalysisPlan(
            analyses=("sweep", "accuracy"), settings={"sweep": {"conditions": ("cross_frame", "vql-to-ql")}}
        )
        results = run_analyses(
            adapter, samples, plan, ResultCache(cache), dataset="synthetic", progress=stderr_progress()
        )
    out = {"accuracy": {}, "chance": {}, "curves": {}, "first_half_drop": {}}
    for task in {s.task for s in samples}:
        options = [len(s.options) for s in samples if s.task == task]
        out["chance"][task] = sum(1 / k for k in options) / len(options)
    for task in results.tasks():
        s = summarise(results, task)
        out["accuracy"][task] = s.n_correct / s.n
        curves = s.get("sweep").curves if s.get("sweep") else {}
        out["curves"][task] = {
            c: {"min": round(v.minimum, 1), "at_layer": v.argmin + 1, "n": v.n} for c, v in curves.items()
        }
        accuracy = s.get("accuracy")
        if accuracy:
            out["first_half_drop"][task] = (round(accuracy.base, 1), round(accuracy.knocked, 1))
    return out


def card_text(name: str, stage: str, log: dict, metrics: dict, config: dict) -> str:
    acc = metrics["accuracy"]
    temporal = [acc[t] for t in TEMPORAL_TASKS if t in acc]
    lines = [
        f"# {name}",
        "",
        f"A miniature LLaVA-NeXT-Video ({STAGE_TEXT[stage]}), "
        "trained on a CPU by `python -m flowcheck.tiny.train` on the synthetic benchmark. It mirrors the paper's "
        "ImageLLM / VideoLLM pair at a size where every analysis runs in seconds.",
        "",
        "## Architecture",
        "",
        f"- transformers `LlavaNextVideoForConditionalGeneration`; language model: Llama, "
        f"{config['text_config']['num_hidden_layers']} layers, hidden {config['text_config']['hidden_size']}, "
        f"{config['text_config']['num_attention_heads']} heads, vocabulary {config['text_config']['vocab_size']} "
        "(word level, every option letter one token).",
        "- vision: CLIP, 32x32 frames, 8-px patches, frozen hand-set patch embedding (mean colour of every 2x2 "
        "sub-block and a one-hot patch position), its single encoder layer set to the identity; conv pooling with "
        "stride 2 gives 4 tokens per frame (one per quadrant), 32 video tokens for 8 frames.",
        "- prompt: the paper's protocol (`Question: ... Options: (A) ...`, `Best option:(`), MVBench system prompt, "
        "in a LLaVA-style chat template.",
        "",
        "## Training recipe",
        "",
        "```",
        recipe_command(log.get("args", {})),
        "```",
        "",
        f"Training time: {log.get('seconds', 0) / 60:.1f} minutes on 2 CPU cores. Held-out accuracy during training "
        "(separate generator seed):",
        "",
        "| step | minutes | " + " | ".join(sorted(log["evals"][-1]["accuracy"])) + " |",
        "|---|---|" + "---|" * len(log["evals"][-1]["accuracy"]),
    ]
    for e in log.get("evals", []):
        lines.append(
            f"| {e['step']} | {e['seconds'] / 60:.1f} | "
            + " | ".join(f"{e['accuracy'][k]:.3f}" for k in sorted(e["accuracy"]))
            + " |"
        )
    lines += [
        "",
        f"## Held-out accuracy (the suite's evaluation; synthetic benchmark seed {CARD_SEED})",
        "",
        "| task | accuracy | chance |",
        "|---|---|---|",
    ]
    chance = metrics["chance"]
    for task in sorted(acc):
        lines.append(f"| {task} | {acc[task]:.3f} | {chance[task]:.2f} |")
    if temporal:
        lines.append(f"| **temporal mean** | **{sum(temporal) / len(temporal):.3f}** | |")
    lines += [
        "",
        "## Knockout observations (window 3, correctly answered samples)",
        "",
        "Minimum mean relative change of the predicted letter's probability and the window centre (1-indexed) "
        "where it occurs; accuracy with cross-frame attention blocked in the first half of the layers.",
        "",
        "| task | cross-frame | Video -/-> Question | Question -/-> Last | Video -/-> Last | Last -/-> Last | "
        "accuracy: full -> cross-frame blocked in layers 1 to L/2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, curves in sorted(metrics["curves"].items()):
        cells = []
        for c in ("cross_frame", "video->question", "question->last", "video->last", "last->last"):
            v = curves.get(c)
            cells.append(f"{v['min']}% @ {v['at_layer']}" if v else "n/a")
        base, knocked = metrics["first_half_drop"].get(task, ("", ""))
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {base} -> {knocked} |")
    lines += [
        "",
        "Whatever these show is reported as measured; `pytest suites/` checks the claims and writes the "
        "full report with figures.",
        "",
    ]
    return "\n".join(lines)


_MACHINE_ARGS = ("out", "init", "resume")


def recipe_command(args: dict) -> str:
    """The training command of a run, without its machine-specific paths."""
    parts = ["python -m flowcheck.tiny.train"]
    for key, value in args.items():
        if key in _MACHINE_ARGS or value in ("", "None"):
            continue
        parts.append(f"--{key.replace('_', '-')} {value}")
    if args.get("init") not in (None, "", "None"):
        parts.append("--init <the image-stage model>")
    parts.append("--out <run folder>")
    return " \\\n    ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True, help="the training run's log.json")
    parser.add_argument("--stage", choices=["image", "video"], required=True)
    parser.add_argument("--per-task", type=int, default=200)
    args = parser.parse_args(argv)
    log = json.loads(args.log.read_text())
    with tempfile.TemporaryDirectory() as cache:
        metrics = evaluate(args.model, args.per_task, Path(cache))
    config = json.loads((args.model / "config.json").read_text())
    (args.model / "MODEL_CARD.md").write_text(card_text(args.model.name, args.stage, log, metrics, config))
    shutil.copyfile(args.log, args.model / "training_log.json")
    (args.model / "heldout_metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics["accuracy"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
