"""Tiny language models in LLaMA-Mesh's two formats, made at test time (nothing is downloaded).

- :func:`tiny_transformers`: a Llama of a few thousand parameters with a character tokenizer,
  saved as a transformers folder (``config.json``, safetensors, tokenizer with a chat template);
- :func:`tiny_gguf`: a Llama of the same kind written as a GGUF file (llama.cpp's tensor names,
  a SentencePiece-style vocabulary with byte fallback), random weights.

Random weights write nonsense; with the OBJ grammar on they still write valid OBJ lines, which
is what the runners' tests need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Characters of the tiny vocabularies: enough for OBJ text and short prompts.
CHARACTERS = list("vf 0123456789\n") + list("abcdeghijklmnopqrstuwxyz.,ACDM")
CHAT_TEMPLATE = ("{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def tiny_transformers(folder: Path, *, seed: int = 0) -> Path:
    """A random tiny Llama + character tokenizer (two multi-character pieces: ``"v "`` and ``"f "``)."""
    import torch
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    specials = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
    pieces = specials + CHARACTERS + ["v ", "f "]
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = [("v", " "), ("f", " ")]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tokenizer.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", additional_special_tokens=specials[3:])
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(pieces), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def tiny_gguf(path: Path, *, seed: int = 0, width: int = 32, layers: int = 2, heads: int = 4,
              kv_heads: int = 2, ff: int = 64, context: int = 2048) -> Path:
    """A random tiny Llama as a GGUF file llama.cpp loads (f32 tensors)."""
    import gguf

    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + \
        [gguf.TokenType.BYTE] * 256
    for ch in CHARACTERS:
        piece = "\u2581" if ch == " " else ch
        if ch == "\n":
            continue                                  # byte fallback <0x0A>
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
    for piece in ("v\u2581", "f\u2581", "\u2581v", "\u2581f"):
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
    scores = [0.0] * 259 + [-float(i) for i in range(len(tokens) - 259)]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("meshsmith-tiny-random")
    writer.add_context_length(context)
    writer.add_embedding_length(width)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(width // heads)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE.replace("<|user|>", "User: ").replace("<|assistant|>", "Mesh:\n"))

    def tensor(name: str, *shape: int, scale: float = 0.2) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    head = width // heads
    tensor("token_embd.weight", len(tokens), width)
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(width, dtype=np.float32))
        tensor(f"blk.{i}.attn_q.weight", width, width)
        tensor(f"blk.{i}.attn_k.weight", kv_heads * head, width)
        tensor(f"blk.{i}.attn_v.weight", kv_heads * head, width)
        tensor(f"blk.{i}.attn_output.weight", width, width)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(width, dtype=np.float32))
        tensor(f"blk.{i}.ffn_gate.weight", ff, width)
        tensor(f"blk.{i}.ffn_up.weight", ff, width)
        tensor(f"blk.{i}.ffn_down.weight", width, ff)
    writer.add_tensor("output_norm.weight", np.ones(width, dtype=np.float32))
    tensor("output.weight", len(tokens), width)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_mesh_lm(folder: Path, *, seed: int = 0) -> Path:
    """A random MeshLM checkpoint folder (config.json + model.safetensors), as training.train writes one."""
    import torch

    from training.mesh_lm import MeshLM, MeshLMConfig
    from training.train import TrainConfig, save_checkpoint

    torch.manual_seed(seed)
    model = MeshLM(MeshLMConfig(width=32, layers=1, heads=2, max_tokens=256, point_latents=8, point_layers=1,
                                text_layers=1))
    save_checkpoint(Path(folder), model, TrainConfig(task="mesh_lm"), extra={"step": 3})
    return Path(folder)


if __name__ == "__main__":
    # python -m tests.llm_models OUT: the tiny models in OUT/ (for tests that run where torch is not, e.g. in
    # Blender's Python: the backend's Python makes them).
    import sys

    out = Path(sys.argv[1])
    tiny_transformers(out / "llama-transformers")
    tiny_mesh_lm(out / "mesh-lm")
    print(out)
