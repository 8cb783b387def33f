"""Constrained SID beam search and sampling: sidjax vs Hugging Face `generate`, same run.

    python bench/beam_search.py [--items 3700] [--batch 32] [--prompt 64] [--beams 10,50]
                                [--rounds 3]

A ~20M-param Qwen3 (the `small` preset, random weights, float32) with a SID vocabulary
over a catalog of `--items` random 3-level SIDs (256 codes per level). The reference is
what the PyTorch peers run: `generate(num_beams=K, num_return_sequences=K,
length_penalty=0, prefix_allowed_tokens_fn=...)` with a Python trie walked per beam per
step, a -> b -> c -> "\\n" -> EOS. Sampling: `generate(do_sample=True)` with the KV cache vs
the sidjax sampler, same prompts and lengths. Each pair is timed round-robin (`--rounds`
calls each, after a warm-up) and the medians compared, so drift in the machine's speed
hits both sides alike. Prints examples/s and tokens/s with ratios. Needs torch (the test
extra).
"""

import argparse

from sidjax.train import host_memory

# As sidjax.main does, before jax is imported; torch runs in this process too, under the
# same setting. SIDJAX_GLIBC_MALLOC=default measures glibc's defaults instead.
KEPT_FREED_MEMORY = host_memory.keep_freed_memory_on_cpu()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from timing import interleaved_medians, warmed  # noqa: E402  (bench/ is on sys.path)

from sidjax.decode.beam import sid_beam_search  # noqa: E402
from sidjax.decode.sampler import sample  # noqa: E402
from sidjax.decode.sid_tables import build_sid_tables  # noqa: E402
from sidjax.model.config import get_preset  # noqa: E402
from sidjax.model.model import init_params  # noqa: E402


def catalog_sids(items, base, rng):
    sids = set()
    while len(sids) < items:
        sids.add(tuple(int(x) for x in rng.integers(0, 256, 3)))
    sids = sorted(sids)
    return [[base + a, base + 256 + b, base + 512 + c] for a, b, c in sids]


def hf_model(config, params):
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    from sidjax.model.hf import save_hf_model
    from sidjax.model.model import Model
    import tempfile

    path = tempfile.mkdtemp()
    save_hf_model(Model(config, params), path)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    model.eval()
    return model, Qwen3Config


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=3700)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--beams", default="10,50")
    parser.add_argument("--sample_tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="round-robin timings per side")
    args = parser.parse_args()
    import torch

    rng = np.random.default_rng(0)
    base_vocab = 8192
    newline, eos = 10, 2
    config = get_preset("small", vocab_size=base_vocab + 768, eos_token_id=eos)
    params = init_params(config, jax.random.PRNGKey(0))
    sids = catalog_sids(args.items, base_vocab, rng)
    tables = build_sid_tables(sids, [newline, eos])
    prompts = rng.integers(100, base_vocab, (args.batch, args.prompt)).astype(np.int32)
    model, _ = hf_model(config, params)
    print(f"Qwen3 'small' {config.num_params() / 1e6:.1f}M params, {len(sids)} SIDs (3 levels), "
          f"batch {args.batch}, prompt {args.prompt} tokens, float32, torch "
          f"{torch.get_num_threads()} threads, glibc malloc "
          f"{'keeps freed memory' if KEPT_FREED_MEMORY else 'defaults'}")

    trie = {}
    for sid in sids:
        path = tuple(sid) + (newline,)
        for i in range(len(path)):
            trie.setdefault(path[:i], set()).add(path[i])
        trie[path] = {eos}

    def allowed(batch_id, input_ids):
        generated = tuple(input_ids[args.prompt:].tolist())
        return list(trie.get(generated, {eos}))

    ids = torch.tensor(prompts, dtype=torch.long)
    for beam in [int(b) for b in args.beams.split(",")]:
        def ours():
            return sid_beam_search(config, params, prompts, tables, beam)

        def hf():
            with torch.no_grad():
                return model.generate(ids, attention_mask=torch.ones_like(ids), num_beams=beam,
                                      num_return_sequences=beam, max_new_tokens=5,
                                      length_penalty=0.0, early_stopping=True, do_sample=False,
                                      prefix_allowed_tokens_fn=allowed, pad_token_id=0,
                                      eos_token_id=eos)

        median = interleaved_medians({"sidjax": warmed(ours), "hf": warmed(hf, 1)}, args.rounds)
        t_jax, t_hf = median["sidjax"], median["hf"]
        print(f"beam {beam:3d}: sidjax {args.batch / t_jax:8.1f} examples/s | transformers "
              f"generate + trie {args.batch / t_hf:8.1f} examples/s | ratio {t_hf / t_jax:6.1f}x")

    n = args.sample_tokens
    key = jax.random.PRNGKey(0)
    prompt_list = prompts.tolist()

    def ours_sample():
        return sample(config, params, prompt_list, key, n, temperature=1.0)

    def hf_sample():
        with torch.no_grad():
            return model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                  max_new_tokens=n, min_new_tokens=n, temperature=1.0, top_k=0,
                                  top_p=1.0, use_cache=True, pad_token_id=0, eos_token_id=None)

    median = interleaved_medians({"sidjax": warmed(ours_sample), "hf": warmed(hf_sample, 1)},
                                 args.rounds)
    t_jax, t_hf = median["sidjax"], median["hf"]
    tokens = args.batch * n
    print(f"sampling {n} tokens x {args.batch}: sidjax {tokens / t_jax:8.0f} tokens/s | "
          f"transformers generate(do_sample) {tokens / t_hf:8.0f} tokens/s | ratio "
          f"{t_hf / t_jax:5.2f}x")


if __name__ == "__main__":
    main()
