"""Forward+backward tokens/s: sidjax vs Hugging Face transformers (PyTorch), same run.

    python bench/model_throughput.py [--iters 3] [--batch 8] [--seq 256]

Same Qwen3 config (the `small` preset, ~23M params), same batch, float32, same
machine, measured back to back. Prints each sidjax variant (attention
implementation, 1 device vs 8 simulated devices data-parallel) and its ratio to
transformers. Needs torch (the test extra).
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from sidjax.model.config import get_preset  # noqa: E402
from sidjax.model.model import init_params  # noqa: E402
from sidjax.model.transformer import Transformer  # noqa: E402
from sidjax.train.mesh import batch_sharding, make_mesh  # noqa: E402


def lm_loss(config):
    module = Transformer(config)

    def loss(params, tokens):
        logits, _ = module.apply({"params": params}, tokens)  # [B, T, V]
        logp = jax.nn.log_softmax(logits[:, :-1])
        return -jnp.mean(jnp.take_along_axis(logp, tokens[:, 1:, None], -1))

    return loss


def time_fn(fn, iters):
    fn()  # Compile / warm up.
    fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def sidjax_step_time(config, tokens, iters, devices):
    grad = jax.jit(jax.value_and_grad(lm_loss(config)))
    params = init_params(config, jax.random.PRNGKey(0))
    mesh = make_mesh({"data": -1}, devices=devices)
    params = jax.device_put(params, NamedSharding(mesh, P()))
    batch = jax.device_put(jnp.asarray(tokens, jnp.int32), batch_sharding(mesh, 2))
    with jax.set_mesh(mesh):
        return time_fn(lambda: jax.block_until_ready(grad(params, batch)), iters)


def torch_step_time(config, tokens, iters):
    import torch
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

    return time_fn(step, iters), torch.get_num_threads()


def matmul_gflops(iters: int = 10) -> tuple[float, float]:
    """Peak-ish float32 matmul GFLOP/s of XLA and torch here ([2048,512] x [512,1536])."""
    import torch

    m, k, n = 2048, 512, 1536
    a, b = jnp.ones((m, k)), jnp.ones((k, n))
    mm = jax.jit(lambda a, b: a @ b)
    xla = time_fn(lambda: mm(a, b).block_until_ready(), iters)
    ta, tb = torch.ones(m, k), torch.ones(k, n)
    pt = time_fn(lambda: ta @ tb, iters)
    return 2 * m * k * n / xla / 1e9, 2 * m * k * n / pt / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    args = parser.parse_args()
    config = get_preset("small")
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (args.batch, args.seq))
    n_tokens = args.batch * args.seq
    print(f"Qwen3 'small' preset: {config.num_params() / 1e6:.1f}M params, batch "
          f"{args.batch}x{args.seq}, float32, {os.cpu_count()} CPUs")
    torch_time, threads = torch_step_time(config, tokens, args.iters)
    print(f"transformers (torch, sdpa, {threads} threads): {n_tokens / torch_time:9.0f} tokens/s")
    # Roofline: fwd+bwd is ~6 * params * tokens FLOPs, almost all matmuls.
    flops = 6 * config.num_params() * n_tokens
    xla_peak, torch_peak = matmul_gflops()
    torch_rate = flops / torch_time / 1e9
    print(f"matmul peak here: XLA {xla_peak:.0f} GFLOP/s, torch {torch_peak:.0f} GFLOP/s; "
          f"transformers sustains {torch_rate:.0f} GFLOP/s, so a matmul-bound sidjax can reach "
          f"at most {xla_peak / torch_rate:.2f}x")
    variants = [
        ("sidjax xla attention, 1 device", config, jax.devices()[:1]),
        ("sidjax dot_product_attention, 1 device", config.replace(attention_impl="dpa"),
         jax.devices()[:1]),
        ("sidjax dpa, layers unrolled, 1 device",
         config.replace(attention_impl="dpa", scan_unroll=config.num_layers), jax.devices()[:1]),
        ("sidjax xla attention, 8 devices data-parallel", config, jax.devices()[:8]),
    ]
    for name, cfg, devices in variants:
        t = sidjax_step_time(cfg, tokens, args.iters, devices)
        print(f"{name:46s}: {n_tokens / t:9.0f} tokens/s  ratio vs transformers "
              f"{torch_time / t:.2f}x")


if __name__ == "__main__":
    main()
