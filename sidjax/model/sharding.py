"""Where every decoder weight lives on the ('data', 'fsdp', 'tensor') mesh: one table.

Layer weights carry a leading layer axis (nn.scan), never sharded. fsdp splits
the model dimension, tensor splits heads / the MLP hidden / the vocabulary.
"""

from jax.sharding import PartitionSpec as P

PARTITION_RULES = (
    (r"^embed/embedding$", P("tensor", "fsdp")),  # [V, D]
    (r"^lm_head$", P("fsdp", "tensor")),  # [D, V]
    (r"^layers/attn/(q|k|v)/kernel$", P(None, "fsdp", "tensor", None)),  # [L, D, N, H]
    (r"^layers/attn/(q|k|v)/bias$", P(None, "tensor", None)),  # [L, N, H]
    (r"^layers/attn/o/kernel$", P(None, "tensor", None, "fsdp")),  # [L, N, H, D]
    (r"^layers/mlp/(gate|up)/kernel$", P(None, "fsdp", "tensor")),  # [L, D, F]
    (r"^layers/mlp/down/kernel$", P(None, "tensor", "fsdp")),  # [L, F, D]
    (r"scale$", P()),  # RMSNorm scales.
)
