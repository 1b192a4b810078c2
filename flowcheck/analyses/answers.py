"""Answers under knockout: the model's generated answer with and without a knockout (the poster's Table 2,
"Answer Example" column: cross-frame attention blocked in the first half of the layers).

Generation is greedy (`flowcheck.engine.generate`), the knockout active over the prompt and every decoded token
(new tokens inherit the last prompt row's blocking pattern, the authors' convention). Two prompt modes (setting
``mode``): ``"mc"``, the paper's multiple-choice prompt ending in ``Best option:(``, whose first generated token is
mapped to its option; ``"open_ended"``, the question without options and without the answer prefix
(`flowcheck.prompt.open_text`). Defaults are data: ``flowcheck/specs/generation.json``. Open-ended samples (a
free-text reference answer, no options) always use the open-ended prompt; the report shows their reference answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from flowcheck.analyses.base import Analysis, ReportInput, Setup, TaskView, register
from flowcheck.analyses.specs import Contribution, Table
from flowcheck.data.sample import OPTION_LETTERS
from flowcheck.edges import check_layout_for, parse_user_layers, resolve_conditions
from flowcheck.engine.generate import Generation, generate_under_knockout
from flowcheck.models.base import EncodedSample

MODES = ("mc", "open_ended")
HEADERS = [
    "model",
    "dataset",
    "task",
    "acc drop (points)",
    "answers changed",
    "question",
    "answer",
    "answer (knockout)",
]


@cache
def generation_defaults() -> dict[str, Any]:
    """``flowcheck/specs/generation.json``: default settings of the generation analyses, by analysis name."""
    return json.loads(resources.files("flowcheck.specs").joinpath("generation.json").read_text())


def settings_with_defaults(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The analysis's defaults from generation.json updated with the run's settings; raises KeyError naming an
    unknown setting."""
    defaults = dict(generation_defaults()[name])
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise KeyError(f"analysis {name!r}: unknown setting(s) {unknown}; known: {', '.join(sorted(defaults))}")
    return {**defaults, **settings}


def generation_limits(name: str, settings: Mapping[str, Any]) -> None:
    """Raise ValueError when `max_new_tokens` exceeds the limit in generation.json (``max_new_tokens_limit``: a
    typo such as 100000000 would run for hours) or a stop string is empty (it would stop every answer after its
    first token)."""
    limit = int(generation_defaults()["max_new_tokens_limit"])
    if int(settings["max_new_tokens"]) > limit:
        raise ValueError(
            f"{name}: max_new_tokens {settings['max_new_tokens']} is above {limit} (max_new_tokens_limit in "
            "flowcheck/specs/generation.json; the authors generate at most 512)"
        )
    if any(not s for s in settings["stop_strings"]):
        raise ValueError(f"{name}: an empty stop string would stop every answer after one token; remove it")


def knockout_text(summary: Mapping[str, Any], num_layers: int) -> str:
    """The knockout of an answers summary in words, layers from 1: ``cross_frame blocked in layers 1-4`` (an empty
    summary: the default, cross-frame in the first half, the knockout of the accuracy analysis's Table 2)."""
    layers = summary.get("layers") or list(range(num_layers // 2))
    first, last = min(layers) + 1, max(layers) + 1
    where = f"layer {first}" if first == last else f"layers {first}-{last}"
    if sorted(layers) != list(range(first - 1, last)):
        where = "layers " + ", ".join(str(x + 1) for x in sorted(layers))
    return f"{summary.get('condition', 'cross_frame')} blocked in {where}"


class OpenEndedEncoder:
    """Encodes samples with the open-ended prompt through the run's adapter (frames read again, a few kept)."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        # imported here: the report re-renders these analyses from results.json without the frame loader
        from flowcheck.data.frames import FrameCache

        self.frames = FrameCache(max_items=2)

    def __call__(self, sample) -> EncodedSample:
        model = self.setup.model
        from flowcheck.data.frames import FrameRequest

        frames = self.frames.get(FrameRequest.of(sample, model.num_frames))
        return model.adapter.encode_open_ended(sample, frames)


def answer_record(generation: Generation, tokenizer, encoded: EncodedSample, true_index: int | None) -> dict:
    """One generated answer as JSON: text, tokens, why it stopped and, for a multiple-choice prompt, the option its
    first token names (`choice`, None when it is no option letter) and whether that is the true option."""
    out: dict[str, Any] = {
        "text": tokenizer.decode(generation.token_ids, skip_special_tokens=True).strip(),
        "tokens": generation.token_ids,
        "stopped": generation.stopped,
    }
    if true_index is not None:
        first = generation.token_ids[0] if generation.token_ids else None
        choice = encoded.option_ids.index(first) if first in encoded.option_ids else None
        out["choice"] = choice
        out["correct"] = choice == true_index
    return out


def shown(answer: Mapping[str, Any], options: Sequence[str]) -> str:
    """An answer as the report shows it: ``(X) option text`` for a parsed choice, the generated text otherwise."""
    choice = answer.get("choice")
    if choice is not None:
        return f"({OPTION_LETTERS[choice]}) {options[choice]}"
    return answer["text"] or "(empty)"


@register
class AnswersUnderKnockout(Analysis):
    """Greedy answers with and without a knockout (settings in generation.json: ``mode`` mc | open_ended,
    ``max_new_tokens``, ``stop_strings``, ``condition`` and ``layers`` of the knockout, ``examples`` per task)."""

    name = "answers_under_knockout"
    title = "Answers under knockout (Table 2, answer examples)"
    handles_open_ended = True

    @classmethod
    def settable(cls) -> dict[str, Any]:
        return dict(generation_defaults()[cls.name])

    @classmethod
    def check(cls, settings: Mapping[str, Any], num_layers: int | None) -> None:
        """Raise ValueError for settings that cannot run: unknown mode or condition, layers outside the model
        (``first_half``, ``second_half``, ``FIRST-LAST`` or one layer, from 1), stop strings or limits
        `generation_limits` refuses."""
        s = settings_with_defaults(cls.name, settings)
        if s["mode"] not in MODES:
            raise ValueError(f"{cls.name}: unknown mode {s['mode']!r}; choose one of {', '.join(MODES)}")
        try:
            resolve_conditions([s["condition"]])
            if num_layers is not None:
                parse_user_layers(s["layers"], num_layers)
        except ValueError as err:
            raise ValueError(f"{cls.name}: {err}") from None
        generation_limits(cls.name, s)

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.settings = settings_with_defaults(self.name, setup.settings)
        self.check(self.settings, setup.num_layers)
        (self.condition,) = resolve_conditions([self.settings["condition"]])
        self.window = parse_user_layers(self.settings["layers"], setup.num_layers)
        self.open_encoder = OpenEndedEncoder(setup)

    def parameters(self) -> dict[str, Any]:
        s = self.settings
        return {
            "mode": s["mode"],
            "max_new_tokens": int(s["max_new_tokens"]),
            "stop_strings": list(s["stop_strings"]),
            "condition": [self.condition.name, str(self.condition.blocks)],
            "layers": list(self.window.layers),
            "convention": "new tokens inherit the last prompt row",
        }

    def info(self) -> dict[str, Any]:
        return {
            "mode": self.settings["mode"],
            "condition": self.condition.name,
            "layers": list(self.window.layers),
            "examples": int(self.settings["examples"]),
        }

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        mc = self.settings["mode"] == "mc" and not sample.open_ended
        # an open-ended sample arrives encoded with the open-ended prompt (the runner encodes it so)
        prompt = encoded if mc or sample.open_ended else self.open_encoder(sample)
        check_layout_for(self.condition, prompt.layout)
        rects = self.condition.rectangles(prompt.layout)
        tokenizer = self.setup.model.tokenizer
        options = {
            "max_new_tokens": int(self.settings["max_new_tokens"]),
            "stop_strings": tuple(self.settings["stop_strings"]),
            "tokenizer": tokenizer,
        }
        base = generate_under_knockout(decoder, prompt.inputs, None, **options)
        knocked = generate_under_knockout(decoder, prompt.inputs, dict.fromkeys(self.window.layers, rects), **options)
        truth = sample.answer_index if mc else None
        out = {
            "mode": "mc" if mc else "open_ended",
            "question": sample.question,
            "options": list(sample.options),
            "true_index": sample.answer_index,
            "baseline": answer_record(base, tokenizer, prompt, truth),
            "knockout": answer_record(knocked, tokenizer, prompt, truth),
            "differ": base.token_ids != knocked.token_ids,
        }
        if sample.open_ended:
            out["reference"] = sample.reference
        return out

    @classmethod
    def summarise(cls, view: TaskView) -> dict[str, Any] | None:
        ids = [b.sample_id for b in view.baselines] + [o.sample_id for o in view.open_ended]
        results = [(i, r) for i in ids if (r := view.results.get(cls.name, {}).get(i))]
        if not results:
            return None
        n = len(results)
        choice = [r for _, r in results if r["mode"] == "mc"]
        info = view.info.get(cls.name, {})
        summary: dict[str, Any] = {
            "condition": info.get("condition", "cross_frame"),
            "layers": list(info.get("layers", range(view.num_layers // 2))),  # 0-based
            "mode": ", ".join(sorted({r["mode"] for _, r in results})),
            "n": n,
            "changed": sum(r["differ"] for _, r in results),
        }
        summary["changed_share"] = 100 * summary["changed"] / n
        if choice:  # the multiple-choice answers only (open-ended ones have no option to be right about)
            summary["n_mc"] = len(choice)
            summary["accuracy_base"] = 100 * sum(r["baseline"]["correct"] for r in choice) / len(choice)
            summary["accuracy_knockout"] = 100 * sum(r["knockout"]["correct"] for r in choice) / len(choice)
            # `changed` counts any differing token; a different option is what the accuracy drop measures
            summary["choice_changed"] = sum(r["baseline"].get("choice") != r["knockout"].get("choice") for r in choice)

        def rank(item: tuple[str, dict]) -> int:
            r = item[1]
            flipped = r["mode"] == "mc" and r["baseline"]["correct"] and not r["knockout"]["correct"]
            return 0 if flipped else 1

        changed = sorted((item for item in results if item[1]["differ"]), key=rank)  # stable: task order kept
        limit = int(view.info.get(cls.name, {}).get("examples", generation_defaults()[cls.name]["examples"]))

        def side(r: dict, which: str) -> str:
            same_choice = r["mode"] == "mc" and r["baseline"].get("choice") == r["knockout"].get("choice")
            text = shown(r[which], r["options"])
            return f"{text} [generated: {r[which]['text']}]" if same_choice else text

        summary["examples"] = [
            {
                "sample_id": sid,
                "question": r["question"],
                "baseline": side(r, "baseline"),
                "knockout": side(r, "knockout"),
                "baseline_text": r["baseline"]["text"],
                "knockout_text": r["knockout"]["text"],
                "flip": "correct -> wrong" if rank((sid, r)) == 0 else "changed",
                **({"reference": r["reference"]} if "reference" in r else {}),
            }
            for sid, r in changed[:limit]
        ]
        return summary

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        rows = []
        knockouts = set()
        for run in runs:
            for task in run.tasks():
                s = run.get(task, cls.name)
                if s is None:
                    continue
                knockout = knockout_text(s, run.num_layers)
                knockouts.add(knockout)
                acc = run.get(task, "accuracy")
                drop = "" if acc is None else (f"{acc.drop_points:+.1f}" if acc.base > 0 else "n/a (none correct)")
                if acc is None and "accuracy_base" not in s:
                    drop = "n/a (open-ended)"
                elif knockout != knockout_text({}, run.num_layers):
                    drop = f"n/a (the accuracy drop is of {knockout_text({}, run.num_layers)})"
                share = f"{s['changed_share']:.0f}% ({s['changed']} of {s['n']})"
                if "choice_changed" in s:
                    share += f"; option changed in {s['choice_changed']}"
                if "accuracy_base" in s:
                    share += f"; generated-letter accuracy {s['accuracy_base']:.0f} -> {s['accuracy_knockout']:.0f}"
                    if s.get("n_mc", s["n"]) != s["n"]:
                        share += f" (the {s['n_mc']} multiple-choice samples)"
                examples = s["examples"] or [{"question": "", "baseline": "no answer changed", "knockout": ""}]
                for i, ex in enumerate(examples):
                    head = [run.model, run.dataset, task, drop, share] if i == 0 else ["", "", "", "", ""]
                    question = ex["question"] + (f" (reference: {ex['reference']})" if ex.get("reference") else "")
                    rows.append([*head, question, ex["baseline"], ex["knockout"]])
        if not rows:
            return Contribution()
        table = Table(
            "Answers under knockout (the poster's Table 2 answer examples): without and with "
            + (knockouts.pop() if len(knockouts) == 1 else "the run's knockout (" + "; ".join(sorted(knockouts)) + ")"),
            HEADERS,
            rows,
            "Greedy generation (transformers generate, do_sample=False) with the knockout over the prompt and every "
            "new token; new tokens inherit the last prompt row's blocking pattern (the authors' convention). "
            "Multiple-choice prompts show the option named by the first generated token (and the generated text in "
            "brackets when only later tokens changed); open-ended questions (no candidates) are answered with the "
            "open-ended prompt and show their reference answer next to the question. Examples: up to three per "
            "task whose answer changed, correct -> wrong first, then in task order. Acc drop: first-token letter "
            "scoring over all samples (accuracy analysis).",
        )
        return Contribution(tables=[table])
