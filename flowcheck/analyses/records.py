"""Per-sample results of a knockout sweep, as plain serialisable records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from flowcheck.layout import TokenLayout


@dataclass
class Baseline:
    """The unblocked model on one sample.

    `option_probs[i]` is the probability of option letter i at the last position (softmax over
    the full vocabulary); `argmax` the full-vocabulary argmax token; `predicted` its option
    index (-1 when the argmax is not an option letter); correct = argmax is the true letter.
    """

    sample_id: str
    task: str
    dataset: str
    true_index: int
    option_ids: list[int]
    option_probs: list[float]
    argmax: int
    argmax_prob: float
    layout: dict

    @property
    def predicted(self) -> int:
        return self.option_ids.index(self.argmax) if self.argmax in self.option_ids else -1

    @property
    def correct(self) -> bool:
        return self.predicted == self.true_index

    @property
    def token_layout(self) -> TokenLayout:
        return TokenLayout.from_dict(self.layout)


@dataclass(frozen=True)
class OpenEndedSample:
    """An open-ended sample (a free-text `reference` answer, no options; `flowcheck.data.sample.Sample.open_ended`)
    the run computed results for. It has no `Baseline` (there are no option letters to score), so it never enters
    accuracies, knockout curves or gates; only analyses with `handles_open_ended` read it."""

    sample_id: str
    task: str
    dataset: str
    reference: str


@dataclass
class KnockoutRecord:
    """One (sample, condition, window): the probability of the base prediction before and after."""

    sample_id: str
    condition: str
    group: str  # the condition group (the authors' --target), e.g. "vql-to-ql"
    window_center: int | None
    window_style: str
    layers: list[int]
    p_base: float
    p_new: float
    new_argmax: int
    new_option_probs: list[float] = field(default_factory=list)

    @property
    def relative_change(self) -> float:
        """(p_new - p_base) / p_base x 100 for the letter the unblocked model predicted."""
        return (self.p_new - self.p_base) / self.p_base * 100.0


@dataclass
class SampleSweep:
    """Everything a sweep computed for one sample."""

    baseline: Baseline
    records: list[KnockoutRecord]

    def to_dict(self) -> dict:
        return {"baseline": asdict(self.baseline), "records": [asdict(r) for r in self.records]}

    @classmethod
    def from_dict(cls, d: dict) -> SampleSweep:
        records = [KnockoutRecord(**_renamed(r)) for r in d["records"]]
        return cls(Baseline(**d["baseline"]), records)


def _renamed(record: dict) -> dict:
    """A stored record with the names of this version (caches written before condition groups were called
    "group" kept them under "family")."""
    if "family" in record and "group" not in record:
        record = {**record, "group": record["family"]}
        del record["family"]
    return record
