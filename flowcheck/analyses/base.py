"""The analysis registry: an analysis is one module with one registered `Analysis` subclass.

In the manner of lm-evaluation-harness's metric and task registries, an analysis declares

- its ``name`` (also the result cache's kind and its key in summaries and ``results.json``);
- ``parameters()``: what enters its per-sample cache key besides the model, the frames and the sample
  (None: the analysis computes nothing per sample and reads other analyses' results);
- ``knockouts()``: (condition, window) pairs it needs scored; the knockout sweep computes every analysis's pairs
  in one batched pass (so accuracy under knockout costs no extra forward);
- ``compute(decoder, encoded, sample)``: one sample's result, a JSON object;
- ``summarise(view)`` (class method): one task's summary from every analysis's per-sample results;
- optionally ``gate_numbers`` (what a checkpoint is gated on) and ``report`` (its tables and figures, as data the
  report draws).

The runner (`flowcheck.analyses.runner`) loops over the registered analyses around one cache lookup per sample and
knows none of them by name. Registering a new analysis::

    @register
    class MeanBaselineProbability(Analysis):
        name = "mean_baseline_probability"
        title = "Mean baseline probability"

        @classmethod
        def summarise(cls, view):
            return {"mean": sum(b.argmax_prob for b in view.baselines) / len(view.baselines)}
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flowcheck.analyses.curves import METRICS
from flowcheck.analyses.records import Baseline, OpenEndedSample
from flowcheck.analyses.specs import Contribution
from flowcheck.edges import Condition, Window
from flowcheck.naming import file_stem
from flowcheck.stats import RESAMPLING, bootstrap_ci

# The paper's analyses, in the order they run (the sweep first: it gives every sample's baseline).
BUILTIN_MODULES = (
    "flowcheck.analyses.sweep",
    "flowcheck.analyses.accuracy",
    "flowcheck.analyses.answer_probability",
    "flowcheck.analyses.logit_lens",
    "flowcheck.analyses.pruning",
    # issue 18: beyond the paper (after answer_probability, whose forward it shares)
    "flowcheck.analyses.early_exit",
    # issue 17 parts 1 and 4 (generation): answers under knockout, open-ended flow
    "flowcheck.analyses.answers",
    "flowcheck.analyses.open_flow",
    # issue 17 parts 2 and 3: attention maps (Fig. 6), per-frame logit lens (Fig. 5), alignment under knockout
    "flowcheck.analyses.attention_maps",
    "flowcheck.analyses.frame_lens",
    "flowcheck.analyses.lens_alignment",
)


class AnalysisUnavailable(Exception):
    """An analysis that cannot run for a model on a dataset (e.g. no keyword of a list is one of its tokens): the
    reason is recorded in every summary, and the claims that need the analysis are "not evaluable" with it."""


@dataclass
class Setup:
    """What an analysis is built from, for one model on one dataset.

    `model`: a `ModelHandle` (name, num_layers, tokenizer; weights load only on first use of `.adapter`);
    `settings`: this analysis's settings from the plan (`AnalysisPlan.settings[name]`); `knockouts`: every
    analysis's (condition, window) pairs, in registration order (set by the runner before `parameters()`)."""

    model: Any
    dataset: str
    num_layers: int
    plan: Any
    settings: Mapping[str, Any] = field(default_factory=dict)
    knockouts: list[tuple[Condition, Window]] = field(default_factory=list)


@dataclass
class TaskView:
    """One task's per-sample results of every analysis (what `Analysis.summarise` reads).

    `baselines`: the unblocked prediction of every multiple-choice sample of the task; `chosen`: ids of the samples
    the plan's selection keeps (correctly answered by default, the paper's convention); `results[name][sample_id]`:
    each analysis's decoded per-sample result; `info[name]`: each analysis's run-level information (`Analysis.info`);
    `open_ended`: the task's open-ended samples (no options, no baseline; read only by analyses with
    `Analysis.handles_open_ended`).

    Intervals: `videos[sample_id]` is the sample's video key (its video file and clip bounds,
    `flowcheck.analyses.runner.video_key`; filled where the view is built, never cached); `resampling` is "video"
    (the default: the bootstrap resamples whole videos, since TVBench and TOMATO ask several questions about one
    video) or "sample" (every question on its own, the paper's seaborn interval); `seed` and `n_boot` seed and size
    every bootstrap. `curve_metric`: what the knockout curves show, "relative_change" (the paper's) or "margin"."""

    model: str
    dataset: str
    task: str
    num_layers: int
    baselines: list[Baseline]
    chosen: set[str]
    results: Mapping[str, Mapping[str, Any]]
    info: Mapping[str, Mapping[str, Any]]
    selection: str = "correct"
    seed: int = 0
    n_boot: int = 1000
    videos: Mapping[str, str] = field(default_factory=dict)
    resampling: str = "video"
    curve_metric: str = "relative_change"
    open_ended: Sequence[OpenEndedSample] = ()

    def __post_init__(self) -> None:
        if self.resampling not in RESAMPLING:
            raise ValueError(f"unknown bootstrap resampling {self.resampling!r}; choose one of {', '.join(RESAMPLING)}")
        if self.curve_metric not in METRICS:
            raise ValueError(f"unknown curve metric {self.curve_metric!r}; choose one of {', '.join(METRICS)}")

    def of(self, name: str, chosen_only: bool = False) -> list[Any]:
        """Analysis `name`'s per-sample results, in baseline order (only the chosen samples if `chosen_only`)."""
        per = self.results.get(name, {})
        return [
            per[b.sample_id]
            for b in self.baselines
            if b.sample_id in per and (b.sample_id in self.chosen or not chosen_only)
        ]

    def clusters(self) -> Mapping[str, str] | None:
        """The bootstrap's clusters, sample id -> video key (None when resampling samples). Raises ValueError when
        resampling videos and a sample of the view has no video key (the view was built without them)."""
        if self.resampling == "sample":
            return None
        missing = [b.sample_id for b in self.baselines if b.sample_id not in self.videos]
        if missing:
            raise ValueError(
                f"{len(missing)} samples of {self.model} on {self.task} have no video key (e.g. {missing[0]}): build "
                "the TaskView with videos= (the runner's ModelResults.videos), or resample samples "
                "(--flow-ci-resampling sample)"
            )
        return self.videos

    def interval(self, values: Sequence[float], sample_ids: Sequence[str]) -> tuple[float, float]:
        """95% percentile bootstrap interval `(low, high)` of the mean of `values` `[n]` (one per sample of
        `sample_ids` `[n]`, same unit as the values), resampling as the view says (`clusters`); seeded by the view.
        Shared by the analyses that show an interval (accuracies, probabilities, pruning). Raises ValueError as
        `clusters` and `flowcheck.stats.bootstrap_ci` do."""
        clusters = self.clusters()
        labels = None if clusters is None else [clusters[i] for i in sample_ids]
        return bootstrap_ci(values, clusters=labels, seed=self.seed, n_boot=self.n_boot)

    def resampling_text(self) -> str:
        """How the intervals of this view resample, for captions (`resampling_text`)."""
        return resampling_text(self.resampling)


def resampling_text(resampling: str) -> str:
    """The caption words of a bootstrap interval: "95% bootstrap CI, videos resampled" or "..., samples resampled"."""
    return f"95% bootstrap CI, {'videos' if resampling == 'video' else 'samples'} resampled"


class Analysis:
    """Base class of a registered analysis (see the module docstring). Instances live for one model on one
    dataset; class methods see only results (they run where no model is loaded, e.g. `flowcheck report`)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary_type: ClassVar[type | None] = None  # a dataclass with to_dict(); None: summaries are plain dicts
    provides_baseline: ClassVar[bool] = False  # True for the one analysis whose results give `baseline()`
    opt_in: ClassVar[bool] = False  # True: runs only when named (option --flow-analyses), not by default
    # True: compute() also runs on open-ended samples (no options; `encoded` is then the open-ended prompt,
    # `ModelAdapter.encode_open_ended`) and summarise() reads them from `TaskView.open_ended`
    handles_open_ended: ClassVar[bool] = False

    def __init__(self, setup: Setup) -> None:
        self.setup = setup

    def knockouts(self) -> list[tuple[Condition, Window]]:
        """(condition, window) pairs this analysis needs scored by the knockout sweep."""
        return []

    def parameters(self) -> dict[str, Any] | None:
        """What enters the per-sample cache key besides the model identity and the sample; None: nothing is
        computed per sample (the default)."""
        return None

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        """One sample's result as a JSON object (stored in the result cache as it is)."""
        raise NotImplementedError(f"analysis {self.name!r} declares parameters() but no compute()")

    def load(self, stored: dict[str, Any]) -> Any:
        """A stored per-sample result as `summarise` reads it (default: the JSON object itself)."""
        return stored

    def baseline(self, result: Any) -> Baseline | None:
        """The sample's unblocked prediction, when this analysis computes it (the knockout sweep does)."""
        return None

    def info(self) -> dict[str, Any]:
        """Run-level information recorded with the results (e.g. the keywords used, the pathway spec)."""
        return {}

    @classmethod
    def check(cls, settings: Mapping[str, Any], num_layers: int | None) -> None:
        """Raise ValueError when `settings` (a user's, over the defaults) cannot run on a model of `num_layers`
        layers (None: not known yet, layer ranges unchecked). Default: nothing to check."""

    @classmethod
    def settable(cls) -> Mapping[str, Any] | None:
        """The settings a user may give this analysis per run (``--flow-setting NAME.KEY=VALUE``), each with its
        default (whose type the value must have); None (the default): none (its settings come from the registry
        and the other options)."""
        return None

    def needs_results(self) -> bool:
        """Whether this analysis reads the other analyses' results of every sample before it computes (e.g. the
        pruning analysis discovers its pathways from the sweep's curves). The runner then computes it in a second
        pass over the samples, after calling `prepare`; its `parameters()` are read after `prepare`."""
        return False

    def prepare(self, results: Any) -> None:
        """Called once, before the second pass, with the `flowcheck.analyses.runner.ModelResults` of every analysis
        that does not need results. May raise AnalysisUnavailable."""

    @classmethod
    def summarise(cls, view: TaskView) -> Any:
        """One task's summary (a `summary_type` instance or a JSON object), or None when there is nothing to
        summarise."""
        return None

    @classmethod
    def summary_to_dict(cls, summary: Any) -> dict[str, Any]:
        return summary.to_dict() if hasattr(summary, "to_dict") else dict(summary)

    @classmethod
    def summary_from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Inverse of `summary_to_dict` (derived values written beside the fields are dropped)."""
        if cls.summary_type is None:
            return dict(data)
        names = cls.summary_type.__dataclass_fields__
        return cls.summary_type(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def gate_numbers(cls, summary: Any, task: str) -> dict[str, dict[str, float]]:
        """{kind: {metric: value}} this analysis contributes to checkpoint gating for one task (``"all"``: the
        whole dataset); kinds carry the registry's ``[gating.tolerances]``."""
        return {}

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        """Tables and figures (as data, drawn by `flowcheck.report`). Default: one table with a row per
        model x dataset x task and a column per scalar value of the summary."""
        return Contribution.scalar_table(cls.title or cls.name, cls.name, runs, cls.summary_to_dict)


@dataclass
class ReportInput:
    """One model on one dataset, as the report sees it: per task (and ``"all"``) the summaries of every analysis
    (`summaries[task][analysis]`), the number of layers and the run-level facts the record keeps (the paired image
    model, the paper model it stands for, its video tokens per sample)."""

    model: str
    dataset: str
    num_layers: int
    summaries: Mapping[str, Mapping[str, Any]]
    temporal_tasks: list[str]
    image_model: str = ""
    paper_model: str = ""
    video_tokens: int = 0
    problems: Mapping[str, str] = field(default_factory=dict)
    image: ReportInput | None = None

    def file_stem(self) -> str:
        """``<model file stem>-<dataset>``: figure file names (`flowcheck.naming.file_stem`)."""
        return f"{file_stem(self.model)}-{self.dataset}"

    def tasks(self) -> list[str]:
        return [t for t in self.summaries if t != "all"]

    def get(self, task: str, analysis: str) -> Any:
        return self.summaries.get(task, {}).get(analysis)


_REGISTRY: dict[str, type[Analysis]] = {}
_loaded = False


def register(cls: type[Analysis]) -> type[Analysis]:
    """Class decorator: make `cls` one of the analyses every run computes. Raises ValueError on a missing or
    duplicate name."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", cls.name or ""):
        raise ValueError(
            f"{cls.__qualname__}: analysis name {cls.name!r} must be lower-case letters, digits and _ (it names a "
            "cache folder and a results.json key)"
        )
    known = _REGISTRY.get(cls.name)
    same = known is not None and (known.__module__, known.__qualname__) == (cls.__module__, cls.__qualname__)
    if known is not None and known is not cls and not same:  # `same`: the module imported again
        raise ValueError(
            f"analysis {cls.name!r} is registered twice ({known.__module__}.{known.__qualname__} and "
            f"{cls.__module__}.{cls.__qualname__}); give the new one another name"
        )
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a registered analysis (tests, plugins replacing one)."""
    _REGISTRY.pop(name, None)


def analyses() -> dict[str, type[Analysis]]:
    """Every registered analysis by name, the paper's first (in `BUILTIN_MODULES` order), then the others in the
    order they registered."""
    global _loaded
    if not _loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True
    order = {module: i for i, module in enumerate(BUILTIN_MODULES)}
    ranked = sorted(_REGISTRY.values(), key=lambda cls: order.get(cls.__module__, len(order)))  # stable
    return {cls.name: cls for cls in ranked}


def analysis(name: str) -> type[Analysis]:
    """The registered analysis `name`; raises KeyError naming the known ones."""
    known = analyses()
    if name not in known:
        raise KeyError(f"unknown analysis {name!r}; registered: {', '.join(known)}")
    return known[name]


def check_settings(
    settings: Mapping[str, Mapping[str, Any]], running: Iterable[str] | None = None, num_layers: int | None = None
) -> dict[str, dict[str, Any]]:
    """User settings ``{analysis: {key: value}}`` (option ``--flow-setting``) checked against each analysis's
    `Analysis.settable` defaults and returned with values of the defaults' types (a text value for a list setting
    becomes a one-item list; integral floats become ints). `running`: the names of the analyses the run computes
    (`selected`); `num_layers`: the model's depth, for the analyses' own checks (`Analysis.check`: values that
    cannot run, such as an unknown mode or layers outside the model). Raises ValueError naming the analysis, the
    key or the value at fault and what would be accepted."""
    known = analyses()
    running = set(running) if running is not None else {cls.name for cls in selected(None)}
    out: dict[str, dict[str, Any]] = {}
    for name, given in settings.items():
        if name not in known:
            raise ValueError(f"unknown analysis {name!r}; registered: {', '.join(known)}")
        allowed = known[name].settable()
        if allowed is None:
            open_ = [n for n, cls in known.items() if cls.settable() is not None]
            raise ValueError(f"analysis {name!r} takes no settings per run; these do: {', '.join(open_)}")
        if name not in running:
            raise ValueError(f"settings for {name!r}, which this run does not compute: add --flow-analyses {name}")
        out[name] = {}
        for key, value in given.items():
            if key not in allowed:
                raise ValueError(f"{name}: unknown setting {key!r}; known: {', '.join(sorted(allowed))}")
            out[name][key] = _as_type_of(allowed[key], value, f"{name}.{key}")
        known[name].check(out[name], num_layers)
    return out


def _as_type_of(default: Any, value: Any, where: str) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    elif isinstance(default, list):
        if isinstance(value, str) and value.lstrip().startswith("["):
            raise ValueError(f'{where}: {value!r} is not a valid JSON list (e.g. [".", "\\n"])')
        value = [value] if isinstance(value, str) else value
        kinds = {type(v) for v in default} or {str, int}
        ok = isinstance(value, list) and all(type(v) in kinds for v in value)
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        if isinstance(default, str) and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # e.g. layers=4 read as a JSON number
        ok = isinstance(value, type(default))
    if not ok:
        kind = (
            "a positive integer"
            if isinstance(default, int) and not isinstance(default, bool)
            else (f"a value like the default {json.dumps(default)}")
        )
        raise ValueError(f"{where}: expected {kind}, got {value!r}")
    return value


def selected(names: Iterable[str] | None) -> list[type[Analysis]]:
    """The registered analyses to run: all of them except the opt-in ones (None), or those named, in registry
    order."""
    known = analyses()
    if names is None:
        return [cls for cls in known.values() if not cls.opt_in]
    wanted = set(names)
    unknown = wanted - set(known)
    if unknown:
        raise KeyError(f"unknown analysis {sorted(unknown)}; registered: {', '.join(known)}")
    return [cls for name, cls in known.items() if name in wanted]
