"""A short accelerator check with random weights of a real shape (no download): SFT step
tokens/s and MFU, sampler decode tokens/s at two batch sizes, SID beam search examples/s.

    bench/gpu_check.sh                 # Qwen3-1.7B shape, bf16 compute (an H100: ~3 minutes)
    bench/gpu_check.sh --small         # CPU-sized shapes (the test runs this)

Prints one JSON line on stdout (everything else goes to stderr). It uses the library's own
pieces: the SFT loss, the trainer's jitted step (AdamW, fsdp over all local devices), the
KV-cache sampler and `sid_beam_search`. MFU counts model FLOPs (6 x params per token plus
causal attention), not rematerialised ones, against the device's dense bf16 peak; it is null
where the peak is unknown (CPUs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np
from beam_search import catalog_sids  # bench/ is on sys.path when this runs.
from timing import timed

from sidjax.decode.beam import sid_beam_search
from sidjax.decode.sampler import sample
from sidjax.decode.sid_tables import build_sid_tables
from sidjax.model.config import get_preset
from sidjax.model.model import init_params
from sidjax.model.sharding import PARTITION_RULES
from sidjax.sft.loss import lm_loss
from sidjax.train import mesh as mesh_lib
from sidjax.train import optim as optim_lib
from sidjax.train.defaults import base_config
from sidjax.train.state import make_create_fn, state_shardings
from sidjax.train.trainer import make_train_step

# Dense bf16 peak FLOP/s by `device_kind` substring (vendor datasheets).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12,
             "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v4": 275e12,
             "TPU v6": 918e12}
SMALL = dict(model="tiny", batch=4, seq=64, steps=3, decode_batches="8,16", prompt=16,
             new_tokens=8, beam_batch=4, items=300, beam=10, dtype="float32", remat="none")
FULL = dict(model="qwen3-1.7b", batch=8, seq=2048, steps=5, decode_batches="64,256",
            prompt=128, new_tokens=256, beam_batch=32, items=3700, beam=10, dtype="bfloat16",
            remat="full")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peak_flops(kind: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k.lower() in kind.lower()), None)


def flops_per_token(config, seq: int) -> float:
    attention = 6 * config.num_layers * seq * config.num_heads * config.head_dim  # Causal.
    return 6 * config.num_params() + attention


def sft_check(config, args, mesh) -> tuple[dict, object]:
    cfg = base_config()
    cfg.optim.lr = 1e-5
    tx = optim_lib.make_optimizer(cfg.optim, args.steps + 1)
    schedule = optim_lib.make_schedule(cfg.optim, args.steps + 1)
    create = make_create_fn(lambda rng: init_params(config, rng), tx)
    with jax.set_mesh(mesh):
        abstract = jax.eval_shape(create, jax.random.PRNGKey(0))
        shardings = state_shardings(abstract, tx, PARTITION_RULES, mesh)
    state = jax.jit(create, out_shardings=shardings)(jax.random.PRNGKey(0))
    loss = lambda p, b, r: lm_loss(config, (), p, b, r)  # noqa: E731
    step = jax.jit(make_train_step(loss, tx, schedule, 1), out_shardings=(shardings, None),
                   donate_argnums=0)
    rng = np.random.default_rng(0)
    batch = mesh_lib.make_global_batch({
        "tokens": rng.integers(0, config.vocab_size, (args.batch, args.seq)).astype(np.int32),
        "valid": np.ones((args.batch, args.seq), bool),
        "loss_mask": np.ones((args.batch, args.seq), bool),
        "task": np.zeros(args.batch, np.int32)}, mesh)
    with jax.set_mesh(mesh):
        state, metrics = step(state, batch)  # Compile.
        jax.block_until_ready(metrics)
        start = time.perf_counter()
        for _ in range(args.steps):
            state, metrics = step(state, batch)
        loss_value = float(metrics["loss"])
        seconds = (time.perf_counter() - start) / args.steps
    tokens_per_s = args.batch * args.seq / seconds
    peak = peak_flops(jax.devices()[0].device_kind)
    mfu = (flops_per_token(config, args.seq) * tokens_per_s / (peak * len(mesh.devices.flat))
           if peak else None)
    log(f"SFT step {seconds:.3f}s: {tokens_per_s:,.0f} tokens/s, MFU {mfu}, loss {loss_value:.3f}")
    return {"sft_step_s": seconds, "sft_tokens_per_s": tokens_per_s, "sft_mfu": mfu,
            "sft_loss": loss_value}, state.params


def decode_check(config, params, args, mesh) -> dict:
    rng = np.random.default_rng(1)
    out = {}
    for batch in [int(b) for b in args.decode_batches.split(",")]:
        prompts = rng.integers(0, config.vocab_size - 768, (batch, args.prompt)).tolist()
        key = jax.random.PRNGKey(batch)
        seconds = timed(lambda: sample(config, params, prompts, key, args.new_tokens,
                                       temperature=1.0, mesh=mesh).tokens, repeats=1)
        out[f"decode_tokens_per_s_b{batch}"] = batch * args.new_tokens / seconds
        log(f"sampler batch {batch}: {args.new_tokens} tokens after a {args.prompt}-token "
            f"prompt in {seconds:.2f}s ({out[f'decode_tokens_per_s_b{batch}']:,.0f} tokens/s)")
    return out


def beam_check(config, params, args) -> dict:
    rng = np.random.default_rng(2)
    base = config.vocab_size - 768  # The last 768 ids play the a/b/c SID tokens.
    tables = build_sid_tables(catalog_sids(args.items, base, rng),
                              [10, 2 if config.eos_token_id is None else config.eos_token_id])
    prompts = rng.integers(0, base, (args.beam_batch, args.prompt)).astype(np.int32)
    seconds = timed(lambda: jax.block_until_ready(
        sid_beam_search(config, params, prompts, tables, args.beam).scores))
    rate = args.beam_batch / seconds
    log(f"beam {args.beam} over {args.items} SIDs: {rate:,.1f} examples/s")
    return {"beam_examples_per_s": rate}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU-sized shapes.")
    for name, value in FULL.items():
        parser.add_argument(f"--{name}", type=type(value), default=None)
    args = parser.parse_args(argv)
    defaults = SMALL if args.small else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    start = time.time()
    config = get_preset(args.model, param_dtype="float32", dtype=args.dtype, remat=args.remat)
    mesh = mesh_lib.make_mesh({"fsdp": -1})
    device = jax.devices()[0]
    log(f"{args.model}: {config.num_params() / 1e6:.1f}M params on {len(jax.devices())} x "
        f"{device.device_kind} ({device.platform}), params float32, compute {args.dtype}")
    result = {"device": device.device_kind, "platform": device.platform,
              "devices": len(jax.devices()), "model": args.model,
              "params": config.num_params(), "compute_dtype": args.dtype,
              "sft_batch": [args.batch, args.seq]}
    sft, params = sft_check(config, args, mesh)
    result.update(sft)
    result.update(decode_check(config, params, args, mesh))
    result.update(beam_check(config, params, args))
    result["seconds"] = time.time() - start
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                      for k, v in result.items()}), flush=True)
    return result


if __name__ == "__main__":
    main()
