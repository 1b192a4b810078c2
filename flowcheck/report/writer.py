"""Write reports/<run>/: REPORT.md (metadata, claims, Tables 2 and 3, figures), PNG figures, results.json."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowcheck.claims import TaskSummary, builtin, user_layer
from flowcheck.edges import condition_families, paper_conditions
from flowcheck.models.identity import file_stem
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
from flowcheck.report.schema import SCHEMA_VERSION, ClaimEntry, validate
from flowcheck.report.tables import claims_table, skipped_table, table2, table3
from flowcheck.version import __version__


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
    return model  # model names are unique in a run (flowcheck.models.identity)


def _x(centers: Sequence[int]) -> list[int]:
    return [user_layer(c) for c in centers]  # layers counted from 1, as the paper plots window centres


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


def _figures(pairs: Mapping[str, str], summaries, run_dir: Path) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """Draw every figure; returns (title, file name, caption, "<model> on <dataset>") per figure and a note per
    figure left out (why)."""
    figures, missing = [], []
    families = condition_families()
    labels = {name: c.label for name, c in paper_conditions().items()}
    from flowcheck.session import temporal_tasks

    for (model, dataset), per_task in sorted(summaries.items()):
        tasks = temporal_tasks(dataset, [t for t in per_task if t != "all"]) or [t for t in per_task if t != "all"]
        layers = next(iter(per_task.values())).num_layers
        stem = f"{file_stem(model)}-{dataset}"
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
        if not any(p.series for p in panels):
            missing.append(
                f"Fig. 2 for {model} on {dataset}: no cross-frame curve (no correctly answered sample in "
                f"{', '.join(tasks) or 'any task'})"
            )
        else:
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
                    f"{model} on {dataset}",
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
                caption = "Mean relative change (95% bootstrap CI) per blocked pathway."
                figures.append((title, name, caption, f"{model} on {dataset}"))
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
        if not panels:
            missing.append(f"Fig. 9 for {model} on {dataset}: no answer probabilities (no correctly answered sample)")
        else:
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
                    f"{model} on {dataset}",
                )
            )
        lens = per_task["all"].lens
        if per_task["all"].lens_problem:
            missing.append(f"Fig. 4 for {model} on {dataset}: {per_task['all'].lens_problem}")
        elif lens is None or not any(lens.hits.values()):
            missing.append(f"Fig. 4 for {model} on {dataset}: no video position reads as a keyword at any layer")
        else:
            bins = [f"{a + 1}-{b}" if b - a > 1 else f"{a + 1}" for a, b in lens.bins]
            name = f"fig4-logit-lens-{stem}.png"
            plot_logit_lens(
                [
                    LensPanel(
                        f"{_label(model)} on {dataset}",
                        bins,
                        lens.frequencies,
                        {k: user_layer(v) for k, v in lens.mean_layer.items()},
                    )
                ],
                run_dir / name,
                suptitle="Fig. 4 — Keywords read from video tokens (logit lens)",
            )
            figures.append(
                (
                    "Logit lens on video tokens (Fig. 4)",
                    name,
                    f"Normalised top-1 keyword hits per layer bin; hits {lens.hits}.",
                    f"{model} on {dataset}",
                )
            )
    return figures, missing


def _metadata(session, started: float, root: Path) -> dict:
    options = session.options
    models = []
    for model in session.models:
        info = {"name": model, "source": session.source(model)}
        try:
            handle = session.handle(model)
            info.update(path=str(handle.path), fingerprint=handle.fingerprint(), layers=handle.num_layers)
            verification = session.verification(model, compute=False)
            info["contract"] = verification.summary() if verification is not None else "not verified in this run"
            if verification is not None and verification.prompt_notes:
                info["prompt"] = "; ".join(f"{k}: {v}" for k, v in verification.prompt_notes.items())
        except Exception as err:
            info["error"] = str(err)
        models.append(info)
    counts = session.skipped_counts()
    datasets = []
    for name in options.data:
        report = session.reports.get(name)
        datasets.append(
            {
                "name": name,
                "root": report.root if report else options.data.get(name),
                "loaded": report.loaded if report else 0,
                "skipped": counts.get(name, 0),
            }
        )
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
    """Everything a report shows; `results.json` is this, serialised (`flowcheck.report.schema`), so a report can
    be re-rendered without the models."""

    metadata: dict
    claims: list[dict]
    summaries: dict[tuple[str, str], dict[str, TaskSummary]]
    skipped: list[dict[str, str]]
    image_models: dict[str, str] = field(default_factory=dict)
    paper_models: dict[str, str] = field(default_factory=dict)
    video_tokens: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The results.json object, validated against the schema (raises SchemaError on a malformed value)."""
        data = {
            "schema_version": SCHEMA_VERSION,
            "metadata": self.metadata,
            "claims": [_claim_entry(e) for e in self.claims],
            "summaries": {
                f"{m}|{d}|{t}": builtin(summary_to_dict(s))
                for (m, d), per in self.summaries.items()
                for t, s in per.items()
            },
            "skipped": self.skipped,
            "image_models": self.image_models,
            "paper_models": self.paper_models,
            "video_tokens": self.video_tokens,
        }
        return validate(builtin(data)).model_dump(mode="json")

    @classmethod
    def from_json(cls, data: dict) -> ReportData:
        """Read a results.json object (raises SchemaError when it does not follow the schema)."""
        record = validate(data)
        summaries: dict[tuple[str, str], dict[str, TaskSummary]] = defaultdict(dict)
        for key, value in record.summaries.items():
            model, dataset, task = key.rsplit("|", 2)
            summaries[(model, dataset)][task] = summary_from_dict(value, model, dataset, task)
        return cls(
            record.metadata.model_dump(mode="json"),
            [c.model_dump(mode="json") for c in record.claims],
            dict(summaries),
            [s.model_dump(mode="json") for s in record.skipped],
            record.image_models,
            record.paper_models,
            record.video_tokens,
        )


def _claim_entry(entry: Mapping) -> dict:
    keys = ClaimEntry.model_fields
    return {k: v for k, v in entry.items() if k in keys}


def gather(session, entries: Sequence[Mapping], *, started: float, root: Path | None = None) -> ReportData:
    """Collect a finished run's report data from the session (results memoised or read from the cache)."""
    root = root or Path.cwd()
    summaries = collect_summaries(session, entries)
    models = {m for m, _ in summaries}
    video_tokens = {}
    for model, dataset in summaries:
        results = session.results(model, dataset, compute=False)
        video_tokens[model] = len(results.baselines[0].token_layout.video)
    return ReportData(
        metadata=_metadata(session, started, root),
        claims=[dict(e) for e in entries],
        summaries=summaries,
        skipped=session.skipped_rows(),
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
    """A fresh, not yet existing ``<report_dir>/<YYYYmmdd-HHMMSS>[.k]`` path (not created)."""
    run_dir = Path(report_dir) / time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while run_dir.exists():
        run_dir = run_dir.with_name(f"{run_dir.name.split('.')[0]}.{suffix}")
        suffix += 1
    return run_dir


def summary_line(claims: Sequence[Mapping]) -> str:
    """``N claim checks: P passed, F failed, X expected failures[, K not evaluable][, E errors]``."""
    counts = defaultdict(int)
    for e in claims:
        counts[e.get("outcome", "unknown")] += 1
    line = (
        f"{len(claims)} claim checks: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['xfailed']} expected failures"
    )
    for outcome, label in (
        ("not evaluable", "not evaluable"),
        ("unexpectedly passed", "unexpectedly passed (strict expected failure)"),
        ("error", "errors"),
        ("skipped", "skipped"),
    ):
        if counts[outcome]:
            line += f", {counts[outcome]} {label}"
    return line


def render(data: ReportData, run_dir: Path) -> str:
    """Write REPORT.md, the figures and results.json into `run_dir`, all at once: they are written into a
    staging folder that is renamed into place, so an interrupted run leaves no half-written report.
    Returns the markdown. Raises FileExistsError when `run_dir` exists and is not empty."""
    record = data.to_json()  # validate before anything is written
    run_dir = Path(run_dir)
    staging = run_dir.with_name(f".{run_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        text = _render_into(data, record, staging)
        if run_dir.exists():
            if any(run_dir.iterdir()):
                for item in staging.iterdir():
                    item.replace(run_dir / item.name)
            else:
                run_dir.rmdir()
                staging.rename(run_dir)
        else:
            staging.rename(run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return text


def _render_into(data: ReportData, record: dict, run_dir: Path) -> str:
    meta, entries, summaries = data.metadata, data.claims, data.summaries
    figures, missing = _figures(data.image_models, summaries, run_dir)
    line = summary_line(entries)
    md = [f"# flowcheck report — {meta['date']}", "", f"**{line}.**", ""]
    md += ["Layers are counted from 1 (layer 1 is the first decoder layer), as in the paper's figures and Table 3.", ""]
    md += ["## Run", "", "| | |", "|---|---|"]
    md += [
        f"| git commit | `{meta['git_commit']}` |",
        f"| duration | {meta['duration_s']} s |",
        f"| device / dtype | {meta['device']} / {meta['dtype']} |",
        f"| versions | {', '.join(f'{k} {v}' for k, v in meta['versions'].items())} |",
        f"| claims registry | {', '.join(meta['registry'])} |",
    ]
    for info in meta["models"]:
        details = ", ".join(f"{k}: {v}" for k, v in info.items() if k != "name" and v is not None)
        md.append(f"| model `{info['name']}` | {details} |")
    for info in meta["datasets"]:
        md.append(
            f"| dataset `{info['name']}` | {info['loaded']} samples from {info['root']}, {info['skipped']} skipped |"
        )
    md += ["", "## Claims", "", claims_table(entries), ""]
    if summaries:
        md += [
            "## Table 2 — accuracy drop with cross-frame attention blocked in the first half of the layers (1 to L/2)",
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
    if figures or missing:
        md += ["## Figures", ""]
        for title, name, caption, whose in figures:
            md += [f"### {title}: {whose}", "", f"![{title}: {whose}]({name})", "", caption, ""]
        if missing:
            md += ["Not drawn:", ""] + [f"- {note}" for note in missing] + [""]
    if data.skipped:
        distinct = len({(s["dataset"], s["sample_id"]) for s in data.skipped})
        md += [f"## Skipped samples ({distinct})", "", skipped_table(data.skipped), ""]
    text = "\n".join(md)
    (run_dir / "REPORT.md").write_text(text)
    (run_dir / "results.json").write_text(json.dumps(record, indent=1))
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
        "lens_problem": s.lens_problem,
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
        lens_problem=d.get("lens_problem", ""),
        pruning=only(PruningSummary, d["pruning"]) if d.get("pruning") else None,
    )
