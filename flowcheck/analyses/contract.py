"""The adapter contract: checks that what an adapter feeds the engine is what the model itself sees.

`verify(adapter, sample, frames)` encodes one sample and runs every check on it; it works on any
checkpoint an adapter loads (the tiny test models as well as a user's real 7B weights), so the
same code guards the library's tests, `flowcheck verify MODEL` and the suites' session-start
check. Each check returns a `Check` (name, verdict ``pass`` / ``fail`` / ``skip``, detail); a
check that raises fails with the error as its detail. Tolerances are data
(``flowcheck/specs/contract.toml``, per decoder dtype, with their justification).

The checks, in order (`CHECKS`):

- ``video_span``: the positions the model itself filled with visual embeddings (rows whose
  decoder input differs from the token embedding of their id) lie inside the layout's video span;
  one block of them equals the span exactly, several blocks (frames interleaved with timestamps
  or separators) lie one per frame span; the frames partition the span (`TokenLayout` enforces it).
- ``text_spans``: the question span decodes to the sample's question and each option span to
  ``(X) option`` (white space ignored: tokenizers differ in how they decode spaces).
- ``decoder_inputs``: the captured decoder inputs, run through the engine's decoder path, give the
  logits of the model's own forward at the last position.
- ``option_letters``: each option letter is one token right after the prompt's end (the answer
  prefix), the ids are distinct and decode to their letters, and the prompt ends with the prefix.
- ``local_knockout``: ``video->last`` knocked out in every layer changes the last row of the
  decoder's hidden states and no other row.
- ``fast_engine``: the fast engine's probabilities equal the plain engine's on every paper
  condition (every condition group) in an early and a late window.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from flowcheck.version import __version__

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from flowcheck.cache import ResultCache, cache_key
from flowcheck.data.sample import OPTION_LETTERS, Sample
from flowcheck.edges import Condition, Window, make_window, paper_conditions
from flowcheck.engine import LMInputs, condition_knockout, knockout, last_logits, score
from flowcheck.engine.scoring import no_padding
from flowcheck.layout import Span
from flowcheck.models.base import EncodedSample, ModelAdapter
from flowcheck.models.handle import ModelHandle
from flowcheck.models.hf_native import _runs
from flowcheck.models.registry import adapter_class

CHECKS = ("video_span", "text_spans", "decoder_inputs", "option_letters", "local_knockout", "fast_engine")
VERDICTS = ("pass", "fail", "skip")
CACHE_KIND = "verify"


@dataclass(frozen=True)
class Check:
    """One contract check's outcome: `verdict` is ``pass``, ``fail`` or ``skip``; `detail` says what was measured."""

    name: str
    verdict: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def line(self) -> str:
        """The verdict line, e.g. ``PASS  video_span  one block of 32 video tokens ...``."""
        return f"{self.verdict.upper():<4}  {self.name:<15} {self.detail}"


@dataclass(frozen=True)
class Verification:
    """The contract checks of one model on one sample (JSON-serialisable with `to_json` / `from_json`).

    `fingerprint` identifies the checkpoint (`ModelAdapter.fingerprint`), `sample_fingerprint`
    the sample's annotation and decoded frames; `prompt` is the prompt the model receives with its
    spans marked (`marked_prompt`); `cached` is True when the result came from the result cache.
    """

    model: str
    family: str
    fingerprint: str
    sample_id: str
    sample_fingerprint: str
    dtype: str
    device: str
    version: str
    checks: tuple[Check, ...]
    prompt: str
    cached: bool = False
    prompt_notes: dict[str, str] = dataclasses.field(default_factory=dict)  # how the chat template rendered

    @property
    def ok(self) -> bool:
        """Whether every check passed or was skipped."""
        return not any(c.failed for c in self.checks)

    @property
    def failed(self) -> list[str]:
        """Names of the failed checks."""
        return [c.name for c in self.checks if c.failed]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def summary(self) -> str:
        """One line for a run table: ``contract held (6 checks)`` or ``contract FAILED: video_span, ...``."""
        if self.ok:
            skipped = [c.name for c in self.checks if c.verdict == "skip"]
            extra = f", skipped: {', '.join(skipped)}" if skipped else ""
            return f"contract held ({len(self.checks) - len(skipped)} checks{extra})"
        return f"contract FAILED: {', '.join(self.failed)}"

    def lines(self) -> list[str]:
        """A verdict line per check."""
        return [c.line() for c in self.checks]

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["checks"] = [dataclasses.asdict(c) for c in self.checks]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verification:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["checks"] = tuple(Check(**c) for c in data["checks"])
        return cls(**values)


# -- tolerances ----------------------------------------------------------------------------------------
def tolerances(dtype: torch.dtype | str) -> dict[str, float]:
    """The contract's tolerances (``logits``, ``hidden``, ``probs``) for a decoder dtype, from contract.toml."""
    name = str(dtype).replace("torch.", "")
    data = tomllib.loads(resources.files("flowcheck.specs").joinpath("contract.toml").read_text())
    if name not in data["logits"]:
        raise ValueError(f"no contract tolerance for dtype {name!r}; known: {', '.join(data['logits'])}")
    return {kind: float(values[name]) for kind, values in data.items()}


def _guarded(name: str, run: Callable[[], tuple[str, str]]) -> Check:
    try:
        verdict, detail = run()
    except Exception as err:  # a check that cannot run is a failed check, with the reason
        return Check(name, "fail", f"raised {type(err).__name__}: {err}")
    return Check(name, verdict, detail)


def _dtype_name(adapter: ModelAdapter) -> str:
    return str(adapter.dtype).replace("torch.", "")


def _verdict(ok: bool) -> str:
    return "pass" if ok else "fail"


# -- shared measurements -------------------------------------------------------------------------------
def decoder_hidden(adapter: ModelAdapter, inputs: LMInputs) -> torch.Tensor:
    """The decoder's last hidden states ([n, hidden]) for one sample's decoder inputs (engine path, no cache)."""
    with torch.inference_mode():
        out = adapter.decoder.module(**inputs.kwargs(), attention_mask=no_padding(inputs), use_cache=False)
    return out.last_hidden_state[0]


def visual_rows(adapter: ModelAdapter, enc: EncodedSample) -> list[int]:
    """Positions whose decoder input is not the token embedding of their id: where the model put video.

    Needs `enc.input_ids` (expanded ids); ids outside the embedding table (some processors' video
    placeholders) count as changed.
    """
    if enc.input_ids is None:
        raise ValueError("the adapter gives no expanded input_ids, so the model's placeholder rows cannot be read")
    table = adapter.decoder.input_embeddings()
    ids = enc.input_ids.to(adapter.device)
    with torch.inference_mode():
        tokens = table(ids.clamp(0, table.weight.shape[0] - 1))[None]
    changed = (enc.inputs.inputs_embeds != tokens.to(enc.inputs.inputs_embeds.dtype)).any(-1)[0]
    changed |= (ids >= table.weight.shape[0]).to(changed.device)
    return changed.nonzero().flatten().tolist()


# -- the checks -------------------------------------------------------------------------------------------
def check_video_span(adapter: ModelAdapter, enc: EncodedSample) -> Check:
    """The layout's video span and frames against the rows the model itself filled with visual embeddings."""

    def run() -> tuple[str, str]:
        layout = enc.layout
        blocks = _runs(visual_rows(adapter, enc))
        if not blocks:
            return "fail", "the model put no visual embedding into the sequence (no row differs from its token)"
        outside = [b for b in blocks if not layout.video.covers(b)]
        if outside:
            return "fail", f"visual rows {outside} lie outside the layout's video span {layout.video}"
        if len(blocks) == 1:
            if blocks[0] != layout.video:
                return "fail", f"the model's visual rows {blocks[0]} differ from the layout's video span {layout.video}"
            return "pass", (
                f"video span {layout.video} = the model's {len(layout.video)} visual rows; "
                f"{len(layout.frames)} frames of {_counts(layout.tokens_per_frame)} tokens partition it"
            )
        if len(blocks) != len(layout.frames):
            return "fail", f"{len(blocks)} blocks of visual rows but {len(layout.frames)} frame spans"
        wrong = [i for i, (b, f) in enumerate(zip(blocks, layout.frames, strict=True)) if not f.covers(b)]
        if wrong:
            return "fail", f"frame spans {[layout.frames[i] for i in wrong]} do not hold their visual block " + str(
                [blocks[i] for i in wrong]
            )
        return "pass", (
            f"video span {layout.video} holds the model's {len(blocks)} visual blocks "
            f"({sum(len(b) for b in blocks)} rows), one per frame span, with the per-frame text between them"
        )

    return _guarded("video_span", run)


def _counts(values: Sequence[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else "/".join(map(str, values))


def _squeeze(text: str) -> str:
    return "".join(text.split())


def check_text_spans(adapter: ModelAdapter, enc: EncodedSample, sample: Sample) -> Check:
    """The question span decodes to the question and option span i to ``(X) option i`` (white space ignored)."""

    def run() -> tuple[str, str]:
        if enc.input_ids is None:
            return "skip", "the adapter gives no input ids to decode"
        ids, tok, layout = enc.input_ids.tolist(), adapter.tokenizer, enc.layout
        wanted = {"question_only": (layout.question_only, sample.question)}
        for i, (letter, option) in enumerate(zip(OPTION_LETTERS, sample.options, strict=False)):
            wanted[f"option {letter}"] = (layout.options[i], f"({letter}) {option}")
        bad = []
        for name, (span, text) in wanted.items():
            got = tok.decode(ids[span.start : span.end])
            if _squeeze(got) != _squeeze(text):
                bad.append(f"{name} {span} decodes to {got!r}, expected {text!r}")
        if bad:
            return "fail", "; ".join(bad)
        return "pass", f"question and {len(sample.options)} option spans decode to their text"

    return _guarded("text_spans", run)


def _forward_kwargs(module: torch.nn.Module) -> dict[str, Any]:
    params = inspect.signature(module.forward).parameters
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}


def _language_model(adapter: ModelAdapter) -> torch.nn.Module:
    """The transformers causal LM that owns the adapter's decoder and lm_head (for spliced adapters)."""
    from transformers import PreTrainedModel

    for module in adapter.model.modules():
        if (
            isinstance(module, PreTrainedModel)
            and module.get_output_embeddings() is adapter.decoder.lm_head
            and any(m is adapter.decoder.module for m in module.modules())
        ):
            return module
    raise ValueError(f"{type(adapter.model).__name__} has no transformers causal LM owning its decoder")


def check_decoder_inputs(
    adapter: ModelAdapter, enc: EncodedSample, model_inputs: dict[str, Any] | None, tolerance: float
) -> Check:
    """The engine's decoder path on the captured inputs against the model's own forward (last-position logits).

    `model_inputs` are the keyword arguments the adapter passed to the whole model while encoding
    (`encode_recording`); None when the adapter splices the video itself (PLLaVA, InternVL-chat),
    in which case the reference is the language model's own forward on the spliced embeddings (its
    own positions and causal mask). Relative difference = max |delta logit| / max(1, max |logit|).
    """

    def run() -> tuple[str, str]:
        with torch.inference_mode():
            if model_inputs is not None:
                reference_of = f"{type(adapter.model).__name__} forward on the processor's inputs"
                out = adapter.model(**model_inputs, **_forward_kwargs(adapter.model))
            else:
                lm = _language_model(adapter)
                reference_of = f"{type(lm).__name__} forward on the spliced embeddings"
                out = lm(inputs_embeds=enc.inputs.inputs_embeds, **_forward_kwargs(lm))
            reference = out.logits[0, -1].float()
            ours = last_logits(adapter.decoder, enc.inputs)[0].float()
        diff = float((reference - ours).abs().max()) / max(1.0, float(reference.abs().max()))
        same_top = int(reference.argmax()) == int(ours.argmax())
        detail = (
            f"relative max |delta logit| {diff:.2e} (tolerance {tolerance:.0e}, {_dtype_name(adapter)}) vs the "
            f"{reference_of}; argmax {'agrees' if same_top else 'DIFFERS'}"
        )
        return _verdict(diff <= tolerance and same_top), detail

    return _guarded("decoder_inputs", run)


def check_option_letters(adapter: ModelAdapter, enc: EncodedSample, sample: Sample) -> Check:
    """Each option letter is one token after the answer prefix, distinct, decoding to its letter; the prompt ends
    with the prefix (the adapter's `answer_prefix`, the paper's ``Best option:(`` by default)."""
    from flowcheck.prompt import ANSWER_PREFIX

    def run() -> tuple[str, str]:
        tok = adapter.tokenizer
        prefix = getattr(adapter, "answer_prefix", ANSWER_PREFIX)
        ids = list(enc.option_ids)
        problems = []
        if len(ids) != len(sample.options) or len(set(ids)) != len(ids):
            problems.append(f"{len(set(ids))} distinct letter ids for {len(sample.options)} options")
        base = tok(prefix, add_special_tokens=False).input_ids
        for letter, token in zip(sample.letters, ids, strict=False):
            alone = tok.decode([token]).strip()
            after = tok(prefix + letter, add_special_tokens=False).input_ids
            if alone != letter:
                problems.append(f"the id of {letter!r} decodes to {alone!r}")
            if after != [*base, token]:
                problems.append(
                    f"{prefix!r}+{letter!r} tokenizes to {tok.convert_ids_to_tokens(after[len(base) - 1 :])}"
                )
        if enc.input_ids is not None and base:
            tail = enc.input_ids[-len(base) :].tolist()
            if _squeeze(tok.decode(tail)) != _squeeze(tok.decode(base)):
                problems.append(f"the prompt ends with {tok.decode(tail)!r}, not the answer prefix {prefix!r}")
        if problems:
            return "fail", "; ".join(problems)
        letters = ", ".join(f"{letter}={token}" for letter, token in zip(sample.letters, ids, strict=False))
        return "pass", f"single tokens after {prefix!r}: {letters}"

    return _guarded("option_letters", run)


def check_local_knockout(adapter: ModelAdapter, enc: EncodedSample, tolerance: float) -> Check:
    """``video->last`` in every layer changes the last row of the last hidden states and no earlier row."""

    def run() -> tuple[str, str]:
        layout = enc.layout
        base = decoder_hidden(adapter, enc.inputs).float()
        with knockout(adapter.model, [(layout.last, layout.video)], range(adapter.num_layers)):
            knocked = decoder_hidden(adapter, enc.inputs).float()
        change = (knocked - base).norm(dim=-1) / base.norm(dim=-1).clamp_min(1e-12)
        earlier = float(change[:-1].max()) if layout.n > 1 else 0.0
        last = float(change[-1])
        moved = (change[:-1] > tolerance).nonzero().flatten().tolist()
        detail = (
            f"relative change of the last row {last:.2e}; largest of the {layout.n - 1} earlier rows {earlier:.2e} "
            f"(tolerance {tolerance:.0e}, {_dtype_name(adapter)})"
        )
        if moved:
            return "fail", f"{detail}; rows {moved[:8]} changed although only the last may"
        if last == 0.0 or last <= earlier:  # rounding moves every row alike; a real knockout moves the last far more
            return (
                "fail",
                f"{detail}; the knockout did not change the last row beyond rounding: the mask was not applied",
            )
        return "pass", detail

    return _guarded("local_knockout", run)


def default_windows(num_layers: int) -> list[Window]:
    """An early and a late window of the default width (the first window recomputes the longest suffix)."""
    return [make_window(num_layers, 0), make_window(num_layers, num_layers - 1)]


def check_fast_engine(
    adapter: ModelAdapter,
    enc: EncodedSample,
    tolerance: float,
    conditions: Sequence[Condition] | None = None,
    windows: Sequence[Window] | None = None,
    batch_size: int = 4,
) -> Check:
    """The fast engine equals the plain one (full-vocabulary probabilities) on every paper condition."""

    def run() -> tuple[str, str]:
        chosen = list(paper_conditions().values()) if conditions is None else list(conditions)
        spans = default_windows(adapter.num_layers) if windows is None else list(windows)
        knockouts = [condition_knockout(c, w, enc.layout) for c in chosen for w in spans]
        watch = list(range(adapter.decoder.lm_head.weight.shape[0]))
        base_plain, plain = score(adapter.decoder, enc.inputs, knockouts, watch, strategy="plain")
        base_fast, fast = score(adapter.decoder, enc.inputs, knockouts, watch, strategy="fast", batch_size=batch_size)
        diffs = {"baseline": float(abs(base_plain.probs - base_fast.probs).max())}
        diffs.update(
            {ko.key: float(abs(a.probs - b.probs).max()) for ko, a, b in zip(knockouts, plain, fast, strict=True)}
        )
        worst = max(diffs, key=diffs.__getitem__)
        bad = [k for k, v in diffs.items() if v > tolerance]
        detail = (
            f"{len(knockouts)} knockouts ({len(chosen)} conditions x {len(spans)} windows): max |delta p| "
            f"{diffs[worst]:.2e} at {worst} (tolerance {tolerance:.0e}, {_dtype_name(adapter)})"
        )
        if bad:
            return "fail", f"{detail}; beyond tolerance: {', '.join(bad[:6])}"
        return "pass", detail

    return _guarded("fast_engine", run)


# -- the prompt with its spans marked ----------------------------------------------------------------------
def marked_prompt(adapter: ModelAdapter, enc: EncodedSample) -> str:
    """The prompt the model receives, decoded, with every span marked ``[name>`` ... ``<name]``.

    Runs of visual rows are shown as ``<N video tokens>``; `last` marks the position whose
    next-token distribution is read.
    """
    if enc.input_ids is None:
        return "(the adapter gives no input ids)"
    layout, tok = enc.layout, adapter.tokenizer
    ids = enc.input_ids.tolist()
    try:
        visual = set(visual_rows(adapter, enc))
    except Exception:  # the prompt is shown even when the embeddings cannot be compared
        visual = set(layout.video.positions())
    named: list[tuple[str, Span]] = [("video", layout.video), ("question", layout.question)]
    named += [(f"frame {i}", s) for i, s in enumerate(layout.frames)]
    named += [("question_only", layout.question_only), ("last", layout.last)]
    named += [(f"option {OPTION_LETTERS[i]}", s) for i, s in enumerate(layout.options)]
    named += [(name, s) for name, s in (("system", layout.system), ("post", layout.post)) if s is not None]
    opens: dict[int, list[str]] = {}
    closes: dict[int, list[str]] = {}
    for name, span in sorted(named, key=lambda x: (x[1].start, -x[1].end)):
        opens.setdefault(span.start, []).append(f"[{name}>")
    for name, span in sorted(named, key=lambda x: (-x[1].start, x[1].end)):
        closes.setdefault(span.end, []).append(f"<{name}]")
    cuts = sorted(
        {0, layout.n, *opens, *closes} | {p for p in range(layout.n + 1) if (p in visual) != (p - 1 in visual)}
    )
    out = []
    for a, b in pairwise(cuts):
        out.extend(closes.get(a, []))
        out.extend(opens.get(a, []))
        out.append(f"<{b - a} video tokens>" if a in visual else tok.decode(ids[a:b]))
    out.extend(closes.get(layout.n, []))
    return "".join(out)


# -- running the contract -----------------------------------------------------------------------------------
def encode_recording(adapter: ModelAdapter, sample: Sample, frames: Any) -> tuple[EncodedSample, dict[str, Any] | None]:
    """`adapter.encode(sample, frames)` plus the keyword arguments it passed to the whole model (None if none)."""
    recorded: dict[str, Any] = {}

    def hook(_module, _args, kwargs):
        if not recorded:
            recorded.update(kwargs)

    handle = adapter.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        enc = adapter.encode(sample, frames)
    finally:
        handle.remove()
    return enc, (recorded or None)


def frames_digest(frames: Any) -> str:
    """A digest of decoded frames: an array's dtype, shape and bytes, or each array field of a frames object."""
    digest = hashlib.sha256()
    if dataclasses.is_dataclass(frames) and not isinstance(frames, type):
        parts = sorted(dataclasses.asdict(frames).items())
    elif hasattr(frames, "__dict__") and not isinstance(frames, (np.ndarray, torch.Tensor)):
        parts = sorted(vars(frames).items())
    else:  # an array, a tensor or a list of frames
        parts = [("frames", frames if isinstance(frames, torch.Tensor) else np.asarray(frames))]
    for name, value in parts:
        digest.update(name.encode())
        if isinstance(value, (np.ndarray, torch.Tensor)):
            array = np.ascontiguousarray(value.cpu().numpy() if isinstance(value, torch.Tensor) else value)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
        else:
            digest.update(json.dumps(value, default=str, sort_keys=True).encode())
    return digest.hexdigest()[:24]


def sample_digest(sample: Sample, frames: Any) -> str:
    """Content identity of what `verify` checks: the sample's annotation and its decoded frames."""
    return hashlib.sha256((json.dumps(sample.annotation()) + frames_digest(frames)).encode()).hexdigest()[:24]


def model_identity(model: ModelAdapter | ModelHandle) -> dict[str, Any]:
    """What a verification depends on besides the sample: checkpoint fingerprint, adapter family, dtype,
    device type, frames per video and system-prompt mode. A `ModelHandle` gives it without loading weights."""
    if isinstance(model, ModelHandle):
        family = model.forced_family or adapter_class(model.config, None, model.path).family
        device = torch.device(model.options.get("device") or "cpu").type
        return dict(
            model=model.fingerprint(),
            family=family,
            dtype=model.dtype,
            device=device,
            frames=model.num_frames,
            system_mode=model.options.get("system_mode") or "auto",
        )
    return dict(
        model=model.fingerprint(),
        family=model.family,
        dtype=_dtype_name(model),
        device=model.device.type,
        frames=model.num_frames,
        system_mode=getattr(model, "system_mode", None) or "auto",
    )


def verification_key(model: ModelAdapter | ModelHandle, sample: Sample, frames: Any) -> str:
    """The result-cache key of a verification: `model_identity`, the sample's content (`sample_digest`), the
    check names, their tolerances (a verdict is only valid for the tolerances it was judged with) and the
    flowcheck version (`cache_key` adds it)."""
    table = tomllib.loads(resources.files("flowcheck.specs").joinpath("contract.toml").read_text())
    return cache_key(
        {**model_identity(model), "sample": sample_digest(sample, frames), "checks": list(CHECKS), "tolerances": table}
    )


def choose_sample(samples: Sequence[Sample], task: str | None = None, sample_id: str | None = None) -> Sample:
    """The sample a verification runs on: `sample_id`, else the first sample (by id) of `task` or of the first task
    (sorted by name), so `flowcheck verify` and the suites' session-start check pick the same one and share
    the cached result. Only multiple-choice samples qualify (the checks read option spans and letters). Raises
    `LookupError` naming what exists, or saying that the dataset's samples are open-ended."""
    if sample_id is not None:
        for sample in samples:
            if sample.id == sample_id:
                if sample.open_ended:
                    raise LookupError(
                        f"sample {sample_id!r} is open-ended (no options); the adapter contract checks the "
                        "multiple-choice prompt: choose a sample with candidates"
                    )
                return sample
        raise LookupError(f"no sample {sample_id!r} in the dataset (e.g. {', '.join(s.id for s in samples[:3])})")
    if samples and all(s.open_ended for s in samples):
        raise LookupError(
            "every sample of the dataset is open-ended (no options); the adapter contract checks the multiple-choice "
            "prompt: verify on a dataset with candidates (e.g. --flow-data synthetic)"
        )
    samples = [s for s in samples if not s.open_ended]
    tasks = sorted({s.task for s in samples})
    if not tasks:
        raise LookupError("the dataset has no samples")
    chosen = task or tasks[0]
    in_task = sorted((s for s in samples if s.task == chosen), key=lambda s: s.id)
    if not in_task:
        raise LookupError(f"no sample of task {chosen!r}; tasks: {', '.join(tasks)}")
    return in_task[0]


def verify(
    model: ModelAdapter | ModelHandle, sample: Sample, frames: Any, cache: ResultCache | None = None
) -> Verification:
    """Run every contract check (`CHECKS`) of a model on one sample whose frames ([T, H, W, 3] uint8) are decoded.

    `model` is a loaded adapter or a `ModelHandle` (whose weights then load only when the result
    is not in `cache`). With `cache`, a verification of the same checkpoint, family, dtype,
    device, sample and flowcheck version is read from it (kind ``verify``; `Verification.cached`
    is then True) and a new one is stored. Never raises for a failing check: read
    `Verification.ok` / `failed`. Raises what loading or `adapter.encode` raises when the model
    cannot be loaded or the sample not encoded at all (`AdapterError`).
    """
    key = verification_key(model, sample, frames) if cache is not None else ""
    if cache is not None:
        stored = cache.get(CACHE_KIND, key)
        if stored is not None:
            return dataclasses.replace(Verification.from_json(stored), cached=True)
    adapter = model.adapter if isinstance(model, ModelHandle) else model
    tol = tolerances(adapter.dtype)
    enc, model_inputs = encode_recording(adapter, sample, frames)
    checks = (
        check_video_span(adapter, enc),
        check_text_spans(adapter, enc, sample),
        check_decoder_inputs(adapter, enc, model_inputs, tol["logits"]),
        check_option_letters(adapter, enc, sample),
        check_local_knockout(adapter, enc, tol["hidden"]),
        check_fast_engine(adapter, enc, tol["probs"]),
    )
    result = Verification(
        model=model.name,
        family=adapter.family,
        fingerprint=adapter.fingerprint(),
        sample_id=sample.id,
        sample_fingerprint=sample_digest(sample, frames),
        dtype=_dtype_name(adapter),
        device=adapter.device.type,
        version=__version__,
        checks=checks,
        prompt=marked_prompt(adapter, enc),
        prompt_notes=dict(getattr(adapter, "prompt_notes", None) or {}),
    )
    if cache is not None:
        cache.put(CACHE_KIND, key, result.to_json())
    return result
