"""Tiny offline checkpoints of transformers-native video families: real classes, random weights, real processors
with word-level tokenizers whose chat templates follow the family's real template."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from flowcheck.tiny.tokenizer import vocabulary

QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
]


def word_tokenizer(
    specials: list[str], extra_words: list[str], chat_template: str, **special_roles
) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer over the synthetic vocabulary plus `extra_words`, with special tokens."""
    words = sorted(set(vocabulary()) | set(extra_words))
    vocab = {tok: i for i, tok in enumerate(["<unk>", *specials, *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[ \t]+"), "removed"),
            pre_tokenizers.Split(Regex(r"\n"), "isolated"),
            pre_tokenizers.Punctuation("isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", **special_roles)
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.chat_template = chat_template
    return tokenizer


def tiny_text_config(vocab_size: int, layers: int, **extra) -> dict:
    """The language model of every tiny fixture: hidden 32, 4 heads over 2 key-value heads."""
    return dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        **extra,
    )


def tiny_vit_config(**extra) -> dict:
    """A one-layer ViT on 32-px frames with 8-px patches (CLIP, SigLIP, InternViT, SmolVLM)."""
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        **{"image_size": 32, "patch_size": 8, **extra},
    )


def save_qwen2_vl(folder: Path, layers: int = 4, version: str = "qwen2_vl") -> Path:
    """A tiny Qwen2-VL (or Qwen2.5-VL / Qwen3-VL) checkpoint with its processor."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = word_tokenizer(
        QWEN_SPECIALS,
        ["system", "user", "assistant", "<", ">", "seconds"],  # Qwen3-VL writes "<0.4 seconds>" before each group
        QWEN_TEMPLATE,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = tiny_text_config(
        len(tokenizer), layers, bos_token_id=None, eos_token_id=ids["<|im_end|>"], max_position_embeddings=1024
    )
    tokens = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    image_kwargs = dict(patch_size=14, temporal_patch_size=2, merge_size=2, min_pixels=28 * 28, max_pixels=56 * 56)
    video_kwargs = dict(
        patch_size=14, temporal_patch_size=2, merge_size=2, size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56}
    )
    if version == "qwen3_vl":
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [2, 1, 1],
            "mrope_interleaved": True,
        }
        config = Qwen3VLConfig(
            text_config={**text, "head_dim": 8},
            vision_config=dict(
                depth=2,
                hidden_size=32,
                intermediate_size=64,
                num_heads=2,
                out_hidden_size=32,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
                deepstack_visual_indexes=[0, 1],
                num_position_embeddings=16,
            ),
            **tokens,
        )
        model = Qwen3VLForConditionalGeneration(config)
        video = Qwen3VLVideoProcessor(
            patch_size=14,
            temporal_patch_size=2,
            merge_size=2,
            size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56 * 8},
        )
        image = Qwen2VLImageProcessor(**image_kwargs)
        processor = Qwen3VLProcessor(
            image_processor=image, tokenizer=tokenizer, video_processor=video, chat_template=QWEN_TEMPLATE
        )
    else:
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}
        cls_config, cls_model = (
            (Qwen2VLConfig, Qwen2VLForConditionalGeneration)
            if version == "qwen2_vl"
            else (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration)
        )
        vision = dict(
            depth=1,
            embed_dim=32,
            hidden_size=32,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        )
        if version == "qwen2_5_vl":
            vision = dict(
                depth=1,
                hidden_size=32,
                intermediate_size=64,
                num_heads=2,
                out_hidden_size=32,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=28,
                fullatt_block_indexes=[0],
            )
        model = cls_model(cls_config(text_config=text, vision_config=vision, **tokens))
        # the processor class real checkpoints of each version ship (Qwen2.5-VL's adds second_per_grid_ts)
        processor_class = Qwen2VLProcessor if version == "qwen2_vl" else Qwen2_5_VLProcessor
        processor = processor_class(
            image_processor=Qwen2VLImageProcessor(**image_kwargs),
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(**video_kwargs),
            chat_template=QWEN_TEMPLATE,
        )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'][0]['text'] }}"
    "{% else %}{{ ' ' if not loop.first else '' }}{{ message['role'].upper() }}: "
    "{% for part in message['content'] %}{% if part['type'] == 'video' %}<video>\n"
    "{% elif part['type'] == 'image' %}<image>\n{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %} ASSISTANT:{% endif %}"
)
QWEN_CHAT_LLAVA_TEMPLATE = QWEN_TEMPLATE.replace("<|vision_start|><|video_pad|><|vision_end|>", "<video>").replace(
    "<|vision_start|><|image_pad|><|vision_end|>", "<image>"
)


def save_llava_onevision(folder: Path, layers: int = 4) -> Path:
    """A tiny LLaVA-OneVision (SigLIP 32 px / patch 8: 16 patches pooled to 4 per frame; Qwen2 LM)."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    specials = [*QWEN_SPECIALS, "<video>", "<image>"]
    tokenizer = word_tokenizer(
        specials,
        ["system", "user", "assistant"],
        QWEN_CHAT_LLAVA_TEMPLATE,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
    )
    torch.manual_seed(0)
    config = LlavaOnevisionConfig(
        vision_config=tiny_vit_config(model_type="siglip_vision_model"),
        text_config=tiny_text_config(len(tokenizer), layers, model_type="qwen2"),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[32, 32]],
    )
    LlavaOnevisionForConditionalGeneration(config).save_pretrained(folder)
    size = dict(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(**size, image_grid_pinpoints=[[32, 32]]),
        video_processor=LlavaOnevisionVideoProcessor(**size),
        tokenizer=tokenizer,
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=QWEN_CHAT_LLAVA_TEMPLATE,
    ).save_pretrained(folder)
    return folder


def save_video_llava(folder: Path, layers: int = 4) -> Path:
    """A tiny Video-LLaVA (CLIP 32 px / patch 8: 16 patches + CLS per frame; Llama LM)."""
    import torch
    from transformers import (
        VideoLlavaConfig,
        VideoLlavaForConditionalGeneration,
        VideoLlavaImageProcessor,
        VideoLlavaProcessor,
        VideoLlavaVideoProcessor,
    )

    tokenizer = word_tokenizer(
        ["<s>", "</s>", "<video>", "<image>"], ["USER", "ASSISTANT"], LLAVA_TEMPLATE, bos_token="<s>", eos_token="</s>"
    )
    torch.manual_seed(0)
    config = VideoLlavaConfig(
        vision_config=tiny_vit_config(model_type="clip_vision_model"),
        text_config=tiny_text_config(len(tokenizer), layers, model_type="llama"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
    )
    VideoLlavaForConditionalGeneration(config).save_pretrained(folder)
    size = dict(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    VideoLlavaProcessor(
        image_processor=VideoLlavaImageProcessor(**size),
        video_processor=VideoLlavaVideoProcessor(**size),
        tokenizer=tokenizer,
        patch_size=8,
        chat_template=LLAVA_TEMPLATE,
    ).save_pretrained(folder)
    return folder


INTERNVL_SPECIALS = [*QWEN_SPECIALS, "<img>", "</img>", "<IMG_CONTEXT>", "<video>", "<image>"]
INTERNVL_TEMPLATE = QWEN_CHAT_LLAVA_TEMPLATE.replace("<video>", "<video>\n")


def save_internvl(folder: Path, layers: int = 4) -> Path:
    """A tiny InternVL (HF format): InternViT 32 px / patch 8, pixel shuffle 0.5 -> 4 tokens per frame; Qwen2 LM."""
    import torch
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tokenizer = word_tokenizer(
        INTERNVL_SPECIALS,
        ["system", "user", "assistant", *[f"Frame{i}" for i in range(1, 17)]],
        INTERNVL_TEMPLATE,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
            "image_token": "<image>",
        },
    )
    torch.manual_seed(0)
    config = InternVLConfig(
        vision_config=tiny_vit_config(image_size=[32, 32], patch_size=[8, 8]),
        text_config=tiny_text_config(len(tokenizer), layers, model_type="qwen2"),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=4,
    )
    InternVLForConditionalGeneration(config).save_pretrained(folder)
    size = dict(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(**size, crop_to_patches=False),
        video_processor=InternVLVideoProcessor(**size),
        tokenizer=tokenizer,
        image_seq_length=4,
        chat_template=INTERNVL_TEMPLATE,
    ).save_pretrained(folder)
    return folder


GLM_SPECIALS = [
    "<|endoftext|>",
    "[gMASK]",
    "<sop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|image|>",
    "<|video|>",
]
GLM_TEMPLATE = (
    "[gMASK]<sop>{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% for part in message['content'] %}{% if part['type'] == 'video' %}<|begin_of_video|><|video|><|end_of_video|>"
    "{% elif part['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def save_glm4v(folder: Path, layers: int = 4) -> Path:
    """A tiny GLM-4.1V (Glm4vForConditionalGeneration) with its processor."""
    import torch
    from transformers import (
        Glm4vConfig,
        Glm4vForConditionalGeneration,
        Glm4vImageProcessor,
        Glm4vProcessor,
        Glm4vVideoProcessor,
    )

    tokenizer = word_tokenizer(GLM_SPECIALS, [], GLM_TEMPLATE, pad_token="<|endoftext|>", eos_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in GLM_SPECIALS}
    torch.manual_seed(0)
    config = Glm4vConfig(
        text_config=tiny_text_config(
            len(tokenizer),
            layers,
            max_position_embeddings=1024,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 1, 1],
                "partial_rotary_factor": 1.0,
            },
        ),
        vision_config=dict(
            depth=1,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=32,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            image_size=56,
        ),
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"],
        image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"],
        video_end_token_id=ids["<|end_of_video|>"],
    )
    Glm4vForConditionalGeneration(config).save_pretrained(folder)
    kwargs = dict(
        patch_size=14, temporal_patch_size=2, merge_size=2, size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56}
    )
    Glm4vProcessor(
        image_processor=Glm4vImageProcessor(**kwargs),
        video_processor=Glm4vVideoProcessor(**kwargs),
        tokenizer=tokenizer,
        chat_template=GLM_TEMPLATE,
    ).save_pretrained(folder)
    return folder


SMOL_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<global-img>",
    "<image>",
    "<video>",
]
SMOL_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'video' %}{{ '<video>' }}{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def save_smolvlm(folder: Path, layers: int = 4) -> Path:
    """A tiny SmolVLM2 (SmolVLMForConditionalGeneration): 32 px frames, patch 8, pixel shuffle 2 -> 4 tokens."""
    import torch
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    words = [
        "System",
        "User",
        "Assistant",
        "You",
        "are",
        "provided",
        "following",
        "series",
        "of",
        "eight",
        "frames",
        "from",
        "a",
        "video",
        "Frame",
        "[",
        "]",
        "H",
        "MM",
        "SS",
        *[f"{i:02d}" for i in range(60)],
    ]
    tokenizer = word_tokenizer(
        SMOL_SPECIALS,
        words,
        SMOL_TEMPLATE,
        pad_token="<|endoftext|>",
        eos_token="<end_of_utterance>",
        extra_special_tokens={
            "fake_image_token": "<fake_token_around_image>",
            "image_token": "<image>",
            "end_of_utterance_token": "<end_of_utterance>",
            "global_image_token": "<global-img>",
            "video_token": "<video>",
        },
    )
    torch.manual_seed(0)
    config = SmolVLMConfig(
        vision_config=tiny_vit_config(),
        text_config=tiny_text_config(len(tokenizer), layers, model_type="llama"),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    SmolVLMForConditionalGeneration(config).save_pretrained(folder)
    size = dict(
        size={"longest_edge": 32}, max_image_size={"longest_edge": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(**size, do_image_splitting=False),
        video_processor=SmolVLMVideoProcessor(**size),
        tokenizer=tokenizer,
        image_seq_len=4,
        chat_template=SMOL_TEMPLATE,
    ).save_pretrained(folder)
    return folder


def spliced_last_logits(adapter, enc) -> torch.Tensor:
    """The last position's logits of an encoded sample through the adapter's decoder path (the engine's)."""
    from flowcheck.engine import last_logits

    return last_logits(adapter.decoder, enc.inputs)[0]


def assert_passes(*checks) -> None:
    """Every given contract check (flowcheck.analyses.contract.Check) passed; the failure names its detail."""
    failed = [c.line() for c in checks if c.verdict != "pass"]
    assert not failed, "\n".join(failed)


def assert_local_knockout_and_fast_engine(adapter, enc, batch_size: int = 3) -> None:
    """Video -> last changes only the last row (exactly, fp32 on CPU); the fast engine equals the plain one on
    every paper condition (the shared contract checks)."""
    from flowcheck.analyses import contract
    from flowcheck.edges import make_window

    layers = adapter.num_layers
    windows = [make_window(layers, 0, 1), make_window(layers, layers - 1, 1)]
    assert_passes(
        contract.check_local_knockout(adapter, enc, tolerance=0.0),
        contract.check_fast_engine(adapter, enc, 1e-5, windows=windows, batch_size=batch_size),
    )


def assert_question_and_answer_prefix(adapter, enc, sample) -> None:
    """The question and option spans decode to their text, and the option letters are single tokens after the
    answer prefix the prompt ends with (the shared contract checks)."""
    from flowcheck.analyses import contract

    assert_passes(contract.check_text_spans(adapter, enc, sample), contract.check_option_letters(adapter, enc, sample))


def spliced_reference_logits(lm, ids: list[int], placeholder: int, video: torch.Tensor) -> torch.Tensor:
    """A reference forward: `video` ([tokens, hidden]) replaces the one `placeholder` of `ids` in `lm`'s input."""
    p = ids.index(placeholder)
    with torch.no_grad():
        emb = lm.get_input_embeddings()(torch.tensor([ids]))
        merged = torch.cat([emb[:, :p], video[None], emb[:, p + 1 :]], dim=1)
        return lm(inputs_embeds=merged).logits[0, -1]


def authors_question(sample) -> str:
    """The authors' qa_template for a sample, written out independently of flowcheck.prompt."""
    options = "\n".join(f"({'ABCDEFG'[i]}) {o}" for i, o in enumerate(sample.options))
    return f"Question: {sample.question}\nOptions:\n{options} \nOnly give the best option."


def save_videollama3(folder: Path, layers: int = 4) -> Path:
    """A tiny VideoLLaMA3 (transformers format): 14-px patches merged 2x2, Qwen2 LM, Qwen-style template."""
    from transformers import (
        VideoLlama3Config,
        VideoLlama3ForConditionalGeneration,
        VideoLlama3ImageProcessor,
        VideoLlama3Processor,
        VideoLlama3VideoProcessor,
    )

    tokenizer = word_tokenizer(
        QWEN_SPECIALS,
        ["system", "user", "assistant", "Time", "s", *[str(i) for i in range(10)]],
        QWEN_TEMPLATE.replace("<|vision_start|><|video_pad|><|vision_end|>", "<|video_pad|>"),
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = tiny_text_config(len(tokenizer), layers, model_type="qwen2", max_position_embeddings=1024)
    torch.manual_seed(0)
    config = VideoLlama3Config(
        text_config=text,
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, patch_size=14
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    VideoLlama3ForConditionalGeneration(config).save_pretrained(folder)
    pixels = dict(patch_size=14, merge_size=2, size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56})
    VideoLlama3Processor(
        image_processor=VideoLlama3ImageProcessor(**pixels),
        video_processor=VideoLlama3VideoProcessor(
            **{**pixels, "size": {"shortest_edge": 28 * 28, "longest_edge": 56 * 56 * 8}}
        ),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    ).save_pretrained(folder)
    return folder
