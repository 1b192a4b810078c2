"""The public low-level API: a context manager that knocks out attention edges in chosen layers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from torch import nn

from flowcheck.engine import attention
from flowcheck.engine.attention import ActiveKnockout, BlockedSpec
from flowcheck.models.decoder import Decoder, UnsupportedModelError, find_decoder


@contextmanager
def knockout(model: nn.Module | Decoder, blocked: BlockedSpec, layers: Iterable[int]) -> Iterator[Decoder]:
    """Remove `blocked` attention edges in `layers` for every ordinary ``model(**inputs)`` call inside.

    `blocked` is a boolean [n, n] tensor (True = the query in the row may not read the key in the
    column; a [B, n, n] tensor gives one mask per batch row) or a list of
    ``(query_positions, key_positions)`` pairs (spans, ranges or index lists, each pair a
    Cartesian block). `layers` are decoder layer indices. Contexts nest (their edges add up). On
    exit, also after an exception, the model is exactly as before.
    """
    with knockout_plan(model, {int(layer): blocked for layer in layers}) as decoder:
        yield decoder


@contextmanager
def knockout_plan(model: nn.Module | Decoder, plan: Mapping[int, BlockedSpec]) -> Iterator[Decoder]:
    """Like `knockout`, with a (possibly different) blocked spec per layer."""
    decoder = find_decoder(model)
    for layer in plan:
        if not 0 <= layer < decoder.num_layers:
            raise ValueError(f"layer {layer} does not exist: the decoder has layers 0..{decoder.num_layers - 1}")
    outer = attention.active()
    state = ActiveKnockout(
        blocked={k: list(v) for k, v in outer.blocked.items()} if outer else {},
        calls=outer.calls if outer else {},  # shared, so every level sees the calls
    )
    targeted = {}
    for layer, spec in plan.items():
        module = decoder.attention[layer]
        state.blocked.setdefault(id(module), []).append(spec)
        targeted[id(module)] = layer

    configs = {id(decoder.config): decoder.config}
    for module in decoder.attention:
        config = getattr(module, "config", None)
        if config is not None:
            configs[id(config)] = config
    previous = {key: config._attn_implementation for key, config in configs.items()}

    def reset_calls(_module, _args, _kwargs=None):
        for key in targeted:
            state.calls[key] = 0

    def check_calls(_module, _args, _kwargs=None, _output=None):
        missing = sorted(layer for key, layer in targeted.items() if state.calls.get(key, 0) == 0)
        if missing:
            raise UnsupportedModelError(
                f"attention of decoder layer(s) {missing} did not run through transformers' AttentionInterface, "
                "so flowcheck could not knock it out; this model's attention code does not dispatch on "
                "config._attn_implementation (old-style or remote code). Use a transformers-native class."
            )

    hooks = []
    token = None
    try:
        for config in configs.values():
            config._attn_implementation = attention.IMPLEMENTATION
        hooks.append(decoder.module.register_forward_pre_hook(reset_calls, with_kwargs=True))
        hooks.append(decoder.module.register_forward_hook(check_calls, with_kwargs=True))
        token = attention.set_active(state)
        yield decoder
    finally:
        if token is not None:
            attention.reset_active(token)
        for hook in hooks:
            hook.remove()
        for key, config in configs.items():
            config._attn_implementation = previous[key]
