"""A Llama policy written to one GGUF file, as llama.cpp's converter writes it: the tiny random
Llama that stands in for SmolLM2 where the real package is not installed (tests, and notebook 07
under CI), loaded back through the same code path as the real file (gguf_source).

Float32 tensors, so the round trip is exact. llama.cpp stores q and k with each head's rotary
halves interleaved; transformers undoes that permutation on load, so we apply it on write.
The tokenizer is byte-level with 26 fixed merges (a space and a lowercase letter): nothing learned,
nothing random. transformers needs some merges to rebuild a byte-level tokenizer from a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode alphabet (every byte a printable character), in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[byte] for byte in range(256)]


def byte_merges() -> list[str]:
    """A space (GPT-2's 'Ġ') followed by a lowercase letter: 26 merges, in alphabetical order."""
    space = byte_tokens()[ord(" ")]
    return [f"{space} {letter}" for letter in "abcdefghijklmnopqrstuvwxyz"]


def vocabulary() -> list[str]:
    """Bytes, then the merged tokens, then SPECIALS (eos = SPECIALS[0], bos = SPECIALS[1])."""
    return byte_tokens() + [merge.replace(" ", "") for merge in byte_merges()] + list(SPECIALS)


def tiny_llama(seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2):
    """A random LlamaForCausalLM (float32, tied embeddings) over vocabulary()."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = vocabulary()
    eos, bos = tokens.index(SPECIALS[0]), tokens.index(SPECIALS[1])
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=256, rope_theta=100000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=True, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float().eval()
    with torch.no_grad():  # RMSNorm weights start at 1: perturb them so a wrong mapping shows
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k layout (convert_hf_to_gguf.py's `permute`): per head, the rotary halves interleaved."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
          "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
          "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def gguf_tensors(model) -> dict[str, np.ndarray]:
    """The model's weights under llama.cpp's tensor names, q and k permuted (tied head left out)."""
    config = model.config
    tensors = {}
    for name, value in model.state_dict().items():
        array = value.detach().cpu().float().numpy()
        if name == "model.embed_tokens.weight":
            tensors["token_embd.weight"] = array
        elif name == "model.norm.weight":
            tensors["output_norm.weight"] = array
        elif name == "lm_head.weight":
            if not config.tie_word_embeddings:
                tensors["output.weight"] = array
        else:
            _, _, layer, *rest = name.split(".")
            module = ".".join(rest[:-1])
            if module == "self_attn.q_proj":
                array = _permute(array, config.num_attention_heads)
            elif module == "self_attn.k_proj":
                array = _permute(array, config.num_key_value_heads)
            tensors[f"blk.{layer}.{_NAMES[module]}.weight"] = array
    return tensors


def write_llama_gguf(model, path: Path | str) -> Path:
    """`model` (a LlamaForCausalLM over vocabulary()) as a float32 GGUF file at `path`, with the
    byte-level tokenizer that transformers rebuilds on load."""
    import gguf

    config, path = model.config, Path(path)
    tokens = vocabulary()
    if len(tokens) != config.vocab_size:
        raise ValueError(f"model: a vocabulary of {config.vocab_size}, the byte tokenizer has {len(tokens)}")
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name("tiny random llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_merges(byte_merges())
    control = {config.bos_token_id, config.eos_token_id, config.pad_token_id}
    writer.add_token_types([gguf.TokenType.CONTROL if i in control else gguf.TokenType.NORMAL
                            for i in range(len(tokens))])
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_pad_token_id(config.pad_token_id)
    writer.add_add_bos_token(False)
    for name, array in gguf_tensors(model).items():
        writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
