"""Forward FLOPs of a transformers decoder's layers at a prompt length, counted from the model's config.

Convention (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", Table 1; Hoffmann et al. 2022, "Training
Compute-Optimal Large Language Models", Appendix F): a multiply-add is 2 FLOPs, so a matrix product [m, k] @ [k, p]
costs 2 m k p. Per decoder layer, for n positions of which `pairs` (query, key) pairs are attended:

- attention projections: Q 2 n d (H dh), K and V 2 x 2 n d (Hkv dh) (grouped-query attention), output 2 n (H dh) d;
- attention logits Q K^T: 2 H dh pairs; attention-weighted values: 2 H dh pairs (Hoffmann et al. count both; Kaplan
  et al.'s table lists the logits only);
- MLP: 2 n d f per matrix, 3 matrices with a gated MLP (SwiGLU: gate, up, down), 2 without.

d = hidden_size, H = num_attention_heads, Hkv = num_key_value_heads, dh = head_dim, f = intermediate_size. Causal
attention reads key <= query, so pairs = n (n + 1) / 2 (the edge count of `flowcheck.edges`); a sliding-window layer
of window w reads the w most recent keys (transformers' convention: query - key < w). Left out, as in both
references: embeddings, biases, norms, softmax, rotary embeddings, activations and residual additions (O(n d) terms).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

GATED_MLP_WEIGHTS = ("gate_proj", "gate_up_proj", "w3")  # LLaMA/Qwen/Mistral, Phi-3, InternLM2
PLAIN_MLP_WEIGHTS = ("up_proj", "fc1", "c_fc", "w1")  # the first matrix of an ungated MLP
MLP_MODULES = ("mlp", "feed_forward")
MOE_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_intermediate_size")


class FlopCountError(ValueError):
    """A decoder whose FLOPs this count does not cover (mixture of experts, chunked attention, an MLP it does not
    recognise); the message names the config field or module."""


@dataclass(frozen=True)
class DecoderShape:
    """What the FLOP count reads from a decoder: widths (units: numbers of features), heads, whether the MLP is gated,
    and per layer its sliding window in positions (None: full causal attention)."""

    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    gated_mlp: bool
    windows: tuple[int | None, ...]

    @property
    def num_layers(self) -> int:
        return len(self.windows)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "windows": list(self.windows)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecoderShape:
        return cls(**{**data, "windows": tuple(data["windows"])})

    @classmethod
    def from_config(cls, config: Any, gated_mlp: bool) -> DecoderShape:
        """The shape of a text decoder's config (a transformers `PretrainedConfig` of the decoder, e.g. LlamaConfig).

        Sliding windows: ``layer_types`` when the config has them ("sliding_attention" layers read
        ``sliding_window`` keys), otherwise ``sliding_window`` for every layer when it is set (Mistral's
        convention). Raises FlopCountError for mixture-of-experts configs, chunked attention and missing fields."""
        for name in MOE_FIELDS:
            if getattr(config, name, None):
                raise FlopCountError(
                    f"{type(config).__name__} has {name}={getattr(config, name)}: a mixture-of-experts MLP, whose "
                    "FLOPs depend on the experts routed per token; the count covers dense MLPs only"
                )
        missing = [f for f in ("hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers")]
        missing = [f for f in missing if getattr(config, f, None) is None]
        if missing:
            raise FlopCountError(f"{type(config).__name__} has no {', '.join(missing)}: cannot count FLOPs")
        heads = int(config.num_attention_heads)
        layers = int(config.num_hidden_layers)
        window = getattr(config, "sliding_window", None)
        layer_types = getattr(config, "layer_types", None)
        if layer_types:
            unknown = sorted({t for t in layer_types if t not in ("full_attention", "sliding_attention")})
            if unknown:
                raise FlopCountError(
                    f"{type(config).__name__} has layer types {unknown}; the count covers full and "
                    "sliding-window attention"
                )
            windows = tuple(int(window) if t == "sliding_attention" else None for t in layer_types)
        else:
            windows = (int(window) if window else None,) * layers
        if len(windows) != layers:
            raise FlopCountError(f"{type(config).__name__}: {len(windows)} layer_types for {layers} layers")
        return cls(
            hidden_size=int(config.hidden_size),
            num_heads=heads,
            num_kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
            head_dim=int(getattr(config, "head_dim", None) or config.hidden_size // heads),
            intermediate_size=int(config.intermediate_size),
            gated_mlp=gated_mlp,
            windows=windows,
        )


def gated_mlp(layer: nn.Module) -> bool:
    """Whether a decoder layer's MLP is gated (a gate matrix beside up and down). The config does not say it, the
    module's weights do. Raises FlopCountError naming the layer's children when neither kind is recognised."""
    for name in MLP_MODULES:
        mlp = getattr(layer, name, None)
        if isinstance(mlp, nn.Module):
            children = {child for child, _ in mlp.named_children()}
            if children & set(GATED_MLP_WEIGHTS):
                return True
            if children & set(PLAIN_MLP_WEIGHTS):
                return False
            raise FlopCountError(
                f"{type(layer).__name__}.{name} has {sorted(children)}: neither a gated "
                f"({', '.join(GATED_MLP_WEIGHTS)}) nor a plain ({', '.join(PLAIN_MLP_WEIGHTS)}) MLP; the FLOP count "
                "does not know it"
            )
    raise FlopCountError(f"{type(layer).__name__} has no MLP module ({' / '.join(MLP_MODULES)})")


def attention_pairs(n: int, window: int | None = None) -> int:
    """(query, key) pairs causal attention computes over n positions: n (n + 1) / 2, or with a sliding window of w
    positions (key > query - w) sum over queries q of min(q + 1, w). Raises ValueError for n < 0 or w < 1."""
    if n < 0:
        raise ValueError(f"a sequence of {n} positions")
    if window is None or window >= n:
        return n * (n + 1) // 2
    if window < 1:
        raise ValueError(f"a sliding window of {window} positions")
    return window * (window + 1) // 2 + (n - window) * window


def layer_flops(shape: DecoderShape, layer: int, n: int, pairs: int | None = None) -> int:
    """Forward FLOPs of decoder layer `layer` (0-based) over n positions (see the module docstring for the formula);
    `pairs`: attended (query, key) pairs, by default the causal ones (`attention_pairs` with the layer's window)."""
    d, q, kv, f = (
        shape.hidden_size,
        shape.num_heads * shape.head_dim,
        shape.num_kv_heads * shape.head_dim,
        shape.intermediate_size,
    )
    if pairs is None:
        pairs = attention_pairs(n, shape.windows[layer])
    projections = 2 * n * d * q + 2 * 2 * n * d * kv + 2 * n * q * d
    attention = 2 * q * pairs + 2 * q * pairs  # logits Q K^T and weights @ V, H dh = q features per pair
    mlp = (3 if shape.gated_mlp else 2) * 2 * n * d * f
    return projections + attention + mlp


def decoder_flops(shape: DecoderShape, n: int) -> list[int]:
    """[L] forward FLOPs of every decoder layer over a prompt of n positions (causal attention)."""
    return [layer_flops(shape, layer, n) for layer in range(shape.num_layers)]
