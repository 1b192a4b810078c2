"""Model adapters: one small module per family over shared components, and `load`."""

from flowcheck.models.base import AdapterError, EncodedSample, ModelAdapter
from flowcheck.models.registry import adapter_for_model_type, families, load, register

__all__ = [
    "AdapterError",
    "EncodedSample",
    "ModelAdapter",
    "adapter_for_model_type",
    "families",
    "load",
    "register",
]
