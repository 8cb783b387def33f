"""Forward+backward tokens/s: sidjax vs Hugging Face transformers (PyTorch), same run.

    python bench/model_throughput.py [--iters 3] [--rounds 3] [--batch 8] [--seq 256]

Same Qwen3 config (the `small` preset, ~23M params), same batch, float32, same
machine, measured back to back. Prints each sidjax variant (attention
implementation, 1 device vs 8 simulated devices data-parallel) and its ratio to
transformers. Every variant (and a matmul probe) is timed round-robin and the
median kept, so drift in a shared machine's speed hits all of them alike. Needs
torch (the test extra).
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

from sidjax.train import host_memory  # noqa: E402

# As sidjax.main does, before jax is imported; torch runs in this process too, under the
# same setting. SIDJAX_GLIBC_MALLOC=default measures glibc's defaults instead.
KEPT_FREED_MEMORY = host_memory.keep_freed_memory_on_cpu()

import argparse  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402
from timing import interleaved_medians, warmed  # noqa: E402  (bench/ is on sys.path)

from sidjax.model.config import get_preset  # noqa: E402
from sidjax.model.model import init_params  # noqa: E402
from sidjax.sft.loss import lm_loss  # noqa: E402
from sidjax.train.mesh import make_global_batch, make_mesh  # noqa: E402

MATMUL = (2048, 512, 1536)  # m, k, n of the peak-rate probe;
MATMUL_REPEATS = 20  # timed this many times per call: ~0.3 s, like a training step.


def sidjax_step(config, tokens, devices):
    """The SFT loss (summed next-token cross-entropy) and its gradient, data-parallel."""
    grad = jax.jit(jax.value_and_grad(lambda p, b: lm_loss(config, (), p, b), has_aux=True))
    params = init_params(config, jax.random.PRNGKey(0))
    mesh = make_mesh({"data": -1}, devices=devices)
    params = jax.device_put(params, NamedSharding(mesh, P()))
    ones = np.ones(tokens.shape, bool)
    batch = make_global_batch({"tokens": tokens.astype(np.int32), "valid": ones,
                               "loss_mask": ones, "task": np.zeros(len(tokens), np.int32)}, mesh)

    def step():
        with jax.set_mesh(mesh):
            jax.block_until_ready(grad(params, batch))

    return warmed(step)


def torch_step(config, tokens):
    from transformers import AutoModelForCausalLM, Qwen3Config

    hf_config = Qwen3Config(**{k: v for k, v in config.to_hf_config().items()
                               if k not in ("architectures", "model_type")})
    model = AutoModelForCausalLM.from_config(hf_config, attn_implementation="sdpa")
    model.train()
    batch = torch.tensor(tokens)

    def step():
        model.zero_grad(set_to_none=True)
        loss = model(batch, labels=batch).loss
        loss.backward()

    return warmed(step)


def matmul_steps() -> dict:
    """[2048,512] x [512,1536] float32 matmuls in XLA and torch: the peak-ish rate here."""
    a, b = jnp.ones((MATMUL[0], MATMUL[1])), jnp.ones((MATMUL[1], MATMUL[2]))
    mm = jax.jit(lambda a, b: a @ b)
    ta, tb = torch.ones(MATMUL[0], MATMUL[1]), torch.ones(MATMUL[1], MATMUL[2])
    def xla():
        for _ in range(MATMUL_REPEATS):
            mm(a, b).block_until_ready()

    def pt():
        for _ in range(MATMUL_REPEATS):
            ta @ tb

    return {"xla matmul": warmed(xla), "torch matmul": warmed(pt)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=3, help="steps per timing")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin timings per variant")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    args = parser.parse_args()
    config = get_preset("small")
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (args.batch, args.seq))
    n_tokens = args.batch * args.seq
    print(f"Qwen3 'small' preset: {config.num_params() / 1e6:.1f}M params, batch "
          f"{args.batch}x{args.seq}, float32, {os.cpu_count()} CPUs, glibc malloc "
          f"{'keeps freed memory' if KEPT_FREED_MEMORY else 'defaults'}; median of {args.rounds} "
          f"round-robin timings of {args.iters} steps")
    one, eight = jax.devices()[:1], jax.devices()[:8]
    dpa = config.replace(attention_impl="dpa")
    steps = {
        "transformers (torch, sdpa)": torch_step(config, tokens),
        "sidjax xla attention, 1 device": sidjax_step(config, tokens, one),
        "sidjax dot_product_attention, 1 device": sidjax_step(dpa, tokens, one),
        "sidjax dpa, layers unrolled, 1 device":
            sidjax_step(dpa.replace(scan_unroll=config.num_layers), tokens, one),
        "sidjax xla attention, 8 devices data-parallel": sidjax_step(config, tokens, eight),
        **matmul_steps(),
    }
    median = interleaved_medians(steps, args.rounds, args.iters)
    torch_time = median.pop("transformers (torch, sdpa)")
    matmul_flops = 2 * np.prod(MATMUL) * MATMUL_REPEATS
    xla_peak = matmul_flops / median.pop("xla matmul") / 1e9
    torch_peak = matmul_flops / median.pop("torch matmul") / 1e9
    print(f"transformers (torch, sdpa, {torch.get_num_threads()} threads): "
          f"{n_tokens / torch_time:9.0f} tokens/s")
    # Roofline: fwd+bwd is ~6 * params * tokens FLOPs, almost all matmuls.
    torch_rate = 6 * config.num_params() * n_tokens / torch_time / 1e9
    print(f"matmul peak here: XLA {xla_peak:.0f} GFLOP/s, torch {torch_peak:.0f} GFLOP/s; "
          f"transformers sustains {torch_rate:.0f} GFLOP/s, so a matmul-bound sidjax can reach "
          f"at most {xla_peak / torch_rate:.2f}x")
    for name, t in median.items():
        print(f"{name:46s}: {n_tokens / t:9.0f} tokens/s  ratio vs transformers "
              f"{torch_time / t:.2f}x")


if __name__ == "__main__":
    main()
