"""Write reports/<run>/: REPORT.md (metadata, claims, Tables 2 and 3, figures), PNG figures, results.json."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowcheck import __version__
from flowcheck.claims import TaskSummary
from flowcheck.edges import condition_families, paper_conditions
from flowcheck.report.figures import (
    IMAGE_MODEL_COLOUR,
    SET1,
    TRUE_OPTION_COLOUR,
    LensPanel,
    Panel,
    Series,
    condition_series,
    plot_curves,
    plot_logit_lens,
)
from flowcheck.report.tables import claims_table, skipped_table, table2, table3


def _git_commit(cwd: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "flowcheck": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def _label(model: str) -> str:
    return model.rstrip("/").split("/")[-1]


def _x(centers: Sequence[int]) -> list[int]:
    return [c + 1 for c in centers]  # the paper plots 1-indexed window centres


def collect_summaries(session, entries: Sequence[Mapping]) -> dict[tuple[str, str], dict[str, TaskSummary]]:
    """Per (model, dataset): task -> TaskSummary, from the session (memoised) or the cache (never computing)."""
    pairs = {(e["model"], e.get("dataset", "")) for e in entries if e.get("dataset")}
    for model, dataset in list(pairs):
        image = session.registry.model_setting(model, "image_model")
        if image:
            pairs.add((image, dataset))
    from flowcheck.session import Case

    out: dict[tuple[str, str], dict[str, TaskSummary]] = {}
    for model, dataset in sorted(pairs):
        try:
            results = session.results(model, dataset, compute=False)
        except Exception:  # a model that cannot even be opened here (e.g. no config offline)
            continue
        if not results.baselines:
            continue
        per_task = {task: session.summary(Case(model, dataset, task), compute=False) for task in results.tasks()}
        per_task["all"] = session.summary(Case(model, dataset, "all"), compute=False)
        out[(model, dataset)] = per_task
    return out


def _figures(pairs: Mapping[str, str], summaries, run_dir: Path) -> list[tuple[str, str, str]]:
    """Draw every figure; returns (title, file name, caption)."""
    figures = []
    families = condition_families()
    labels = {name: c.label for name, c in paper_conditions().items()}
    from flowcheck.session import temporal_tasks

    for (model, dataset), per_task in sorted(summaries.items()):
        tasks = temporal_tasks(dataset, [t for t in per_task if t != "all"]) or [t for t in per_task if t != "all"]
        layers = next(iter(per_task.values())).num_layers
        stem = f"{_label(model)}-{dataset}"
        image = pairs.get(model)
        image_tasks = summaries.get((image, dataset), {}) if image else {}
        panels = []
        for task in tasks:
            s = per_task[task]
            panel = Panel(
                task.replace("_", " ").title(),
                note=f"n={s.curves['cross_frame'].n}" if "cross_frame" in s.curves else "",
            )
            if "cross_frame" in s.curves:
                c = s.curves["cross_frame"]
                panel.series.append(condition_series("cross_frame", _label(model), _x(c.centers), c.mean, c.lo, c.hi))
            if task in image_tasks and "cross_frame" in image_tasks[task].curves:
                c = image_tasks[task].curves["cross_frame"]
                panel.series.append(
                    Series(f"{_label(image)} (image model)", _x(c.centers), c.mean, c.lo, c.hi, IMAGE_MODEL_COLOUR)
                )
            panels.append(panel)
        if any(p.series for p in panels):
            name = f"fig2-cross-frame-{stem}.png"
            plot_curves(
                panels,
                run_dir / name,
                num_layers=layers,
                suptitle=f"Fig. 2 — No cross-frame interactions: {_label(model)} on {dataset}",
            )
            figures.append(
                (
                    "Cross-frame knockout (Fig. 2)",
                    name,
                    "Mean relative change of the predicted letter's probability (95% bootstrap CI), window "
                    "centred at each layer, correctly answered samples.",
                )
            )
        for family, title, tag in (
            ("vql-to-ql", "Video -> Question -> Last (Fig. 3)", "fig3-route"),
            ("question-and-options-to-last", "Question and options -> Last", "fig3b-options"),
            ("vq-to-true-opt", "Video and question -> true option", "fig3c-true-option"),
        ):
            panels = []
            for task in tasks:
                s = per_task[task]
                panel = Panel(task.replace("_", " ").title())
                for condition in families[family]:
                    if condition in s.curves:
                        c = s.curves[condition]
                        panel.series.append(
                            condition_series(condition, labels[condition], _x(c.centers), c.mean, c.lo, c.hi)
                        )
                panels.append(panel)
            if any(p.series for p in panels):
                name = f"{tag}-{stem}.png"
                plot_curves(
                    panels, run_dir / name, num_layers=layers, suptitle=f"{title}: {_label(model)} on {dataset}"
                )
                figures.append((title, name, "Mean relative change (95% bootstrap CI) per blocked pathway."))
        panels = []
        for task in tasks:
            a = per_task[task].answer
            if a is None:
                continue
            x = [layer + 1 for layer in a.layers]
            panels.append(
                Panel(
                    task.replace("_", " ").title(),
                    [
                        Series("True option", x, a.true_mean, colour=TRUE_OPTION_COLOUR),
                        Series("Best false option", x, a.false_max_mean, colour=SET1["blue"]),
                        Series("False options (mean)", x, a.false_mean, colour=SET1["blue"], linestyle=":"),
                    ],
                    note=f"n={a.n}",
                )
            )
        if panels:
            name = f"fig9-answer-probability-{stem}.png"
            plot_curves(
                panels,
                run_dir / name,
                ylabel="Probability (%)",
                num_layers=layers,
                zero_line=False,
                ylim=(-2, 102),
                suptitle=f"Fig. 9 — Answer probability by layer: {_label(model)} on {dataset}",
            )
            figures.append(
                (
                    "Answer probability by layer (Fig. 9)",
                    name,
                    "Mean probability of the true option letter vs the false ones at the last position, "
                    "lm_head on each layer's output, correctly answered samples.",
                )
            )
        lens = per_task["all"].lens
        if lens is not None and any(lens.hits.values()):
            bins = [f"{a + 1}-{b}" if b - a > 1 else f"{a + 1}" for a, b in lens.bins]
            name = f"fig4-logit-lens-{stem}.png"
            plot_logit_lens(
                [LensPanel(f"{_label(model)} on {dataset}", bins, lens.frequencies, lens.mean_layer)],
                run_dir / name,
                suptitle="Fig. 4 — Keywords read from video tokens (logit lens)",
            )
            figures.append(
                (
                    "Logit lens on video tokens (Fig. 4)",
                    name,
                    f"Normalised top-1 keyword hits per layer bin; hits {lens.hits}.",
                )
            )
    return figures


def _metadata(session, summaries, started: float, root: Path) -> dict:
    options = session.options
    models = {}
    for model in options.models:
        try:
            handle = session.handle(model)
            models[model] = {"path": handle.path, "fingerprint": handle.fingerprint(), "layers": handle.num_layers}
        except Exception as err:
            models[model] = {"error": str(err)}
    datasets = {
        name: session.reports[name].to_dict() if name in session.reports else {"root": root} for name in options.data
    }
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "duration_s": round(time.time() - started, 1),
        "git_commit": _git_commit(root),
        "versions": _versions(),
        "device": options.device,
        "dtype": options.dtype,
        "seed": options.seed,
        "models": models,
        "datasets": datasets,
        "registry": session.registry.sources,
    }


@dataclass
class ReportData:
    """Everything a report shows; `results.json` is this, serialised, so a report can be re-rendered."""

    metadata: dict
    claims: list[dict]
    summaries: dict[tuple[str, str], dict[str, TaskSummary]]
    skipped: list[tuple[str, str, str]]
    image_models: dict[str, str] = field(default_factory=dict)
    paper_models: dict[str, str] = field(default_factory=dict)
    video_tokens: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "metadata": self.metadata,
            "claims": self.claims,
            "summaries": {
                f"{m}|{d}|{t}": summary_to_dict(s) for (m, d), per in self.summaries.items() for t, s in per.items()
            },
            "skipped": [{"sample_id": a, "file": b, "reason": c} for a, b, c in self.skipped],
            "image_models": self.image_models,
            "paper_models": self.paper_models,
            "video_tokens": self.video_tokens,
        }

    @classmethod
    def from_json(cls, data: dict) -> ReportData:
        summaries: dict[tuple[str, str], dict[str, TaskSummary]] = defaultdict(dict)
        for key, value in data["summaries"].items():
            model, dataset, task = key.rsplit("|", 2)
            summaries[(model, dataset)][task] = summary_from_dict(value, model, dataset, task)
        return cls(
            data["metadata"],
            data["claims"],
            dict(summaries),
            [(s["sample_id"], s["file"], s["reason"]) for s in data.get("skipped", [])],
            data.get("image_models", {}),
            data.get("paper_models", {}),
            data.get("video_tokens", {}),
        )


def gather(session, entries: Sequence[Mapping], *, started: float, root: Path | None = None) -> ReportData:
    """Collect a finished run's report data from the session (results memoised or read from the cache)."""
    root = root or Path.cwd()
    summaries = collect_summaries(session, entries)
    models = {m for m, _ in summaries}
    video_tokens, skipped = {}, []
    for model, dataset in summaries:
        results = session.results(model, dataset, compute=False)
        video_tokens[model] = len(results.baselines[0].token_layout.video)
        skipped += [(s.sample_id, s.file, s.reason) for s in results.skipped]
    for report in session.reports.values():
        skipped += [(s.sample_id, s.file, s.reason) for s in report.skipped]
    return ReportData(
        metadata=_metadata(session, summaries, started, root),
        claims=[dict(e) for e in entries],
        summaries=summaries,
        skipped=sorted(set(skipped)),
        image_models={
            m: session.registry.model_setting(m, "image_model")
            for m in models
            if session.registry.model_setting(m, "image_model")
        },
        paper_models={
            m: session.registry.model_setting(m, "paper_model")
            for m in models
            if session.registry.model_setting(m, "paper_model")
        },
        video_tokens=video_tokens,
    )


def new_run_dir(report_dir: Path) -> Path:
    run_dir = Path(report_dir) / time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while run_dir.exists():
        run_dir = run_dir.with_name(f"{run_dir.name.split('.')[0]}.{suffix}")
        suffix += 1
    run_dir.mkdir(parents=True)
    return run_dir


def summary_line(claims: Sequence[Mapping]) -> str:
    counts = defaultdict(int)
    for e in claims:
        counts[e.get("outcome", "unknown")] += 1
    return (
        f"{len(claims)} claim checks: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['xfailed']} expected failures"
    )


def render(data: ReportData, run_dir: Path) -> str:
    """Write REPORT.md, the figures and results.json into `run_dir`; returns the markdown."""
    run_dir.mkdir(parents=True, exist_ok=True)
    meta, entries, summaries = data.metadata, data.claims, data.summaries
    figures = _figures(data.image_models, summaries, run_dir)
    line = summary_line(entries)
    md = [f"# flowcheck report — {meta['date']}", "", f"**{line}.**", ""]
    md += ["## Run", "", "| | |", "|---|---|"]
    md += [
        f"| git commit | `{meta['git_commit']}` |",
        f"| duration | {meta['duration_s']} s |",
        f"| device / dtype | {meta['device']} / {meta['dtype']} |",
        f"| versions | {', '.join(f'{k} {v}' for k, v in meta['versions'].items())} |",
        f"| claims registry | {', '.join(meta['registry'])} |",
    ]
    for model, info in meta["models"].items():
        md.append(f"| model `{model}` | " + ", ".join(f"{k}: {v}" for k, v in info.items()) + " |")
    for name, info in meta["datasets"].items():
        md.append(
            f"| dataset `{name}` | {info.get('loaded', '?')} samples from {info.get('root')}, "
            f"{len(info.get('skipped', []))} skipped |"
        )
    md += ["", "## Claims", "", claims_table(entries), ""]
    if summaries:
        md += [
            "## Table 2 — accuracy drop with cross-frame attention blocked in layers [0, L/2)",
            "",
            "Points of first-token accuracy over all samples (relative % in brackets); the paper's values in "
            "braces (it does not say whether they are points or relative %).",
            "",
            table2(summaries, data.paper_models),
            "",
        ]
        if any(t.get("all") and t["all"].pruning for t in summaries.values()):
            md += [
                "## Table 3 — effective pathways vs full and random attention",
                "",
                "Edges: causal (query, key) pairs of one head summed over layers, mean per sample; accuracy in %.",
                "",
                table3(summaries, data.paper_models, data.video_tokens),
                "",
            ]
    if figures:
        md += ["## Figures", ""]
        for title, name, caption in figures:
            md += [f"### {title}", "", f"![{title}]({name})", "", caption, ""]
    if data.skipped:
        md += ["## Skipped samples", "", skipped_table(data.skipped), ""]
    text = "\n".join(md)
    (run_dir / "REPORT.md").write_text(text)
    (run_dir / "results.json").write_text(json.dumps(data.to_json(), indent=1, default=str))
    return text


def write_report(session, entries: Sequence[Mapping], *, started: float, root: Path | None = None) -> tuple[Path, str]:
    """Write the run's report under the report directory; returns its path and a one-line summary."""
    data = gather(session, entries, started=started, root=root)
    run_dir = new_run_dir(Path(session.options.report_dir))
    text = render(data, run_dir)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as fh:
            fh.write(text.split("## Figures")[0] + "\n")
    return run_dir / "REPORT.md", summary_line(entries)


def summary_to_dict(s: TaskSummary) -> dict:
    return {
        "n": s.n,
        "n_correct": s.n_correct,
        "num_layers": s.num_layers,
        "curves": {k: c.to_dict() for k, c in s.curves.items()},
        "accuracy": s.accuracy.to_dict() if s.accuracy else None,
        "answer_probability": s.answer.to_dict() if s.answer else None,
        "logit_lens": asdict(s.lens) if s.lens else None,
        "pruning": s.pruning.to_dict() if s.pruning else None,
    }


def summary_from_dict(d: dict, model: str, dataset: str, task: str) -> TaskSummary:
    """Inverse of `summary_to_dict`."""
    from flowcheck.analyses.accuracy import AccuracyUnderKnockout
    from flowcheck.analyses.answer_probability import ProbabilityCurves
    from flowcheck.analyses.curves import Curve
    from flowcheck.analyses.logit_lens import LensSummary
    from flowcheck.analyses.pruning import PruningSummary

    def only(cls, values):
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in names})

    lens = None
    if d.get("logit_lens"):
        lens = only(LensSummary, d["logit_lens"])
        lens.bins = [tuple(b) for b in lens.bins]
    return TaskSummary(
        model=model,
        dataset=dataset,
        task=task,
        num_layers=d["num_layers"],
        n=d["n"],
        n_correct=d["n_correct"],
        curves={k: only(Curve, v) for k, v in d.get("curves", {}).items()},
        accuracy=only(AccuracyUnderKnockout, d["accuracy"]) if d.get("accuracy") else None,
        answer=only(ProbabilityCurves, d["answer_probability"]) if d.get("answer_probability") else None,
        lens=lens,
        pruning=only(PruningSummary, d["pruning"]) if d.get("pruning") else None,
    )
