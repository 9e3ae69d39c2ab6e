"""Tiny random transformers models of each family, saved with ``save_pretrained`` (no network, real library code)."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<eos>"] + ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away", "spam", "ham"]
VOCAB = {w: i for i, w in enumerate(WORDS)}
TEXTS = ["the cat sat on a mat", "dog ran", "a dog ran far far away on the mat", "spam"]


def word_tokenizer(folder: Path, *, pad: bool = True, cls_sep: bool = True, eos_last: bool = False, **special):
    """A WordLevel fast tokenizer; ``pad=False`` leaves it without a pad token (as GPT-2/Llama ship)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if cls_sep:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", VOCAB["[CLS]"]), ("[SEP]", VOCAB["[SEP]"])])
    elif eos_last:
        tok.post_processor = processors.TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", VOCAB["<eos>"])])
    kw = {"unk_token": "[UNK]", **special}
    if pad:
        kw["pad_token"] = "[PAD]"
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **kw)
    fast.save_pretrained(folder)
    return fast


def _save(model, folder: Path, *extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(folder)
    for item in extra:
        item.save_pretrained(folder)
    return folder


def vit(folder: Path) -> Path:
    import transformers as t

    torch.manual_seed(0)
    cfg = t.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32)
    proc = t.ViTImageProcessor(size={"height": 32, "width": 32})
    return _save(t.ViTModel(cfg), folder, proc)


def dinov2(folder: Path) -> Path:
    import transformers as t

    torch.manual_seed(1)
    cfg = t.Dinov2Config(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         mlp_ratio=2)
    proc = t.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32},
                               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return _save(t.Dinov2Model(cfg), folder, proc)


def clip_vision(folder: Path) -> Path:
    import transformers as t

    torch.manual_seed(2)
    cfg = t.CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=32)
    proc = t.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return _save(t.CLIPVisionModel(cfg), folder, proc)


def siglip_vision(folder: Path) -> Path:
    import transformers as t

    torch.manual_seed(3)
    cfg = t.SiglipVisionConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=32)
    proc = t.SiglipImageProcessor(size={"height": 32, "width": 32})
    return _save(t.SiglipVisionModel(cfg), folder, proc)


def convnext(folder: Path) -> Path:
    import transformers as t

    torch.manual_seed(4)
    cfg = t.ConvNextConfig(num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=32)
    proc = t.ConvNextImageProcessor(size={"shortest_edge": 32})
    return _save(t.ConvNextModel(cfg), folder, proc)


def clip(folder: Path) -> Path:
    import transformers as t

    torch.manual_seed(5)
    text = {"vocab_size": len(WORDS), "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 32, "max_position_embeddings": 16, "eos_token_id": VOCAB["[SEP]"],
            "pad_token_id": 0, "bos_token_id": VOCAB["[CLS]"]}
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 32}
    cfg = t.CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)
    folder.mkdir(parents=True, exist_ok=True)
    word_tokenizer(folder)
    proc = t.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return _save(t.CLIPModel(cfg), folder, proc)


def siglip(folder: Path) -> Path:
    import transformers as t

    torch.manual_seed(6)
    text = {"vocab_size": len(WORDS), "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 32, "max_position_embeddings": 12, "pad_token_id": 0}
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 32}
    cfg = t.SiglipConfig(text_config=text, vision_config=vision)
    folder.mkdir(parents=True, exist_ok=True)
    word_tokenizer(folder, cls_sep=False, eos_last=True)
    proc = t.SiglipImageProcessor(size={"height": 32, "width": 32})
    return _save(t.SiglipModel(cfg), folder, proc)


def gpt2(folder: Path) -> Path:
    import transformers as t

    torch.manual_seed(7)
    cfg = t.GPT2Config(vocab_size=len(WORDS), n_embd=16, n_layer=2, n_head=2, n_positions=64,
                       eos_token_id=VOCAB["<eos>"], bos_token_id=VOCAB["<eos>"])
    folder.mkdir(parents=True, exist_ok=True)
    word_tokenizer(folder, pad=False, cls_sep=False, eos_token="<eos>")  # GPT-2 ships without a pad token
    return _save(t.GPT2Model(cfg), folder)


def llama(folder: Path) -> Path:
    import transformers as t

    torch.manual_seed(8)
    cfg = t.LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                        eos_token_id=VOCAB["<eos>"], bos_token_id=VOCAB["[CLS]"])
    folder.mkdir(parents=True, exist_ok=True)
    word_tokenizer(folder, pad=False, cls_sep=False, eos_last=True, eos_token="<eos>")
    return _save(t.LlamaModel(cfg), folder)


def qwen2(folder: Path) -> Path:
    import transformers as t

    torch.manual_seed(9)
    # transformers' Qwen2 tokenizer class adds its own <|endoftext|> pad token after our words
    cfg = t.Qwen2Config(vocab_size=len(WORDS) + 4, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                        eos_token_id=VOCAB["<eos>"])
    folder.mkdir(parents=True, exist_ok=True)
    word_tokenizer(folder, pad=False, cls_sep=False, eos_token="<eos>")
    return _save(t.Qwen2Model(cfg), folder)


def bert(folder: Path) -> Path:
    import transformers as t

    torch.manual_seed(10)
    cfg = t.BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=32, max_position_embeddings=64)
    folder.mkdir(parents=True, exist_ok=True)
    word_tokenizer(folder, cls_token="[CLS]", sep_token="[SEP]")
    return _save(t.BertModel(cfg), folder)


VISION = {"vit": vit, "dinov2": dinov2, "clip-vision": clip_vision, "siglip-vision": siglip_vision, "convnext": convnext}
DECODERS = {"gpt2": gpt2, "llama": llama, "qwen2": qwen2}
