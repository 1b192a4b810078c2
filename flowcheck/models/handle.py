"""A checkpoint by name: the cheap facts (layers, fingerprint, tokenizer) without loading its weights.

Results already in the cache can then be read, and claims evaluated, on a machine that never
loads the model; the adapter (and the weights) load only when something must be computed.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from flowcheck.models.base import AdapterError, ModelAdapter, fingerprint_folder
from flowcheck.models.registry import adapter_class, adapter_for_model_type, load, read_config, resolve_name


def num_layers_of(config: dict) -> int:
    """Decoder layers of the language model described by a raw config.json."""
    for key in ("text_config", "llm_config", "language_config"):
        sub = config.get(key)
        if isinstance(sub, dict) and "num_hidden_layers" in sub:
            return int(sub["num_hidden_layers"])
    if "num_hidden_layers" in config:
        return int(config["num_hidden_layers"])
    raise AdapterError("the config names no num_hidden_layers for its language model")


class ModelHandle:
    """Lazy access to a checkpoint; `adapter` loads it on first use."""

    def __init__(
        self, source: str, *, adapter: ModelAdapter | None = None, name: str | None = None, **options: Any
    ) -> None:
        """`source`: registry name, hub id or folder (``@family`` allowed); `name`: the run's unique name for it
        (`flowcheck.models.identity`), `source` when not given."""
        self.name = name or source
        self.source = source
        base, _, family = source.partition("@")
        self.path = resolve_name(base)
        if family:
            options = {**options, "family": family}
        self.options = options
        self.config = read_config(self.path, revision=options.get("revision"))
        if adapter is not None:
            self.__dict__["adapter"] = adapter

    @classmethod
    def from_adapter(cls, adapter: ModelAdapter, name: str | None = None) -> ModelHandle:
        dtype = str(adapter.dtype).replace("torch.", "")
        handle = cls(name or adapter.name, adapter=adapter, dtype=dtype, num_frames=adapter.num_frames)
        try:
            default = adapter_for_model_type(handle.config.get("model_type", ""), handle.config).family
        except AdapterError:
            default = None
        if adapter.family != default:
            handle.options["family"] = adapter.family
        return handle

    @property
    def forced_family(self) -> str | None:
        """The adapter family chosen by name (``NAME@family``) instead of by the config's model_type."""
        return self.options.get("family")

    @property
    def num_layers(self) -> int:
        return num_layers_of(self.config)

    @property
    def num_frames(self) -> int:
        return int(self.options.get("num_frames", 8))

    @property
    def dtype(self) -> str:
        return str(self.options.get("dtype", "float32"))

    def fingerprint(self) -> str:
        if "adapter" in self.__dict__:
            return self.adapter.fingerprint()
        folder = Path(self.path)
        if folder.is_dir():
            return fingerprint_folder(folder)
        return self.adapter.fingerprint()

    @cached_property
    def tokenizer(self):
        if "adapter" in self.__dict__:
            return self.adapter.tokenizer
        return adapter_class(self.config, self.forced_family, self.path).load_tokenizer(
            self.path,
            revision=self.options.get("revision"),
            trust_remote_code=bool(self.options.get("trust_remote_code")),
        )

    @cached_property
    def adapter(self) -> ModelAdapter:
        return load(self.path, **self.options)

    @property
    def loaded(self) -> bool:
        return "adapter" in self.__dict__
