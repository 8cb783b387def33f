"""Tiny random Hugging Face models built from configs (no downloads), for parity tests."""

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)

FAMILIES = {
    # Qwen3: head_dim (16) differs from hidden / heads (8); q/k norms.
    "qwen3": lambda tie: Qwen3Config(head_dim=16, tie_word_embeddings=tie, **COMMON),
    # Qwen2: q/k/v biases.
    "qwen2": lambda tie: Qwen2Config(tie_word_embeddings=tie, rope_theta=50000.0, **COMMON),
    # Llama 3: llama3 RoPE scaling; original window small so all three regimes are used.
    "llama": lambda tie: LlamaConfig(
        tie_word_embeddings=tie, rms_norm_eps=1e-5,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
        **COMMON),
}


def make_hf_model(family: str, tie: bool, path: str, seed: int = 0, vocab_size: int | None = None):
    """Builds, re-randomises (weights large enough that logits are O(1)), saves, returns it."""
    torch.manual_seed(seed)
    config = FAMILIES[family](tie)
    if vocab_size is not None:
        config.vocab_size = vocab_size
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))  # Norm scales and biases around 1.
            else:
                p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)
    model.save_pretrained(path)
    return model
