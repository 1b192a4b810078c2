"""What a load or a run skipped, and why: never drop a sample silently."""

from __future__ import annotations

from dataclasses import dataclass, field


class DataError(ValueError):
    """A dataset that cannot be used at all (missing root, unreadable annotations); says what to do."""


@dataclass(frozen=True)
class Skipped:
    """One sample (or a whole task) left out, with the file at fault and the reason."""

    sample_id: str
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.sample_id}: {self.reason} ({self.file})"


@dataclass
class LoadReport:
    """Counts of loaded samples and the list of skipped ones, per dataset."""

    dataset: str
    root: str
    loaded: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def skip(self, sample_id: str, file: str, reason: str) -> None:
        self.skipped.append(Skipped(sample_id, str(file), reason))

    def merge(self, other: LoadReport) -> None:
        self.loaded += other.loaded
        self.skipped.extend(other.skipped)

    def summary(self) -> str:
        text = f"{self.dataset}: {self.loaded} samples loaded from {self.root}"
        if self.skipped:
            text += f", {len(self.skipped)} skipped"
        return text

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "root": self.root,
            "loaded": self.loaded,
            "skipped": [{"sample_id": s.sample_id, "file": s.file, "reason": s.reason} for s in self.skipped],
        }
