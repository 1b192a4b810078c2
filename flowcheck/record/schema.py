"""The typed schema of a run's ``results.json`` (pydantic): written through it, read back through it.

Booleans are JSON booleans (a ``"True"`` string is refused), numbers are numbers, and every layer
index says its base: claims' measured values count layers from 1, as the paper's figures and
Table 3 do; the per-task summaries keep the analyses' 0-based indices (``layer_index_base``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

SCHEMA_VERSION = 4
OUTCOMES = ("passed", "failed", "xfailed", "not evaluable", "skipped", "error", "unexpectedly passed")
Outcome = Literal["passed", "failed", "xfailed", "not evaluable", "skipped", "error", "unexpectedly passed"]
Number = StrictInt | StrictFloat
Measured = StrictBool | StrictInt | StrictFloat | StrictStr | dict[str, Number]


class SchemaError(ValueError):
    """A results.json that does not follow this schema (or was written by an older flowcheck)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class ClaimEntry(_Strict):
    """One claim test: its case, outcome, measured values (layers from 1) and thresholds."""

    nodeid: StrictStr
    claim: StrictStr
    model: StrictStr
    dataset: StrictStr
    task: StrictStr
    outcome: Outcome
    evaluable: StrictBool | None = None
    passed: StrictBool | None = None
    measured: dict[str, Measured] = {}
    thresholds: dict[str, Number] = {}
    message: StrictStr = ""
    xfail_reason: StrictStr = ""


class SkippedEntry(_Strict):
    """A sample left out of the run: at load time (``models`` = "all models") or by the named models."""

    dataset: StrictStr
    sample_id: StrictStr
    file: StrictStr
    reason: StrictStr
    models: StrictStr = ""


class ModelInfo(_Strict):
    """A model of the run: its unique name, where it loads from, and its content fingerprint."""

    name: StrictStr
    source: StrictStr
    path: StrictStr | None = None
    fingerprint: StrictStr | None = None
    layers: StrictInt | None = None
    contract: StrictStr | None = None  # the adapter contract's verdict (flowcheck verify)
    prompt: StrictStr | None = None  # which chat template rendered the prompt, where the system text went
    error: StrictStr | None = None


class DatasetInfo(_Strict):
    """A dataset of the run: where it was read from, samples loaded and samples skipped (distinct ids)."""

    name: StrictStr
    root: StrictStr | None = None
    loaded: StrictInt = 0
    skipped: StrictInt = 0


class Metadata(_Strict):
    """How and when the run was made."""

    date: StrictStr
    duration_s: Number
    git_commit: StrictStr
    versions: dict[str, StrictStr]
    device: StrictStr
    dtype: StrictStr
    seed: StrictInt
    models: list[ModelInfo]
    datasets: list[DatasetInfo]
    registry: list[StrictStr]
    # what the numbers depend on: resolved options with their source, versions, git commit, dataset fingerprints,
    # per model its weights fingerprint, prompt-template hash, window and frame sampling (FlowSession.provenance)
    provenance: dict[str, Any] = {}


class ClaimSpecEntry(_Strict):
    """A claim of the registry: the paper's finding it tests (C1 ..) and its title."""

    finding: StrictStr
    title: StrictStr


class GateRowEntry(_Strict):
    """One row of a gate's table, formatted for reading (`flowcheck.gating.table.GateRow`)."""

    metric: StrictStr
    baseline: StrictStr
    new: StrictStr
    difference: StrictStr
    ci: StrictStr
    p_value: StrictStr
    tolerance: StrictStr
    verdict: StrictStr
    test: StrictStr = ""


class GateEntry(_Strict):
    """A gate of a model against a recorded baseline (`flowcheck.gating.GateResult.to_dict`)."""

    model: StrictStr
    baseline: StrictStr
    passed: StrictBool
    alpha: Number
    resampling: StrictStr
    rows: list[GateRowEntry] = []
    notes: list[StrictStr] = []
    unpaired: dict[str, dict[str, list[StrictStr]]] = {}
    refused: list[dict[str, StrictStr]] = []
    allowed: list[dict[str, StrictStr]] = []


class RunResults(_Strict):
    """The whole results.json: `summaries` maps ``"<model>|<dataset>|<task>"`` to a `TaskSummary` object (per
    registered analysis its summary, and the analyses that could not run with the reason)."""

    schema_version: Literal[4] = SCHEMA_VERSION
    layer_index_base: dict[str, StrictInt] = {"claims": 1, "summaries": 0}
    metadata: Metadata
    claims: list[ClaimEntry]
    summaries: dict[str, dict[str, Any]]
    skipped: list[SkippedEntry]
    image_models: dict[str, StrictStr] = {}
    paper_models: dict[str, StrictStr] = {}
    video_tokens: dict[str, StrictInt] = {}
    temporal_tasks: dict[str, list[StrictStr]] = {}
    findings: dict[str, StrictStr] = {}
    claim_specs: dict[str, ClaimSpecEntry] = {}
    analysis_titles: dict[str, StrictStr] = {}
    gates: list[GateEntry] = []  # the run's gating tests (schema version 4)


def validate(data: dict) -> RunResults:
    """Parse a results.json object; raises SchemaError naming the first problems."""
    if not isinstance(data, dict):
        raise SchemaError(f"results.json holds a JSON {type(data).__name__}, not the object flowcheck writes")
    if data.get("schema_version") != SCHEMA_VERSION:
        found = data.get("schema_version", "none")
        raise SchemaError(
            f"results.json has schema version {found!r}, this flowcheck reads version {SCHEMA_VERSION!r}: "
            "re-run the suites with this version to write it again"
        )
    try:
        return RunResults.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors(include_url=False)[:5]
        )
        raise SchemaError(
            f"results.json does not follow the schema ({err.error_count()} problems: {problems})"
        ) from None
