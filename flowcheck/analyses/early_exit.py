"""Early-exit readiness (the poster's "future implications"; issue 18, part 6): from which layer on could the model
stop and answer as it finally does, at what accuracy, and how many decoder FLOPs would that save?

Read-out: at every layer l the last position's residual (the output of layer l) goes through the final norm and
lm_head, as an exit at layer l would compute it (the final norm is always applied; the last layer's output is normed
already, `flowcheck.analyses.hidden`). The prediction at layer l is, by default, the forced choice among the option
letters (the letter with the highest lm_head logit: the argmax of `answer_probability`'s rows read with the final
norm); the setting ``prediction = "vocabulary"`` uses the full-vocabulary argmax instead, mapped to an option letter
or to "no option" as flowcheck's baseline scores answers.

Definitions (per task, over all its samples, correct or not: an exit must reproduce the model, right or wrong):

- a sample's *settled layer* is the earliest layer s such that its prediction at every layer >= s equals its final
  prediction (at the last layer); a prediction that agrees at layer l but changes again later has not settled at l;
- the task's *exit layer* is the earliest layer at which at least ``agreement`` (flowcheck/specs/early_exit.toml,
  0.95) of the samples have settled;
- *agreement* at the exit layer: the share of samples whose prediction there equals the final one (at least the
  settled share); *exit accuracy*: the share whose prediction there is the true option; *full accuracy*: the same at
  the last layer;
- *decoder FLOPs saved*: the forward FLOPs of the layers after the exit layer over each sample's whole prompt, as a
  share of all decoder layers' FLOPs, summed over samples (`flowcheck.analyses.flops`: projections, attention
  logits and values over causal pairs, MLP; lm_head and embeddings excluded).

Cost: no forward of its own when the answer-probability analysis runs on the same sample (both read the last
position's states of one forward, `last_position_states(reuse=True)`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import torch

from flowcheck.analyses.base import Analysis, ReportInput, Setup, TaskView, register
from flowcheck.analyses.flops import DecoderShape, FlopCountError, decoder_flops, gated_mlp
from flowcheck.analyses.hidden import last_position_states, readout_logits
from flowcheck.analyses.specs import Contribution, Table
from flowcheck.engine import Decoder
from flowcheck.models.base import EncodedSample

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NO_OPTION = -1  # the full-vocabulary argmax is not an option letter
RULES = {"options": "forced choice among the option letters", "vocabulary": "full-vocabulary argmax"}


def early_exit_spec() -> dict[str, Any]:
    """The defaults of flowcheck/specs/early_exit.toml (``agreement``, ``prediction``)."""
    return tomllib.loads(resources.files("flowcheck.specs").joinpath("early_exit.toml").read_text())


def check_settings(agreement: Any, prediction: Any) -> tuple[float, str]:
    """The agreement share (0 < a <= 1) and the prediction rule; ValueError naming the bad value otherwise."""
    if isinstance(agreement, bool) or not isinstance(agreement, (int, float)) or not 0 < agreement <= 1:
        raise ValueError(f"early_exit agreement must be a share in (0, 1], e.g. 0.95; got {agreement!r}")
    if prediction not in RULES:
        raise ValueError(f"early_exit prediction must be one of {', '.join(RULES)}; got {prediction!r}")
    return float(agreement), str(prediction)


@torch.inference_mode()
def layer_predictions(decoder: Decoder, encoded: EncodedSample, reuse: bool = False) -> dict[str, list[int]]:
    """Per layer (L entries), the prediction read through the final norm and lm_head at the last position:
    ``options``: index of the option letter with the highest logit; ``vocabulary``: option index of the
    full-vocabulary argmax, or -1 when it is no option letter. `reuse`: see `last_position_states`."""
    logits = readout_logits(decoder, last_position_states(decoder, encoded.inputs, reuse), final_norm=True)
    letters = torch.as_tensor(list(encoded.option_ids), dtype=torch.long, device=logits.device)
    ids = list(encoded.option_ids)
    top = logits.argmax(dim=-1).tolist()
    return {
        "options": logits[:, letters].argmax(dim=-1).tolist(),
        "vocabulary": [ids.index(t) if t in ids else NO_OPTION for t in top],
    }


def settled_layers(choices: np.ndarray) -> np.ndarray:
    """[S] per sample the earliest layer from which every prediction equals the last layer's (choices: [S, L])."""
    equal = choices == choices[:, -1:]
    trailing = np.cumprod(equal[:, ::-1], axis=1).sum(axis=1)  # how many layers at the end agree, the last included
    return choices.shape[1] - trailing


@dataclass
class EarlyExitSummary:
    """One task's early exit (layers 0-based; shares and accuracies in %, 0-100).

    `exit_layer`: the earliest layer by which >= `agreement_threshold` of the samples have settled on their final
    prediction; `agreement_pct` / `settled_pct`: share of samples equal to / settled on the final prediction at the
    exit layer; `exit_accuracy` / `full_accuracy`: accuracy of the prediction at the exit / last layer;
    `flops_saved_pct`: decoder FLOPs of the layers after the exit layer as a share of all (None with `flops_note`
    when they cannot be counted); `*_by_layer`: the same shares at every layer."""

    prediction: str
    agreement_threshold: float
    num_layers: int
    exit_layer: int
    agreement_pct: float
    settled_pct: float
    exit_accuracy: float
    full_accuracy: float
    flops_saved_pct: float | None
    n: int
    agreement_by_layer: list[float] = field(default_factory=list)
    settled_by_layer: list[float] = field(default_factory=list)
    flops_note: str = ""

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def early_exit_summary(
    choices: Sequence[Sequence[int]],
    true_index: Sequence[int],
    flops: Sequence[Sequence[float]] | None,
    agreement: float,
    prediction: str = "options",
    flops_note: str = "",
) -> EarlyExitSummary:
    """The early exit of S samples: `choices` [S][L] predictions per layer, `true_index` [S], `flops` [S][L] decoder
    FLOPs per layer (None: not countable, `flops_note` says why). Raises ValueError on no samples or ragged input."""
    c = np.asarray(choices, dtype=int)
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
        raise ValueError(f"early exit needs predictions [samples, layers]; got shape {c.shape}")
    truth = np.asarray(true_index, dtype=int)
    if truth.shape != (c.shape[0],):
        raise ValueError(f"{len(truth)} true options for {c.shape[0]} samples")
    samples, layers = c.shape
    settled = settled_layers(c)
    needed = math.ceil(round(agreement * samples, 9))  # 0.95 x 20 = 19 samples, not 19.000000000000004
    settled_count = np.array([(settled <= layer).sum() for layer in range(layers)])
    exit_layer = int(np.argmax(settled_count >= needed))  # the last layer always qualifies: every sample settled
    agree = (c == c[:, -1:]).mean(axis=0) * 100
    saved = None
    if flops is not None:
        f = np.asarray(flops, dtype=float)
        if f.shape != c.shape:
            raise ValueError(f"FLOPs of shape {f.shape} for predictions of shape {c.shape}")
        saved = float(f[:, exit_layer + 1 :].sum() / f.sum() * 100)
    return EarlyExitSummary(
        prediction=prediction,
        agreement_threshold=agreement,
        num_layers=layers,
        exit_layer=exit_layer,
        agreement_pct=float(agree[exit_layer]),
        settled_pct=float(settled_count[exit_layer] / samples * 100),
        exit_accuracy=float((c[:, exit_layer] == truth).mean() * 100),
        full_accuracy=float((c[:, -1] == truth).mean() * 100),
        flops_saved_pct=saved,
        n=samples,
        agreement_by_layer=[float(a) for a in agree],
        settled_by_layer=[float(k / samples * 100) for k in settled_count],
        flops_note=flops_note,
    )


@register
class EarlyExit(Analysis):
    """Early-exit readiness per task (settings ``agreement`` and ``prediction``, defaults in
    flowcheck/specs/early_exit.toml; the final norm is always applied). Per sample it stores the prediction at every
    layer under both rules, the prompt length and the decoder's shape; the summary is `EarlyExitSummary`."""

    name = "early_exit"
    title = "Early-exit readiness"
    summary_type = EarlyExitSummary

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        defaults = early_exit_spec()
        self.agreement, self.prediction = check_settings(
            setup.settings.get("agreement", defaults["agreement"]),
            setup.settings.get("prediction", defaults["prediction"]),
        )
        self._shape: dict[str, Any] | None = None

    def parameters(self) -> dict[str, Any]:
        return {"final_norm": True}  # both prediction rules are stored: the rule and the share are summary settings

    def info(self) -> dict[str, Any]:
        return {"agreement": self.agreement, "prediction": self.prediction, "final_norm": True}

    def decoder_shape(self, decoder: Decoder) -> dict[str, Any]:
        """The decoder's `DecoderShape` as a JSON object, or ``{"error": reason}`` when its FLOPs cannot be counted."""
        if self._shape is None:
            try:
                shape = DecoderShape.from_config(decoder.config, gated_mlp(decoder.layers[0]))
                if shape.num_layers != decoder.num_layers:
                    raise FlopCountError(
                        f"the config describes {shape.num_layers} layers, the decoder has {decoder.num_layers}"
                    )
                self._shape = shape.to_dict()
            except FlopCountError as err:
                self._shape = {"error": str(err)}
        return self._shape

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        return {
            **layer_predictions(decoder, encoded, reuse=True),
            "n": encoded.inputs.n,
            "decoder": self.decoder_shape(decoder),
        }

    @classmethod
    def summarise(cls, view: TaskView) -> EarlyExitSummary | None:
        info = view.info.get(cls.name, {})
        defaults = early_exit_spec()
        agreement, prediction = check_settings(
            info.get("agreement", defaults["agreement"]), info.get("prediction", defaults["prediction"])
        )
        per = view.results.get(cls.name, {})
        rows = [(per[b.sample_id], b.true_index) for b in view.baselines if b.sample_id in per]
        if not rows:
            return None
        flops, note = [], ""
        for result, _ in rows:
            shape = result["decoder"]
            if "error" in shape:
                flops, note = None, f"decoder FLOPs not counted: {shape['error']}"
                break
            flops.append(decoder_flops(DecoderShape.from_dict(shape), result["n"]))
        return early_exit_summary(
            [r[prediction] for r, _ in rows], [t for _, t in rows], flops, agreement, prediction, note
        )

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        """One row per model x dataset x task (and the whole dataset), layers counted from 1."""
        rows, rules = [], set()
        for run in runs:
            for task in [*run.tasks(), "all"]:
                s = run.get(task, cls.name)
                if s is None:
                    continue
                rules.add((s.prediction, s.agreement_threshold))
                saved = "" if s.flops_saved_pct is None else f"{s.flops_saved_pct:.1f}"
                rows.append(
                    [
                        run.model,
                        run.dataset,
                        task,
                        f"{s.exit_layer + 1} of {s.num_layers}",
                        f"{s.agreement_pct:.1f}",
                        f"{s.settled_pct:.1f}",
                        f"{s.exit_accuracy:.1f}",
                        f"{s.full_accuracy:.1f}",
                        saved,
                        s.n,
                    ]
                )
        if not rows:
            return Contribution()
        kinds = " / ".join(RULES[p] for p in sorted({p for p, _ in rules}))
        shares = " / ".join(f"{a:.0%}" for a in sorted({a for _, a in rules}))
        intro = (
            f"Prediction at each layer: the last position's residual through the final norm and lm_head, {kinds}. "
            f"Exit layer: the earliest layer by which at least {shares} of the samples (all samples, correct or not) "
            "have settled on the model's final prediction (equal to it there and at every later layer). Agreement: "
            "share equal to the final prediction at the exit layer; accuracies in % of this forced choice (full "
            "accuracy: "
            "at the last layer; it can differ from the base accuracy of the other tables, which scores the model's "
            "first generated token over the whole vocabulary); decoder FLOPs saved: the layers "
            "after the exit layer over the whole prompt (projections, attention over causal pairs, MLP; Kaplan et al. "
            "2020 Table 1, Hoffmann et al. 2022 App. F), summed over samples."
        )
        table = Table(
            cls.title,
            [
                "model",
                "dataset",
                "task",
                "exit layer",
                "agreement (%)",
                "settled (%)",
                "exit accuracy (%)",
                "full accuracy (%)",
                "decoder FLOPs saved (%)",
                "n",
            ],
            rows,
            intro,
        )
        return Contribution(tables=[table])
