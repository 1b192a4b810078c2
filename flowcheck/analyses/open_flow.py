"""Open-ended flow: how the anchor words of a free-form answer depend on the video, the question and the response
so far (the authors' `information_flow_analysis_open_ended.py`, official-protocol.md 11).

Per sample: encode the open-ended prompt (the question without options, no answer prefix), generate the baseline
answer greedily, locate anchor words (verbs: spaCy's POS tagger when it and its English pipeline are installed,
else the keyword list ``flowcheck/specs/keywords/anchors_verbs.json``), teacher-force the answer up to the k-th
anchor, and sweep the conditions Video -/-> Question, Video -/-> Response, Video -/-> Last, Question -/-> Last and
Response -/-> Last over centred windows; the metric is the relative change (%) of the anchor token's probability
at the last position. A sample enters an anchor order only when the unblocked argmax there is the anchor token
(the authors' filter). Deviations, documented: the authors need >= 3 anchors per sample and keep only samples whose
mean change is <= 0; here every order a sample reaches counts and nothing is filtered on the result; the response
group is every fed-back token before the last one (the authors also drop one more unless it cuts an anchor).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np

from flowcheck.analyses.answers import MODES, OpenEndedEncoder, generation_defaults, generation_limits
from flowcheck.analyses.base import Analysis, ReportInput, Setup, TaskView, register
from flowcheck.analyses.specs import SET1, Contribution, Figure, Panel, Series
from flowcheck.edges import Condition, sweep_windows
from flowcheck.engine import condition_knockout, score
from flowcheck.engine.generate import generate_under_knockout, teacher_forced
from flowcheck.stats import bootstrap_ci

ORDER_STYLES = ("-", "--", ":", "-.")
CONDITION_COLOURS = {
    "video->question": SET1["purple"],
    "video->response": SET1["green"],
    "video->last": SET1["blue"],
    "question->last": SET1["orange"],
    "response->last": SET1["brown"],
}


def anchor_list(name: str) -> set[str]:
    """Lower-cased words of a bundled anchor list (``flowcheck/specs/keywords/anchors_<name>.json``)."""
    path = resources.files("flowcheck.specs").joinpath("keywords", f"anchors_{name}.json")
    if not path.is_file():
        raise FileNotFoundError(f"no anchor list {name!r}: expected flowcheck/specs/keywords/anchors_{name}.json")
    return {w.lower() for w in json.loads(path.read_text())["lists"][name]}


def pos_tagger(pipeline: str) -> Callable[[str], set[str]] | None:
    """spaCy's VERB tagger as ``text -> lower-cased verbs``, or None when spaCy or the pipeline is not installed
    (an optional extra: ``pip install spacy`` and ``python -m spacy download en_core_web_sm``)."""
    try:
        import spacy

        nlp = spacy.load(pipeline)
    except (ImportError, OSError):
        return None
    return lambda text: {t.text.lower() for t in nlp(text) if t.pos_ == "VERB"}


def locate_anchors(pieces: Sequence[str], words: set[str]) -> list[tuple[int, str]]:
    """(position, word) of every anchor in a decoded token stream, in order.

    A token is an anchor when its decoded text (stripped, lower-cased) is one of `words`, or when it and the next
    token together spell one; the first token's position is kept (the authors' matching).
    """
    found: list[tuple[int, str]] = []
    i = 0
    while i < len(pieces):
        one = pieces[i].strip().lower()
        two = (pieces[i] + pieces[i + 1]).strip().lower() if i + 1 < len(pieces) else ""
        if one and one in words:
            found.append((i, one))
        elif one and two in words:
            found.append((i, two))
            i += 1
        i += 1
    return found


def conditions_of(spec: dict[str, str]) -> list[Condition]:
    """The flow's conditions from ``{"source->target": label}``."""
    return [Condition(Condition.parse(name).name, Condition.parse(name).blocks, label) for name, label in spec.items()]


@register
class OpenEndedFlow(Analysis):
    """Knockout sweep on the anchor words of a generated open-ended answer (settings in generation.json:
    ``prompt`` open_ended | mc, ``max_new_tokens``, ``stop_strings``, ``anchor_orders``, ``anchors`` list name,
    ``pos_tagger`` spaCy pipeline used when ``anchors`` is ``verbs``, ``conditions``; ``by_dataset`` overrides)."""

    name = "open_ended_flow"
    title = "Open-ended flow (anchor words of a generated answer)"
    # Opt-in (--flow-analyses open_ended_flow): on the bundled default it costs about as much as every default
    # analysis together (measured CPU time per sample: +85% over the default analyses; with the answers
    # analysis's +33% the main job would more than double).
    opt_in = True
    handles_open_ended = True

    @classmethod
    def settable(cls) -> dict[str, Any]:
        return {k: v for k, v in generation_defaults()[cls.name].items() if k != "by_dataset"}

    @classmethod
    def check(cls, settings: Mapping[str, Any], num_layers: int | None) -> None:
        """Raise ValueError for settings that cannot run: unknown prompt or anchor list, anchor orders below 1,
        no or unreadable conditions, limits `generation_limits` refuses."""
        s = {**cls.settable(), **settings}
        if s["prompt"] not in MODES:
            raise ValueError(f"{cls.name}: unknown prompt {s['prompt']!r}; choose one of {', '.join(MODES)}")
        if not s["anchor_orders"] or any(int(k) < 1 for k in s["anchor_orders"]):
            raise ValueError(f"{cls.name}: anchor_orders must be anchor numbers from 1, got {s['anchor_orders']}")
        if not s["conditions"]:
            raise ValueError(f'{cls.name}: no conditions to sweep; give at least one, e.g. {{"video->last": "..."}}')
        try:
            conditions_of(s["conditions"])
            anchor_list(s["anchors"])
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(f"{cls.name}: {err}") from None
        generation_limits(cls.name, s)

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        defaults = self.settable()
        override = generation_defaults()[self.name].get("by_dataset", {}).get(setup.dataset, {})
        unknown = sorted(set(setup.settings) - set(defaults))
        if unknown:
            raise KeyError(f"{self.name}: unknown setting(s) {unknown}; known: {', '.join(sorted(defaults))}")
        self.settings = {**defaults, **{k: v for k, v in override.items() if not k.startswith("_")}, **setup.settings}
        self.check(self.settings, setup.num_layers)
        self.conditions = conditions_of(self.settings["conditions"])
        self.windows = sweep_windows(setup.num_layers, setup.plan.settings.get("sweep", {}).get("window"))
        self.orders = [int(k) for k in self.settings["anchor_orders"]]
        self.open_encoder = OpenEndedEncoder(setup)
        self._tagger: Callable[[str], set[str]] | None = None
        self._words: set[str] | None = None

    def anchor_source(self) -> str:
        """``spacy:<pipeline>`` when the tagger loads, else ``list:<name>`` (both enter the cache key)."""
        if self._tagger is None and self._words is None:
            wants_tagger = self.settings["anchors"] == "verbs" and self.settings["pos_tagger"]
            self._tagger = pos_tagger(self.settings["pos_tagger"]) if wants_tagger else None
            if self._tagger is None:
                self._words = anchor_list(self.settings["anchors"])
        return f"spacy:{self.settings['pos_tagger']}" if self._tagger else f"list:{self.settings['anchors']}"

    def parameters(self) -> dict[str, Any]:
        s = self.settings
        return {
            "prompt": s["prompt"],
            "max_new_tokens": int(s["max_new_tokens"]),
            "stop_strings": list(s["stop_strings"]),
            "orders": self.orders,
            "anchors": self.anchor_source(),
            "anchor_words": sorted(self._words) if self._words else None,
            "conditions": [[c.name, str(c.blocks)] for c in self.conditions],
            "windows": [list(w.layers) for w in self.windows],
        }

    def info(self) -> dict[str, Any]:
        return {
            "prompt": self.settings["prompt"],
            "anchors": self.anchor_source(),
            "labels": {c.name: c.label for c in self.conditions},
        }

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        tokenizer = self.setup.model.tokenizer
        # an open-ended sample (no options) arrives encoded with the open-ended prompt (the runner encodes it so)
        mode = "open_ended" if sample.open_ended else self.settings["prompt"]
        prompt = encoded if mode == "mc" or sample.open_ended else self.open_encoder(sample)
        generated = generate_under_knockout(
            decoder,
            prompt.inputs,
            None,
            max_new_tokens=int(self.settings["max_new_tokens"]),
            stop_strings=tuple(self.settings["stop_strings"]),
            tokenizer=tokenizer,
        )
        tokens = generated.token_ids
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        pieces = [tokenizer.decode([t]) for t in tokens]
        self.anchor_source()
        words = self._tagger(text) if self._tagger else self._words
        anchors = locate_anchors(pieces, words or set())
        orders: dict[str, Any] = {}
        for k in self.orders:
            if k > len(anchors):
                continue
            position, word = anchors[k - 1]
            orders[str(k)] = self._sweep(decoder, prompt, tokens, position, word)
        return {
            "prompt": mode,
            "text": text.strip(),
            "tokens": tokens,
            "anchors": [[p, w] for p, w in anchors],
            "centers": [w.center for w in self.windows],
            "orders": orders,
        }

    def _sweep(self, decoder, prompt, tokens: list[int], position: int, word: str) -> dict[str, Any]:
        inputs = teacher_forced(decoder, prompt.inputs, tokens[:position])
        layout = prompt.layout.with_response(position)
        anchor = tokens[position]
        usable = [c for c in self.conditions if all(layout.spans(g) for b in c.blocks for g in (b.source, b.target))]
        pairs = [(c, w) for c in usable for w in self.windows]
        knockouts = [condition_knockout(c, w, layout) for c, w in pairs]
        base, scored = score(decoder, inputs, knockouts, [anchor], **self.setup.plan.engine)
        out: dict[str, Any] = {"word": word, "position": position, "p_base": float(base.probs[0])}
        if base.argmax != anchor:
            out["skipped"] = "the unblocked argmax is not the anchor token"
            return out
        changes: dict[str, list[float]] = {c.name: [] for c in usable}
        for (c, _), s in zip(pairs, scored, strict=True):
            changes[c.name].append((float(s.probs[0]) - out["p_base"]) / out["p_base"] * 100)
        out["changes"] = changes
        return out

    @classmethod
    def summarise(cls, view: TaskView) -> dict[str, Any] | None:
        per = view.results.get(cls.name, {})
        ids = [b.sample_id for b in view.baselines] + [o.sample_id for o in view.open_ended]
        results = [per[i] for i in ids if i in per]
        if not results:
            return None
        curves: dict[str, dict[str, Any]] = {}
        counts: dict[str, int] = {}
        centers = results[0]["centers"]
        for r in results:
            for order, o in r["orders"].items():
                if "changes" not in o:
                    continue
                counts[order] = counts.get(order, 0) + 1
                for condition, values in o["changes"].items():
                    curves.setdefault(f"{order}|{condition}", {"values": []})["values"].append(values)
        info = view.info.get(cls.name, {})
        out: dict[str, Any] = {
            "n": len(results),
            # per-sample prompts (results cached before they were recorded used the run's setting)
            "prompt": ", ".join(sorted({r.get("prompt", info.get("prompt", "")) for r in results})),
            "anchors": info.get("anchors", ""),
            "with_anchor": counts,
            "labels": info.get("labels", {}),  # condition -> label, in the order of generation.json
            "curves": {},
        }
        for key, c in sorted(curves.items()):
            values = np.asarray(c["values"], dtype=float)  # [samples, centres]
            bands = [bootstrap_ci(values[:, i], seed=view.seed, n_boot=view.n_boot) for i in range(values.shape[1])]
            out["curves"][key] = {
                "centers": centers,
                "mean": values.mean(axis=0).tolist(),
                "lo": [b[0] for b in bands],
                "hi": [b[1] for b in bands],
                "n": len(values),
            }
        return out

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        out = Contribution()
        for run in runs:
            summary = run.get("all", cls.name)
            whose = f"{run.model} on {run.dataset}"
            if not summary or not summary["curves"]:
                if summary is not None:
                    out.missing.append(
                        f"open-ended flow for {whose}: no sample's unblocked argmax was an anchor word "
                        f"({summary['n']} samples)"
                    )
                continue
            labels = summary.get("labels") or {}
            panels: dict[str, Panel] = {c: Panel(label) for c, label in labels.items()}
            for key, curve in summary["curves"].items():
                order, condition = key.split("|", 1)
                panel = panels.setdefault(condition, Panel(condition.replace("->", " -/-> ")))
                panel.series.append(
                    Series(
                        f"anchor {order} (n={curve['n']})",
                        [c + 1 for c in curve["centers"]],
                        curve["mean"],
                        curve["lo"],
                        curve["hi"],
                        CONDITION_COLOURS.get(condition),
                        ORDER_STYLES[(int(order) - 1) % len(ORDER_STYLES)],
                    )
                )
            out.figures.append(
                Figure(
                    "Open-ended flow",
                    f"open-ended-flow-{run.file_stem()}.png",
                    "Mean relative change (95% bootstrap CI) of the k-th anchor word's probability, answer "
                    "teacher-forced up to it, window centred at each layer; one line style per anchor order; samples "
                    "whose unblocked argmax is the anchor. "
                    f"Prompt: {summary.get('prompt', '')}; anchors: {summary.get('anchors', '')}.",
                    whose,
                    [p for p in panels.values() if p.series],
                    suptitle=f"Open-ended flow: {whose}",
                    options={"num_layers": run.num_layers},
                )
            )
        return out
