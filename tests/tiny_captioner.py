"""A tiny BLIP captioning model built here (random weights, a 40-word vocabulary), saved as a
transformers folder that `studio.captions.TransformersCaptioner` loads like a real one. It says
words of WORDS, the same for the same photo."""

from pathlib import Path

WORDS = [
    "a",
    "photo",
    "of",
    "person",
    "man",
    "woman",
    "sitting",
    "standing",
    "on",
    "bench",
    "street",
    "park",
    "smiling",
    "with",
    "the",
    "in",
    "red",
    "blue",
    "hat",
    "dog",
]


def save_tiny_captioner(folder: Path) -> Path:
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    tokenizer.bos_token = "[CLS]"
    size = 32
    processor = BlipProcessor(BlipImageProcessorPil(size={"height": size, "width": size}), tokenizer)
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "bos_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": size,
        "patch_size": 8,
    }
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision))
    with torch.no_grad():  # random weights would mostly say special tokens: keep them to words
        model.text_decoder.cls.predictions.bias[:5] = -20.0
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
