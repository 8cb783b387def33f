"""ModelConfig: the shapes and options of a Qwen3 / Qwen2 / Llama-3 style decoder.

Presets cover the checkpoints researchers fine-tune (the paper uses Qwen3-1.7B)
plus `tiny`/`small` for CPU work. `from_hf_config` maps any Hugging Face
`config.json` of these families (transformers 4 `rope_theta`/`rope_scaling`
or transformers 5 `rope_parameters`) onto it; `to_hf_config` writes one back.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

FAMILIES = ("qwen3", "qwen2", "llama")
_ARCHITECTURES = {"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM",
                  "llama": "LlamaForCausalLM"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    family: str = "qwen3"
    vocab_size: int = 151936
    hidden_size: int = 2048
    intermediate_size: int = 6144
    num_layers: int = 28
    num_heads: int = 16
    num_kv_heads: int = 8
    head_dim: int = 128  # Explicit: Qwen3's head_dim differs from hidden / heads.
    rope_theta: float = 1_000_000.0
    # Llama-3 RoPE scaling: (factor, low_freq_factor, high_freq_factor, original_max_positions);
    # None = plain RoPE.
    rope_llama3: tuple[float, float, float, int] | None = None
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    qk_norm: bool = True  # Qwen3: RMSNorm on q and k per head, before RoPE.
    qkv_bias: bool = False  # Qwen2: biases on q, k, v projections.
    max_position_embeddings: int = 40960
    param_dtype: str = "float32"  # 'float32' | 'bfloat16'
    dtype: str = "float32"  # Compute dtype; logits are always float32.
    remat: str = "none"  # 'none' | 'full' | 'dots': rematerialise each layer in backward.
    # Attention without a KV cache (training, scoring): 'xla' (einsum softmax) | 'dpa'
    # (jax.nn.dot_product_attention). Cached prefill and decode always use einsums.
    attention_impl: str = "xla"
    # Layers unrolled per scan iteration: 1 compiles fastest; num_layers lets XLA fuse across
    # layers (faster steps on CPU, longer compiles).
    scan_unroll: int = 1
    # Training-only dropout on the embeddings and on each attention and MLP output, active
    # when `apply` gets a 'dropout' rng (the SFT loss passes one; scoring, sampling and GRPO
    # never do). From-scratch CPU models overfit without it; not written to config.json.
    dropout: float = 0.0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"ModelConfig.family='{self.family}' is not one of {FAMILIES}.")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}."
            )
        for name in ("param_dtype", "dtype"):
            if getattr(self, name) not in ("float32", "bfloat16"):
                raise ValueError(f"ModelConfig.{name}='{getattr(self, name)}': use float32 or "
                                 "bfloat16.")
        if self.remat not in ("none", "full", "dots"):
            raise ValueError(f"ModelConfig.remat='{self.remat}': use none, full or dots.")
        if self.scan_unroll < 1:
            raise ValueError(f"ModelConfig.scan_unroll={self.scan_unroll} must be >= 1.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout={self.dropout} must be in [0, 1).")
        if self.attention_impl not in ("xla", "dpa"):
            raise ValueError(f"ModelConfig.attention_impl='{self.attention_impl}': use xla or dpa.")

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def num_params(self) -> int:
        d, f, h = self.hidden_size, self.intermediate_size, self.head_dim
        attn = d * h * (self.num_heads * 2 + self.num_kv_heads * 2)
        if self.qkv_bias:
            attn += h * (self.num_heads + 2 * self.num_kv_heads)
        if self.qk_norm:
            attn += 2 * h
        layer = attn + 3 * d * f + 2 * d
        head = 0 if self.tie_word_embeddings else self.vocab_size * d
        return self.vocab_size * d + self.num_layers * layer + d + head

    # ------------------------------------------------------------ HF configs
    @classmethod
    def from_hf_config(cls, hf: Mapping[str, Any], **overrides) -> "ModelConfig":
        """Maps a Hugging Face config.json dict (transformers 4 or 5) onto ModelConfig."""
        model_type = hf.get("model_type")
        if model_type not in FAMILIES:
            raise ValueError(
                f"config.json model_type='{model_type}' is not supported; sidjax reads {FAMILIES}."
            )
        rope = dict(hf.get("rope_parameters") or {})
        legacy_scaling = hf.get("rope_scaling") or {}
        theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
        rope_type = rope.get("rope_type") or legacy_scaling.get("rope_type") or legacy_scaling.get(
            "type") or "default"
        scaling = {**legacy_scaling, **rope}
        llama3 = None
        if rope_type == "llama3":
            llama3 = (float(scaling["factor"]), float(scaling["low_freq_factor"]),
                      float(scaling["high_freq_factor"]),
                      int(scaling["original_max_position_embeddings"]))
        elif rope_type != "default":
            raise ValueError(f"config.json rope_type='{rope_type}' is not supported (default, "
                             "llama3).")
        heads = int(hf["num_attention_heads"])
        fields = dict(
            family=model_type,
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            intermediate_size=int(hf["intermediate_size"]),
            num_layers=int(hf["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(hf.get("num_key_value_heads") or heads),
            head_dim=int(hf.get("head_dim") or hf["hidden_size"] // heads),
            rope_theta=float(theta),
            rope_llama3=llama3,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qk_norm=model_type == "qwen3",
            qkv_bias=model_type == "qwen2" or bool(hf.get("attention_bias", False)),
            max_position_embeddings=int(hf.get("max_position_embeddings", 32768)),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"),
        )
        if hf.get("mlp_bias"):
            raise ValueError("config.json mlp_bias=true is not supported.")
        fields.update(overrides)
        return cls(**fields)

    def to_hf_config(self) -> dict[str, Any]:
        """A config.json dict that transformers 4 and 5 both load for this family."""
        rope_parameters: dict[str, Any] = {"rope_theta": self.rope_theta, "rope_type": "default"}
        legacy_scaling = None
        if self.rope_llama3 is not None:
            factor, low, high, original = self.rope_llama3
            legacy_scaling = {"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                              "high_freq_factor": high,
                              "original_max_position_embeddings": original}
            rope_parameters.update(legacy_scaling)
        hf = {
            "architectures": [_ARCHITECTURES[self.family]],
            "model_type": self.family,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "rope_theta": self.rope_theta,
            "rope_scaling": legacy_scaling,
            "rope_parameters": rope_parameters,
            "attention_bias": self.qkv_bias if self.family != "qwen2" else True,
            "torch_dtype": self.param_dtype,
            "dtype": self.param_dtype,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "use_cache": True,
        }
        if self.family == "llama":
            hf["mlp_bias"] = False
        return hf


def _qwen3(**kw) -> ModelConfig:
    return ModelConfig(family="qwen3", vocab_size=151936, rope_theta=1_000_000.0,
                       max_position_embeddings=40960, qk_norm=True, qkv_bias=False,
                       bos_token_id=None, eos_token_id=151645, **kw)


def _qwen2(**kw) -> ModelConfig:
    kw.setdefault("vocab_size", 151936)
    return ModelConfig(family="qwen2", rope_theta=1_000_000.0, max_position_embeddings=32768,
                       qk_norm=False, qkv_bias=True, bos_token_id=151643, eos_token_id=151643,
                       **kw)


def _llama(**kw) -> ModelConfig:
    return ModelConfig(family="llama", vocab_size=128256, rope_theta=500_000.0,
                       max_position_embeddings=131072, rms_norm_eps=1e-5, qk_norm=False,
                       qkv_bias=False, bos_token_id=128000, eos_token_id=128001, **kw)


PRESETS: dict[str, ModelConfig] = {
    "qwen3-0.6b": _qwen3(hidden_size=1024, intermediate_size=3072, num_layers=28, num_heads=16,
                         num_kv_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-1.7b": _qwen3(hidden_size=2048, intermediate_size=6144, num_layers=28, num_heads=16,
                         num_kv_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-4b": _qwen3(hidden_size=2560, intermediate_size=9728, num_layers=36, num_heads=32,
                       num_kv_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-8b": _qwen3(hidden_size=4096, intermediate_size=12288, num_layers=36, num_heads=32,
                       num_kv_heads=8, head_dim=128, tie_word_embeddings=False),
    "qwen2.5-0.5b": _qwen2(hidden_size=896, intermediate_size=4864, num_layers=24, num_heads=14,
                           num_kv_heads=2, head_dim=64, tie_word_embeddings=True),
    "qwen2.5-1.5b": _qwen2(hidden_size=1536, intermediate_size=8960, num_layers=28,
                           num_heads=12, num_kv_heads=2, head_dim=128, tie_word_embeddings=True),
    "qwen2.5-7b": _qwen2(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                         num_layers=28, num_heads=28, num_kv_heads=4, head_dim=128,
                         tie_word_embeddings=False),
    "llama3.2-1b": _llama(hidden_size=2048, intermediate_size=8192, num_layers=16, num_heads=32,
                          num_kv_heads=8, head_dim=64, tie_word_embeddings=True,
                          rope_llama3=(32.0, 1.0, 4.0, 8192)),
    "llama3.2-3b": _llama(hidden_size=3072, intermediate_size=8192, num_layers=28, num_heads=24,
                          num_kv_heads=8, head_dim=128, tie_word_embeddings=True,
                          rope_llama3=(32.0, 1.0, 4.0, 8192)),
    "llama3.1-8b": _llama(hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32,
                          num_kv_heads=8, head_dim=128, tie_word_embeddings=False,
                          rope_llama3=(8.0, 1.0, 4.0, 8192)),
    # CPU presets (Qwen3 layout); vocab_size is replaced by the trained tokenizer's size.
    "tiny": ModelConfig(family="qwen3", vocab_size=1024, hidden_size=64, intermediate_size=192,
                        num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                        rope_theta=10000.0, max_position_embeddings=2048,
                        tie_word_embeddings=True),
    # About 20M parameters: the benchmark size.
    "small": ModelConfig(family="qwen3", vocab_size=8192, hidden_size=512,
                         intermediate_size=1536, num_layers=6, num_heads=8, num_kv_heads=4,
                         head_dim=64, rope_theta=10000.0, max_position_embeddings=4096,
                         tie_word_embeddings=True),
}


def get_preset(name: str, **overrides) -> ModelConfig:
    key = name.lower()
    if key not in PRESETS:
        raise ValueError(f"Unknown model preset '{name}'; presets: {sorted(PRESETS)}.")
    return PRESETS[key].replace(**overrides)
