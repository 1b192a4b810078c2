"""The family registry and `load`: pick the adapter from the checkpoint's config, never from its path."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from flowcheck import bundled
from flowcheck.models.base import AdapterError, ModelAdapter

# Adapter modules, imported lazily; each registers its families with `register`.
FAMILY_MODULES: list[str] = [
    "flowcheck.models.llava_next_video",
    "flowcheck.models.llava_family",
    "flowcheck.models.internvl",
    "flowcheck.models.pllava",
    "flowcheck.models.internvl_chat",
    "flowcheck.models.smolvlm",
    "flowcheck.models.qwen_vl",
    "flowcheck.models.videollama3",
    "flowcheck.models.videollama3_remote",
]

_FAMILIES: dict[str, type[ModelAdapter]] = {}


def is_text_only(model_type: str) -> bool:
    """Whether transformers knows `model_type` as a causal language model only (no image-text-to-text,
    vision-to-sequence or multimodal class): the library that owns the model types decides."""
    from transformers.models.auto import modeling_auto as auto

    multimodal = (
        auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
        getattr(auto, "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES", {}),
        getattr(auto, "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES", {}),
    )
    return model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not any(model_type in m for m in multimodal)


def register(cls: type[ModelAdapter]) -> type[ModelAdapter]:
    """Class decorator: make an adapter known by its `family` and `model_types`."""
    if cls.family in _FAMILIES and _FAMILIES[cls.family] is not cls:
        raise ValueError(f"model family {cls.family!r} is registered twice")
    _FAMILIES[cls.family] = cls
    return cls


def families() -> dict[str, type[ModelAdapter]]:
    """Every registered family (imports the adapter modules on first use)."""
    for module in FAMILY_MODULES:
        importlib.import_module(module)
    return dict(_FAMILIES)


def adapter_for_model_type(model_type: str, config: dict | None = None) -> type[ModelAdapter]:
    """The adapter class whose `model_types` include `model_type` (and that accepts the config), or a clear error."""
    for cls in families().values():
        if model_type in cls.model_types and cls.accepts(config or {}):
            return cls
    supported = ", ".join(f"{name} ({', '.join(cls.model_types)})" for name, cls in sorted(families().items()))
    if is_text_only(model_type):
        raise AdapterError(
            f"model_type {model_type!r} is a text-only language model (transformers has no image-text-to-text "
            f"class for it); flowcheck analyses video LLMs. Supported families (config model_type): {supported}."
        )
    raise AdapterError(
        f"no flowcheck adapter for model_type {model_type!r}. Supported families (config model_type): "
        f"{supported or 'none registered'}. A new family needs an adapter in flowcheck/models/."
    )


def adapter_class(config: dict, family: str | None = None, name: str = "the checkpoint") -> type[ModelAdapter]:
    """The adapter for a raw config.json: the named `family`, else the one its model_type calls for."""
    if family is not None:
        known = families()
        if family not in known:
            raise AdapterError(f"unknown model family {family!r}; families: {', '.join(sorted(known))}")
        return known[family]
    model_type = config.get("model_type")
    if not model_type:
        raise AdapterError(f"the config.json of {name!r} has no model_type; flowcheck cannot pick an adapter")
    return adapter_for_model_type(model_type, config)


BUNDLED = bundled.MODELS
"""Bundled model name -> folder (package data in `flowcheck.bundled`)."""


def resolve_name(name_or_path: str) -> str:
    """Bundled model names -> their folder in the installed package; anything else is returned unchanged (a path
    or hub id). A bundled model whose folder has no config.json is an AdapterError saying how to restore it."""
    if name_or_path in BUNDLED:
        folder = bundled.model_dir(name_or_path)
        if not (folder / "config.json").exists():
            raise AdapterError(
                f"the bundled model {name_or_path} is missing from {folder}; reinstall flowcheck from a full "
                "checkout (`pip install .`), or retrain it with `python -m flowcheck.tiny.train` and copy the run's "
                f"final/ folder to {folder}"
            )
        return str(folder)
    return name_or_path


def checkpoint_json(
    name_or_path: str, filename: str, revision: str | None = None, *, required: bool = True
) -> dict[str, Any] | None:
    """A JSON file of a local checkpoint folder or hub checkpoint (no model code is run); None when absent
    and not `required`."""
    local = Path(name_or_path)
    if not local.is_dir() and (name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1):
        raise AdapterError(
            f"no checkpoint folder at {name_or_path}; give a folder written by save_pretrained or a hub id"
        )
    if local.is_dir():
        path = local / filename
        if not path.exists():
            if not required:
                return None
            raise AdapterError(f"{local} has no {filename}; point at a folder written by save_pretrained")
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            path = Path(hf_hub_download(name_or_path, filename, revision=revision))
        except EntryNotFoundError:
            if not required:
                return None
            raise AdapterError(
                f"the hub checkpoint {name_or_path!r} has no {filename} (or, offline, it is not in the local cache)"
            ) from None
        except Exception as err:
            raise AdapterError(
                f"cannot read {filename} of {name_or_path!r} ({type(err).__name__}: {err}). Give a local "
                "checkpoint folder, or a hub id reachable from this machine (or cached, with HF_HUB_OFFLINE=1)."
            ) from err
    try:
        data = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterError(
            f"{filename} of {name_or_path} is not valid JSON ({err}); the checkpoint is damaged"
        ) from None
    if not isinstance(data, dict):
        raise AdapterError(f"{filename} of {name_or_path} holds a {type(data).__name__}, not a JSON object")
    return data


def read_config(name_or_path: str, revision: str | None = None) -> dict[str, Any]:
    """The raw config.json of a local folder or hub checkpoint (no model code is run)."""
    return checkpoint_json(name_or_path, "config.json", revision)


def load(
    name_or_path: str,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    device_map: str | dict | None = None,
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    num_frames: int = 8,
    revision: str | None = None,
    family: str | None = None,
    system_mode: str = "auto",
) -> ModelAdapter:
    """Load a checkpoint (hub id or local folder) with the adapter its config names.

    `dtype` is ``float32``, ``bfloat16`` or ``float16``. Remote model code runs only with
    `trust_remote_code=True`. `family` forces an adapter (e.g. ``"pllava"`` to run an image LLaVA-NeXT
    checkpoint through the paper's 8-frame pooled pipeline); a name may also say ``NAME@family``.
    `system_mode` places the system prompt of chat-template families: ``"auto"`` (a system turn, or
    folded into the user turn when the template rejects one), ``"turn"``, ``"fold"`` or ``"drop"``;
    the authors' own conversation formats (PLLaVA, InternVL-chat) accept only ``"auto"``.
    """
    if family is None and "@" in name_or_path:
        name_or_path, family = name_or_path.rsplit("@", 1)
    name_or_path = resolve_name(name_or_path)
    config = read_config(name_or_path, revision=revision)
    cls = adapter_class(config, family, name_or_path)
    return cls.from_pretrained(
        name_or_path,
        dtype=dtype,
        device=device,
        device_map=device_map,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
        num_frames=num_frames,
        revision=revision,
        config=config,
        system_mode=system_mode,
    )
