"""Logit lens on video tokens (the paper's Fig. 4): when do spatial and temporal words become readable?

For every layer and video position the residual is projected onto the vocabulary with a chosen
unembedding (the input embedding matrix by default, as the authors) and its top-1 token is
compared with keyword lists (data files in flowcheck/specs/keywords). Layer entries follow the
authors: l < L-1 is the residual entering layer l (no norm unless asked), L-1 is the normed
output of the last layer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowcheck.analyses.base import Analysis, AnalysisUnavailable, ReportInput, Setup, TaskView, register
from flowcheck.analyses.hidden import hidden_states
from flowcheck.analyses.specs import Contribution, Figure, LensPanel
from flowcheck.engine import Decoder
from flowcheck.models.base import EncodedSample

UNEMBEDDINGS = ("input", "output")


@dataclass(frozen=True)
class KeywordLists:
    """Named keyword lists resolved to token ids; `multi_token` names words matched by their first sub-token."""

    lists: dict[str, list[str]]
    token_ids: dict[str, list[int]]
    multi_token: list[str]
    words: dict[int, str] = field(default_factory=dict)  # token id -> the first word of its list that maps to it

    @property
    def all_ids(self) -> list[int]:
        return sorted({i for ids in self.token_ids.values() for i in ids})

    def list_of(self) -> dict[int, str]:
        """Token id -> the name of the list it belongs to (lists share no token: `resolve_keywords`)."""
        return {tid: name for name, ids in self.token_ids.items() for tid in ids}


class KeywordError(ValueError):
    """Keyword lists that cannot be used with a model: a list with no word in its vocabulary, or two lists that
    share a token. The message names the words involved."""


def load_keyword_file(name_or_path: str) -> dict:
    """A keyword file: a path, or the name of a bundled one (``action_sequence``, ``synthetic``).

    Raises KeywordError when there is no such file or it has no ``lists`` object."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        data = json.loads(path.read_text())
    else:
        bundled = resources.files("flowcheck.specs").joinpath("keywords", f"{name_or_path}.json")
        if not bundled.is_file():
            raise KeywordError(f"no keyword file {name_or_path!r}: give a JSON path or a bundled name")
        data = json.loads(bundled.read_text())
    if not isinstance(data.get("lists"), dict) or not data["lists"]:
        raise KeywordError(f'keyword file {name_or_path!r} has no "lists" object of named word lists')
    return data


def resolve_keywords(tokenizer, lists: Mapping[str, Sequence[str]], multi_token: str = "first") -> KeywordLists:
    """Map words to token ids. ``multi_token="first"`` keeps a word's first sub-token (the authors' choice,
    recorded in `multi_token`); ``"skip"`` drops words that are not one token.

    Raises KeywordError when a list keeps no word (none is in the vocabulary), or when two lists share a
    token id (a hit must belong to one list), naming the words."""
    if multi_token not in ("first", "skip"):
        raise ValueError("multi_token must be 'first' or 'skip'")
    token_ids: dict[str, list[int]] = {}
    words_of: dict[tuple[str, int], list[str]] = {}
    several: list[str] = []
    for name, words in lists.items():
        ids: set[int] = set()
        for word in words:
            pieces = tokenizer(word, add_special_tokens=False).input_ids
            if not pieces or pieces[0] == getattr(tokenizer, "unk_token_id", None):
                continue
            if len(pieces) > 1:
                several.append(word)
                if multi_token == "skip":
                    continue
            ids.add(pieces[0])
            words_of.setdefault((name, pieces[0]), []).append(word)
        token_ids[name] = sorted(ids)
    empty = [name for name, ids in token_ids.items() if not ids]
    if empty:
        shown = "; ".join(f"{name}: {', '.join(list(lists[name])[:8])}" for name in empty)
        raise KeywordError(
            f"no word of the keyword list(s) {', '.join(repr(n) for n in empty)} is a token of this model's "
            f"vocabulary ({shown}); give keyword lists for this model (registry setting `keywords`)"
        )
    clashes = []
    names = list(token_ids)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for tid in sorted(set(token_ids[a]) & set(token_ids[b])):
                clashes.append(f"{words_of[(a, tid)]} in {a!r} and {words_of[(b, tid)]} in {b!r} (token {tid})")
    if clashes:
        raise KeywordError(f"keyword lists share tokens: {'; '.join(clashes)}; a hit must belong to one list")
    words = {tid: names[0] for (_, tid), names in words_of.items()}
    return KeywordLists({k: list(v) for k, v in lists.items()}, token_ids, several, words)


def setup_keywords(setup: Setup, fallback: str = "logit_lens") -> KeywordLists:
    """The keyword lists of an analysis: its own ``keywords`` setting, else those of analysis `fallback` (the
    logit lens: the registry's or the dataset's lists). Raises AnalysisUnavailable when none is set or the lists
    do not fit the model's vocabulary (`resolve_keywords`)."""
    source = setup.settings.get("keywords") or setup.plan.setting(fallback).get("keywords")
    if not source:
        raise AnalysisUnavailable("no keyword list is set (logit_lens keywords)")
    try:
        return resolve_keywords(setup.model.tokenizer, load_keyword_file(source)["lists"])
    except KeywordError as err:
        raise AnalysisUnavailable(f"keywords {source!r}: {err}") from None


def list_hits(top1: np.ndarray, keywords: KeywordLists) -> dict[str, list[int]]:
    """Per list, [L] counts of video positions whose top-1 token (`top1` [L, video positions]) is one of its
    keywords."""
    return {
        name: [int(np.isin(top1[layer], ids).sum()) for layer in range(top1.shape[0])]
        for name, ids in keywords.token_ids.items()
    }


@torch.inference_mode()
def video_top1(
    decoder: Decoder, encoded: EncodedSample, unembedding: str = "input", final_norm: bool = False
) -> np.ndarray:
    """[L, video positions] top-1 token ids of the video residuals."""
    if unembedding not in UNEMBEDDINGS:
        raise ValueError(f"unembedding must be one of {', '.join(UNEMBEDDINGS)}")
    weight = (decoder.input_embeddings() if unembedding == "input" else decoder.lm_head).weight
    states = hidden_states(decoder, encoded.inputs)
    video = encoded.layout.video
    rows = []
    for layer in range(decoder.num_layers):
        h = states[layer] if layer < decoder.num_layers - 1 else states[-1]
        h = h[0, video.start : video.end]
        if final_norm and layer < decoder.num_layers - 1 and decoder.norm is not None:
            h = decoder.norm(h)
        rows.append((h.float() @ weight.float().T).argmax(-1).cpu().numpy())
    return np.stack(rows)


def keyword_hits(top1: np.ndarray, keywords: KeywordLists) -> dict[str, list[list[int]]]:
    """Per list, [keyword token][layer] counts of video positions whose top-1 is that token."""
    return {
        name: [[int((top1[layer] == tid).sum()) for layer in range(top1.shape[0])] for tid in ids]
        for name, ids in keywords.token_ids.items()
    }


@dataclass
class LensSummary:
    """Binned, normalised hit frequencies per list and the hit-weighted mean layer per list."""

    bins: list[tuple[int, int]]
    frequencies: dict[str, list[float]]
    mean_layer: dict[str, float]
    hits: dict[str, int]
    kept_keywords: dict[str, int]
    samples: int = 0  # samples whose hits are summed

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def layer_bins(num_layers: int, size: int) -> list[tuple[int, int]]:
    """Non-overlapping bins [a, b) of `size` layers (the authors' bins overlapped by one layer)."""
    if size < 1:
        raise ValueError("bin size must be at least 1")
    return [(a, min(a + size, num_layers)) for a in range(0, num_layers, size)]


def summarise_hits(
    hits: Mapping[str, Sequence[Sequence[int]]], bin_size: int, num_layers: int, min_count: int = 1, samples: int = 0
) -> LensSummary:
    """Bin per-layer counts (`hits`: per list, [keyword][layer] counts, L = `num_layers`); drop keywords with fewer
    than `min_count` hits; normalise each keyword over bins and average the keywords of a list (the paper's
    ALL_NORM); mean layer (0-based) weighted by all hits of a list, NaN for a list without hits."""
    bins = layer_bins(num_layers, bin_size)
    frequencies, mean_layer, totals, kept = {}, {}, {}, {}
    for name, rows in hits.items():
        counts = np.asarray(rows, dtype=float).reshape(-1, num_layers)
        binned = (
            np.stack([counts[:, a:b].sum(axis=1) for a, b in bins], axis=1) if len(counts) else np.zeros((0, len(bins)))
        )
        keep = binned.sum(axis=1) >= max(min_count, 1)
        normalised = binned[keep] / binned[keep].sum(axis=1, keepdims=True)
        frequencies[name] = list(normalised.mean(axis=0)) if keep.any() else [0.0] * len(bins)
        per_layer = counts.sum(axis=0)
        totals[name] = int(per_layer.sum())
        mean_layer[name] = (
            float((per_layer * np.arange(num_layers)).sum() / per_layer.sum()) if per_layer.sum() else float("nan")
        )
        kept[name] = int(keep.sum())
    return LensSummary(bins, frequencies, mean_layer, totals, kept, samples)


def lens_bin_size(num_layers: int) -> int:
    """Eight bins over the depth, as the paper's 5-layer bins over 40 layers."""
    return max(1, round(num_layers / 8))


@register
class LogitLens(Analysis):
    """Top-1 keyword hits of the video residuals per layer (settings: ``keywords``, a keyword file name or path;
    ``unembedding``, "input" as the authors or "output"; ``norm``); summarised over the correctly answered
    samples into the paper's Fig. 4. Raises AnalysisUnavailable when the keyword lists do not fit the model's
    vocabulary (see `resolve_keywords`)."""

    name = "logit_lens"
    title = "Logit lens on video tokens (Fig. 4)"
    summary_type = LensSummary

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        source = setup.settings.get("keywords")
        if not source:
            raise AnalysisUnavailable("no keyword list is set (logit_lens keywords)")
        try:
            self.keywords = resolve_keywords(setup.model.tokenizer, load_keyword_file(source)["lists"])
        except KeywordError as err:
            raise AnalysisUnavailable(f"keywords {source!r}: {err}") from None
        self.unembedding = setup.settings.get("unembedding", "input")
        self.norm = bool(setup.settings.get("norm", False))

    def parameters(self) -> dict[str, Any]:
        return {"keywords": self.keywords.token_ids, "unembedding": self.unembedding, "norm": self.norm}

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        return {"hits": keyword_hits(video_top1(decoder, encoded, self.unembedding, self.norm), self.keywords)}

    def info(self) -> dict[str, Any]:
        k = self.keywords
        return {"lists": k.lists, "token_ids": k.token_ids, "multi_token": k.multi_token}

    @classmethod
    def summarise(cls, view: TaskView) -> LensSummary | None:
        hits = [r["hits"] for r in view.of(cls.name, chosen_only=True)]
        if not hits:
            return None
        layers = view.num_layers
        total = {
            name: np.sum([np.asarray(h[name]).reshape(-1, layers) for h in hits], axis=0).tolist() for name in hits[0]
        }
        return summarise_hits(total, lens_bin_size(layers), layers, samples=len(hits))

    @classmethod
    def summary_from_dict(cls, data: Mapping[str, Any]) -> LensSummary:
        summary = super().summary_from_dict(data)
        summary.bins = [tuple(b) for b in summary.bins]
        return summary

    @classmethod
    def gate_numbers(cls, summary: LensSummary, task: str) -> dict[str, dict[str, float]]:
        if task != "all":
            return {}
        layers = {f"lens_mean_layer/{k}": v + 1 for k, v in summary.mean_layer.items() if not np.isnan(v)}
        return {"layer": layers} if layers else {}

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        out = Contribution()
        for run in runs:
            whose = f"{run.model} on {run.dataset}"
            lens = run.get("all", cls.name)
            if run.problems.get(cls.name):
                out.missing.append(f"Fig. 4 for {whose}: {run.problems[cls.name]}")
                continue
            if lens is None or not any(lens.hits.values()):
                out.missing.append(f"Fig. 4 for {whose}: no video position reads as a keyword at any layer")
                continue
            bins = [f"{a + 1}-{b}" if b - a > 1 else f"{a + 1}" for a, b in lens.bins]
            mean_layers = {k: v + 1 for k, v in lens.mean_layer.items()}
            out.figures.append(
                Figure(
                    cls.title,
                    f"fig4-logit-lens-{run.file_stem()}.png",
                    "Bars: top-1 keyword hits per layer bin, each keyword's hits normalised over the bins and then "
                    "averaged over the keywords of its list (the authors' normalisation: a keyword with 2 hits weighs "
                    "as much as one with 2,000). Legend: the mean layer of all hits, each hit weighing the same (what "
                    f"claim C3 compares); the two differ when a few rare keywords sit in one bin. Hits {lens.hits}.",
                    whose,
                    [LensPanel(whose, bins, lens.frequencies, mean_layers)],
                    kind="bars",
                    suptitle="Fig. 4 — Keywords read from video tokens (logit lens)",
                )
            )
        return out
