"""Train the tiny VideoLLM in two stages, like the paper's models.

    python -m flowcheck.tiny.train --stage image --out runs/image --steps 1500
    python -m flowcheck.tiny.train --stage video --init runs/image/final --out runs/video --steps 20000

Stage ``image``: still images, spatial questions only; a still is shown as one frame or as 8 copies
of it (what the suites feed an image model), alternating by step, so the model answers from any
number of frames without ever seeing motion. Stage ``video``: 8-frame videos, the five temporal
tasks plus spatial questions, starting from the image model. Seeds are fixed, progress
and held-out accuracy per task are printed, and a checkpoint is written at every evaluation;
``--resume`` continues from it and reproduces the uninterrupted run (data come in per-interval
segments seeded by the interval index). The model is written to ``<out>/final``; the bundled models
are those folders copied into ``flowcheck/bundled/<name>/`` (see fixtures/README.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import LlavaNextVideoForConditionalGeneration

from flowcheck.data.synth_tasks import SPATIAL_TASK, TEMPORAL_TASKS
from flowcheck.tiny.batches import Batch, PromptEncoder, held_out, make_batch, stream
from flowcheck.tiny.model import TinyShape, build_model, build_processor, freeze_vision
from flowcheck.tiny.tokenizer import build_tokenizer

STAGES = {
    "image": {"tasks": (SPATIAL_TASK,), "frames": (1, 8), "eval_frames": 8},
    "video": {"tasks": (*TEMPORAL_TASKS, SPATIAL_TASK), "frames": (8,), "eval_frames": 8},
}
EVAL_SEED_OFFSET = 10_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m flowcheck.tiny.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", choices=sorted(STAGES), required=True)
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoint, log, final model)")
    p.add_argument("--init", type=Path, help="start from this saved model (stage video: the image model)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-per-task", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--task-weights", default="", help="sampling weights, e.g. object_count=2,scene_transition=0.5")
    p.add_argument("--text-layers", type=int, default=TinyShape.text_layers)
    p.add_argument("--hidden", type=int, default=TinyShape.hidden)
    return p.parse_args(argv)


def task_weights(args: argparse.Namespace, tasks: tuple[str, ...]) -> list[float]:
    """Sampling weight per task from ``name=weight`` pairs (1 for tasks not named)."""
    given = dict(item.split("=") for item in args.task_weights.split(",") if item)
    unknown = set(given) - set(tasks)
    if unknown:
        raise SystemExit(f"--task-weights names tasks not in this stage: {sorted(unknown)}")
    return [float(given.get(t, 1.0)) for t in tasks]


def learning_rate(step: int, args: argparse.Namespace) -> float:
    """Linear warmup, then cosine decay to `min_lr_ratio` of the peak."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


@torch.no_grad()
def evaluate(model, encoder: PromptEncoder, videos, frames: int, batch_size: int = 64) -> dict[str, float]:
    """Held-out accuracy per task: argmax over the full vocabulary at the last prompt position is the true letter."""
    model.eval()
    hits: dict[str, list[int]] = defaultdict(list)
    for start in range(0, len(videos), batch_size):
        batch = make_batch(encoder, videos[start : start + batch_size], frames, with_answer=False)
        logits = model(**batch.model_inputs()).logits
        predicted = logits[torch.arange(len(batch.last)), batch.last].argmax(-1)
        for task, ok in zip(batch.tasks, (predicted == batch.answer_ids).tolist(), strict=True):
            hits[task].append(int(ok))
    model.train()
    return {task: sum(v) / len(v) for task, v in sorted(hits.items())}


def _load_start(args: argparse.Namespace, tokenizer):
    if args.init:
        model = LlavaNextVideoForConditionalGeneration.from_pretrained(args.init)
        freeze_vision(model)
        return model
    shape = TinyShape(text_layers=args.text_layers, hidden=args.hidden)
    return build_model(tokenizer, shape, seed=args.seed)


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    stage = STAGES[args.stage]
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    encoder = PromptEncoder(processor)
    model = _load_start(args, tokenizer)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.98))
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / "checkpoint.pt"
    log = {"args": {k: str(v) for k, v in vars(args).items()}, "evals": [], "seconds": 0.0}
    step = 0
    if args.resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, log = state["step"], state["log"]
        print(f"resumed from {checkpoint} at step {step}", file=sys.stderr)
    eval_videos = held_out(stage["tasks"], args.seed + EVAL_SEED_OFFSET, args.eval_per_task)

    def save() -> None:
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "log": log}, tmp)
        tmp.replace(checkpoint)

    started = time.perf_counter() - log["seconds"]
    bar = tqdm(total=args.steps, initial=step, desc=f"train {args.stage}", unit="step")
    while step < args.steps:
        segment = step // args.eval_every
        videos = stream(
            stage["tasks"], seed=args.seed * 1_000_003 + segment, weights=task_weights(args, stage["tasks"])
        )
        # the segment's data are a pure function of (seed, segment): resuming at a boundary reproduces the run
        videos = itertools.islice(videos, (step - segment * args.eval_every) * args.batch_size, None)
        for _ in range(segment * args.eval_every + args.eval_every - step):
            if step >= args.steps:
                break
            frames = stage["frames"][step % len(stage["frames"])]
            batch: Batch = make_batch(encoder, list(itertools.islice(videos, args.batch_size)), frames, True)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, args)
            out = model(**batch.model_inputs(), labels=batch.labels)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            elapsed = time.perf_counter() - started
            bar.set_postfix(loss=f"{out.loss.item():.3f}", sps=f"{step * args.batch_size / max(elapsed, 1e-9):.0f}")
            bar.update(1)
        log["seconds"] = time.perf_counter() - started
        accuracy = evaluate(model, encoder, eval_videos, stage["eval_frames"])
        log["evals"].append({"step": step, "seconds": round(log["seconds"], 1), "accuracy": accuracy})
        bar.write(
            f"step {step} ({log['seconds'] / 60:.1f} min): " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items())
        )
        save()
    bar.close()
    final = args.out / "final"
    model.save_pretrained(final)
    processor.save_pretrained(final)
    (args.out / "log.json").write_text(json.dumps(log, indent=1))
    return log


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
