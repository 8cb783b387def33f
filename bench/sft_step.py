"""SFT step time by attention implementation and layer-scan unroll, on the CPU recipe's model.

    python bench/sft_step.py [--batch 64] [--seq 128] [--rounds 5] [--iters 5]

The model is the from-scratch CPU recipe's (`_cpu_recipe` in sidjax/pipeline/defaults.py:
hidden 128, MLP 384, 2 layers; vocabulary 1,800 ~ the trained tokenizer plus 768 SID tokens).
Each variant jits the SFT loss's value and gradient (`sidjax.sft.loss.lm_loss`, dropout on as
in training) on the same random batch; variants are timed round-robin and the medians
printed with their ratio to the default (XLA attention, rolled scan), so drift in a shared
machine's speed hits them alike. It also prints how far each variant's gradient is from the
default's: a different unroll rounds differently, which is why switching the default moves
every quoted stage-1/2 number.
"""

import argparse
import dataclasses

from sidjax.train import host_memory

host_memory.keep_freed_memory_on_cpu()  # As sidjax.main does, before jax is imported.

import jax  # noqa: E402
import numpy as np  # noqa: E402
from timing import interleaved_medians, warmed  # noqa: E402  (bench/ is on sys.path)

from sidjax.model.config import get_preset  # noqa: E402
from sidjax.model.model import init_params  # noqa: E402
from sidjax.sft.loss import lm_loss  # noqa: E402

VOCAB = 1800


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5, help="steps per timing")
    args = parser.parse_args()
    base = dataclasses.replace(get_preset("tiny", vocab_size=VOCAB), hidden_size=128,
                               intermediate_size=384, num_layers=2, dropout=0.1)
    tokens = np.random.default_rng(0).integers(2, VOCAB, (args.batch, args.seq), np.int32)
    ones = np.ones(tokens.shape, bool)
    batch = {"tokens": tokens, "valid": ones, "loss_mask": ones,
             "task": np.zeros(args.batch, np.int32)}
    params = init_params(base, jax.random.PRNGKey(0))
    rng = jax.random.PRNGKey(1)
    steps, grads = {}, {}
    for impl in ("xla", "dpa"):
        for unroll in (1, base.num_layers):
            config = dataclasses.replace(base, attention_impl=impl, scan_unroll=unroll)
            fn = jax.jit(jax.value_and_grad(
                lambda p, b, r, config=config: lm_loss(config, (), p, b, r), has_aux=True))
            name = f"{impl}, unroll {unroll}"
            grads[name] = fn(params, batch, rng)[1]
            steps[name] = warmed(lambda fn=fn: jax.block_until_ready(fn(params, batch, rng)))
    medians = interleaved_medians(steps, rounds=args.rounds, iters=args.iters)
    default = "xla, unroll 1"
    print(f"SFT step (value + gradient), batch {args.batch} x {args.seq}, "
          f"{jax.default_backend()}; medians of {args.rounds} rounds x {args.iters} steps")
    print(f"{'variant':<16} {'s/step':>8} {'vs default':>11} {'max |grad diff|':>16}")
    for name, seconds in medians.items():
        diff = max(float(np.abs(a - b).max()) for a, b in
                   zip(jax.tree.leaves(grads[name]), jax.tree.leaves(grads[default])))
        print(f"{name:<16} {seconds:8.3f} {medians[default] / seconds:10.2f}x {diff:16.2e}")


if __name__ == "__main__":
    main()
