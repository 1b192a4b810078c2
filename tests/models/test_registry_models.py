"""Every model a shipped registry names resolves to a flowcheck adapter, through the pipeline the paper used.

Names come from flowcheck/specs/claims.toml ([models] keys and image_model), flowcheck/bundled/claims.toml and
flowcheck/specs/checkpoints.json. Each resolves through `flowcheck.load` on a tiny stand-in folder
whose config.json has the real checkpoint's `model_type` (recorded below from the hub configs; a
new name must add its own), keeping the name's ``@family`` suffix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import flowcheck
from flowcheck import bundled
from flowcheck.claims import tomllib  # tomli before Python 3.11
from flowcheck.models import registry
from flowcheck.models.base import AdapterError

REPO = Path(__file__).resolve().parents[2]

# config.json of each hub checkpoint, as published (model_type, plus what an adapter's `accepts` reads).
HUB_CONFIGS: dict[str, dict] = {
    "llava-hf/LLaVA-NeXT-Video-7B-hf": {"model_type": "llava_next_video"},
    "llava-hf/llava-v1.6-vicuna-7b-hf": {"model_type": "llava_next"},
    "llava-hf/llava-v1.6-vicuna-13b-hf": {"model_type": "llava_next"},
    "llava-hf/llava-onevision-qwen2-7b-ov-hf": {"model_type": "llava_onevision"},
    "LanguageBind/Video-LLaVA-7B-hf": {"model_type": "video_llava"},
    "Qwen/Qwen2-VL-7B-Instruct": {"model_type": "qwen2_vl"},
    "Qwen/Qwen2.5-VL-7B-Instruct": {"model_type": "qwen2_5_vl"},
    "Qwen/Qwen3-VL-8B-Instruct": {"model_type": "qwen3_vl"},
    "OpenGVLab/InternVL3-8B-hf": {"model_type": "internvl"},
    "zai-org/GLM-4.1V-9B-Thinking": {"model_type": "glm4v"},
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": {"model_type": "smolvlm"},
    # PLLaVA's own config class (model_type "llava") with its pooling shape
    "byminji/LLaVA-NeXT-7B-Video-FT": {"model_type": "llava", "pooling_shape": [8, 12, 12]},
    "byminji/LLaVA-NeXT-13B-Video-FT": {"model_type": "llava", "pooling_shape": [8, 12, 12]},
    "byminji/Mini-InternVL-4B-Video-FT": {"model_type": "internvl_chat"},
    "OpenGVLab/Mini-InternVL-Chat-4B-V1-5": {"model_type": "internvl_chat"},
    "DAMO-NLP-SG/VideoLLaMA3-7B": {"model_type": "videollama3_qwen2"},
}


def bundled_config(name: str) -> dict:
    return json.loads((bundled.model_dir(name) / "config.json").read_text())


def stand_in_config(name: str) -> dict:
    base = name.split("@", 1)[0]
    if base in registry.BUNDLED:
        return bundled_config(base)
    assert base in HUB_CONFIGS, f"{base} is named in a shipped registry: record its hub config.json in HUB_CONFIGS"
    return HUB_CONFIGS[base]


def claims_models(path: Path) -> list[tuple[str, str | None]]:
    """(video model, image model or None) pairs of a claims registry."""
    models = tomllib.loads(path.read_text()).get("models", {})
    return [(name, entry.get("image_model")) for name, entry in models.items()]


CLAIMS_FILES = [REPO / "flowcheck" / "specs" / "claims.toml", bundled.claims_file()]
CHECKPOINTS = json.loads((REPO / "flowcheck" / "specs" / "checkpoints.json").read_text())["checkpoints"]
NAMED = sorted(
    {c["name"] for c in CHECKPOINTS}
    | {m for path in CLAIMS_FILES for pair in claims_models(path) for m in pair if m is not None}
)


@pytest.fixture
def resolve(tmp_path, monkeypatch):
    """Resolve a registry name through `flowcheck.load` on a stand-in folder; returns the adapter class."""
    for cls in registry.families().values():
        monkeypatch.setattr(cls, "from_pretrained", classmethod(lambda c, name, **options: c))

    def run(name: str):
        base, _, family = name.partition("@")
        folder = tmp_path / base.replace("/", "--")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(stand_in_config(name)))
        return flowcheck.load(f"{folder}@{family}" if family else str(folder))

    return run


@pytest.mark.parametrize("name", NAMED)
def test_every_registry_name_resolves_to_an_adapter(resolve, name):
    cls = resolve(name)
    listed = {c["name"]: c["family"] for c in CHECKPOINTS}
    if name in listed:
        assert cls.family == listed[name]


@pytest.mark.parametrize(
    ("video", "image"), [pair for path in CLAIMS_FILES for pair in claims_models(path) if pair[1] is not None]
)
def test_image_models_run_through_their_video_models_pipeline(resolve, video, image):
    """official-protocol.md 1.1 / 14.16: the ImageLLM baseline runs in the video model's pipeline and prompt."""
    assert resolve(image).family == resolve(video).family


def test_every_claims_model_is_a_known_checkpoint():
    listed = {c["name"] for c in CHECKPOINTS}
    named = {m for pair in claims_models(CLAIMS_FILES[0]) for m in pair if m is not None}
    assert named <= listed, f"add {sorted(named - listed)} to flowcheck/specs/checkpoints.json"


def test_the_bare_llava_next_image_checkpoint_is_refused_clearly(resolve):
    """The old registry entry: an image LLaVA-NeXT checkpoint without @pllava has no adapter."""
    with pytest.raises(AdapterError, match="no flowcheck adapter for model_type 'llava_next'"):
        resolve("llava-hf/llava-v1.6-vicuna-7b-hf")


def test_a_text_only_checkpoint_is_named_as_such_by_transformers_own_model_types():
    from flowcheck.models.base import AdapterError
    from flowcheck.models.registry import adapter_for_model_type

    with pytest.raises(AdapterError, match="'llama' is a text-only language model"):
        adapter_for_model_type("llama", {"model_type": "llama"})
    with pytest.raises(AdapterError, match="no flowcheck adapter for model_type 'llava_next'"):
        adapter_for_model_type("llava_next", {"model_type": "llava_next"})  # an image VLM, not text-only
