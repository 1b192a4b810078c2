"""How the fast engine groups knockouts into batched suffix forwards, and how much memory a batch needs.

Staggered batching: knockouts whose earliest changed query is the same position p recompute the same
suffix (positions >= p), so any of them can share one forward as batch rows, run from the earliest first
layer among them. A row whose own window starts later carries unmasked attention until then, which
recomputes the baseline (up to kernel numerics), so every row still gets exactly its own knockout.
Merging rows with different first layers saves per-forward overhead and costs the extra layers of the
rows that start later; `plan_batches` picks the cheapest partition under a simple cost model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

# On CUDA the default budget of a batched forward is this share of the device memory free at scoring time.
CUDA_FREE_FRACTION = 0.6


@dataclass(frozen=True)
class Batch:
    """One batched forward: positions >= `start` from layer `first_layer`, one row per knockout index."""

    start: int
    first_layer: int
    indices: tuple[int, ...]


def plan_batches(
    items: Sequence[tuple[int, int, int]],
    n: int,
    num_layers: int,
    max_rows: Callable[[int], int],
    overhead_positions: float,
) -> list[Batch]:
    """Partition knockouts (index, earliest query p, first layer a) into batched forwards.

    Knockouts are grouped by p. Within a group, sorted by a, runs of at most `max_rows(p)` consecutive
    knockouts form one forward each, from the run's smallest a. A forward's cost is modelled as
    (num_layers - a) x (overhead_positions + rows x (n - p)) position-layers: `overhead_positions` is the
    fixed cost of running one layer once (Python, kernel launches), in units of one position's work.
    A dynamic programme over the sorted first layers minimises the total. With overhead 0 the partition
    is by exact first layer (never staggered); a very large overhead gives one forward per `max_rows`.
    """
    by_start: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for index, p, a in items:
        by_start[p].append((a, index))
    batches = []
    for p in sorted(by_start):
        group = sorted(by_start[p])
        limit, width = max(1, max_rows(p)), n - p
        best = [0.0] + [float("inf")] * len(group)
        cut = [0] * (len(group) + 1)
        for end in range(1, len(group) + 1):
            for begin in range(max(0, end - limit), end):
                a = group[begin][0]
                cost = best[begin] + (num_layers - a) * (overhead_positions + (end - begin) * width)
                if cost < best[end]:
                    best[end], cut[end] = cost, begin
        runs, end = [], len(group)
        while end:
            runs.append((cut[end], end))
            end = cut[end]
        for begin, end in reversed(runs):
            batches.append(Batch(p, group[begin][0], tuple(index for _, index in group[begin:end])))
    return batches


@dataclass(frozen=True)
class MemoryModel:
    """Bytes the fast engine holds for one sample of a decoder's shape (a formula; no allocation).

    `state` is the baseline kept for the whole sweep (keys and values of every layer, the residual entering
    every layer); `per_row(q, shared)` is what one batch row recomputing q positions adds at its peak layer.
    """

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    width: int  # bytes per element of the model dtype
    n: int

    @classmethod
    def of(cls, config, n: int, dtype: torch.dtype) -> MemoryModel:
        heads = getattr(config, "num_attention_heads", 8)
        kv_heads = getattr(config, "num_key_value_heads", heads) or heads
        return cls(
            layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            intermediate=getattr(config, "intermediate_size", 4 * config.hidden_size),
            heads=heads,
            kv_heads=kv_heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            width=dtype.itemsize,
            n=n,
        )

    @property
    def state(self) -> int:
        kv = 2 * self.kv_heads * self.head_dim * self.n * self.width
        return self.layers * (kv + self.n * self.hidden * self.width)

    def per_row(self, q: int, shared: bool, flash: bool = False) -> int:
        """One row recomputing q positions: scores (float32, x3 for scores, probabilities and the mask; x4 in the
        shared-prefix path, which also copies the prefix part of the probabilities; with the fused two-piece
        kernels (`flash`) no scores, only the additive float32 masks of the two pieces, x2), its own copy of the
        keys and values unless the prefix is shared, one layer's activations, and its blocked mask (held once,
        plus the layer's stacked copy)."""
        fused = shared and flash
        scores = 2 * q * self.n * 4 if fused else (4 if shared else 3) * self.heads * q * self.n * 4
        keys = 2 * self.kv_heads * self.head_dim * (q if shared else self.n) * self.width
        activations = q * (4 * self.hidden + 2 * self.intermediate) * self.width
        masks = 3 * q * self.n
        return scores + keys + activations + masks

    def full_forward(self) -> int:
        """The transient peak of one full forward of the sample (the plain engine's)."""
        return self.per_row(self.n, shared=False)


def default_budget_bytes(model: MemoryModel, device: torch.device, floor_mb: float) -> float:
    """The budget of a batched forward when none is given.

    On CUDA: CUDA_FREE_FRACTION of the device memory free now (the baseline state is already allocated).
    Elsewhere: what one full forward of the sample needs transiently, so batching keeps peak memory near
    that of the plain strategy, and at least `floor_mb`.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return CUDA_FREE_FRACTION * free
    return max(float(model.full_forward()), floor_mb * 2**20)


def rows_for_budget(model: MemoryModel, q: int, shared: bool, budget_bytes: float, flash: bool = False) -> int:
    """How many rows of q recomputed positions fit `budget_bytes` (at least 1)."""
    return max(1, int(budget_bytes // model.per_row(q, shared, flash)))
