"""The sampler against full forward passes: greedy, log-probs, top-k/top-p, seeds, stops."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from sidjax.data.padding import left_pad
from sidjax.decode.sampler import compaction_sizes, first_argmax, row_gumbel, sample
from sidjax.model.config import get_preset
from sidjax.model.model import init_params
from sidjax.model.transformer import Transformer
from sidjax.train.mesh import make_mesh

CONFIG = get_preset("tiny", vocab_size=64, num_layers=2)
PARAMS = jax.tree.map(lambda x: x * 4 if x.ndim > 1 else x,
                      init_params(CONFIG, jax.random.PRNGKey(0)))
PROMPTS = [[5, 9, 13, 2, 44], [7, 7, 1], [60, 3, 8, 21, 33, 12, 9, 50, 1]]


@jax.jit
def _log_probs(tokens, valid, temperature):
    logits, _ = Transformer(CONFIG).apply({"params": PARAMS}, tokens, valid)
    return jax.nn.log_softmax(logits / temperature)


def full_forward_logps(prompt, generated, temperature=1.0):
    """Log-prob of each generated token from one forward pass over prompt + generated."""
    seq = np.asarray(list(prompt) + list(generated), np.int32)[None]
    lp = np.asarray(_log_probs(seq, np.ones_like(seq, bool), temperature))[0]
    n = len(prompt)
    return np.array([lp[n - 1 + i, tok] for i, tok in enumerate(generated)])


class SamplerTest(absltest.TestCase):

    def test_first_argmax_equals_jax_argmax(self):
        """Ties (first index wins) and -inf entries (top-k/top-p)."""
        rng = np.random.default_rng(0)
        logits = np.round(rng.normal(size=(64, 50)) * 2) / 2  # Many ties.
        logits[:, ::3] = -np.inf
        logits[0] = 1.0  # All tied.
        np.testing.assert_array_equal(first_argmax(jnp.asarray(logits)),
                                      jnp.argmax(jnp.asarray(logits), -1))

    def test_row_gumbel_draws_per_row_and_samples_the_softmax(self):
        key = jax.random.PRNGKey(5)
        full = np.asarray(row_gumbel(key, jnp.arange(6), 50))  # [6, 50]
        some = np.asarray(row_gumbel(key, jnp.asarray([4, 1]), 50))
        np.testing.assert_array_equal(some, full[[4, 1]])  # A row's noise is its own.
        self.assertFalse(np.allclose(full[0], full[1]))
        # Gumbel-max over 20,000 rows of one distribution draws its softmax.
        logits = np.log(np.asarray([0.5, 0.3, 0.15, 0.05], np.float32))
        noise = row_gumbel(key, jnp.arange(20000), 4)
        draws = np.asarray(first_argmax(jnp.asarray(logits)[None] + noise))
        np.testing.assert_allclose(np.bincount(draws, minlength=4) / 20000,
                                   [0.5, 0.3, 0.15, 0.05], atol=0.012)  # ~3.5 std

    def test_compaction_sizes(self):
        self.assertEqual(compaction_sizes(64), (64, 32, 16, 8))
        self.assertEqual(compaction_sizes(64, ways=8), (64, 32, 16, 8))
        self.assertEqual(compaction_sizes(64, ways=16), (64, 32, 16))
        self.assertEqual(compaction_sizes(24), (24, 12))
        self.assertEqual(compaction_sizes(48, ways=16), (48,))  # 24 rows do not split in 16.
        self.assertEqual(compaction_sizes(7), (7,))

    def test_compacted_loop_draws_what_the_plain_loop_draws(self):
        """Rows stop at different steps (4 stop tokens of 64), so the loop runs at 32, 16
        and 8 rows: the same tokens, and log-probs equal up to float rounding (matmuls of
        another row count), sampled and greedy, with and without a mesh."""
        prompts = [PROMPTS[i % 3] + [i] for i in range(32)]
        mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
        for temperature, m in [(1.0, None), (0.0, None), (1.0, mesh)]:
            kwargs = dict(max_new_tokens=40, temperature=temperature, stop_tokens=[3, 17, 29, 41],
                          pad_id=63, mesh=m)
            plain = sample(CONFIG, PARAMS, prompts, jax.random.PRNGKey(2), compact=False,
                           **kwargs)
            compact = sample(CONFIG, PARAMS, prompts, jax.random.PRNGKey(2), compact=True,
                             **kwargs)
            if temperature:  # The case compacts to 8 rows while some still decode.
                self.assertGreaterEqual(np.sum(plain.lengths < 30), 24)
                self.assertGreaterEqual(np.sum(plain.lengths > 30), 2)
            np.testing.assert_array_equal(compact.tokens, plain.tokens)
            np.testing.assert_array_equal(compact.lengths, plain.lengths)
            np.testing.assert_allclose(compact.logprobs, plain.logprobs, atol=1e-5)

    def test_split_and_stacked_decode_loops_agree(self):
        """CPU runs the loop on split layers; accelerators on the stacked ones."""
        from sidjax.decode.sampler import _sample
        tokens, valid = left_pad(PROMPTS, 0, 16)
        kwargs = dict(config=CONFIG, max_new_tokens=6, temperature=1.0, top_k=0, top_p=1.0,
                      stop_tokens=(), pad_id=0, compact_ways=0)
        split = _sample(PARAMS, tokens, valid, jax.random.PRNGKey(3), split=True, **kwargs)
        stacked = _sample(PARAMS, tokens, valid, jax.random.PRNGKey(3), split=False, **kwargs)
        np.testing.assert_array_equal(split[0], stacked[0])
        np.testing.assert_allclose(split[1], stacked[1], atol=1e-5)

    def test_greedy_equals_stepwise_argmax_of_full_passes(self):
        result = sample(CONFIG, PARAMS, PROMPTS, jax.random.PRNGKey(0), 8, temperature=0.0)
        for prompt, tokens in zip(PROMPTS, result.tokens):
            seq = list(prompt)
            for tok in tokens:
                lp = np.asarray(_log_probs(np.asarray([seq], np.int32),
                                           np.ones((1, len(seq)), bool), 1.0))[0, -1]
                self.assertEqual(int(tok), int(lp.argmax()))
                seq.append(int(tok))

    def test_logprobs_equal_a_forward_pass(self):
        for temperature in (1.0, 0.7):
            result = sample(CONFIG, PARAMS, PROMPTS, jax.random.PRNGKey(3), 10,
                            temperature=temperature)
            for prompt, tokens, logps in zip(PROMPTS, result.tokens, result.logprobs):
                np.testing.assert_allclose(logps, full_forward_logps(prompt, tokens, temperature),
                                           atol=1e-4)

    def test_temperature_zero_top_k_one_and_tiny_top_p_agree(self):
        greedy = sample(CONFIG, PARAMS, PROMPTS, jax.random.PRNGKey(0), 8, temperature=0.0)
        top1 = sample(CONFIG, PARAMS, PROMPTS, jax.random.PRNGKey(5), 8, top_k=1)
        nucleus = sample(CONFIG, PARAMS, PROMPTS, jax.random.PRNGKey(6), 8, top_p=1e-6)
        np.testing.assert_array_equal(greedy.tokens, top1.tokens)
        np.testing.assert_array_equal(greedy.tokens, nucleus.tokens)

    def test_top_k_restricts_support(self):
        result = sample(CONFIG, PARAMS, [PROMPTS[0]] * 64, jax.random.PRNGKey(1), 1, top_k=3)
        seq = np.asarray([PROMPTS[0]], np.int32)
        lp = np.asarray(_log_probs(seq, np.ones_like(seq, bool), 1.0))[0, -1]
        drawn = set(result.tokens[:, 0].tolist())
        self.assertTrue(drawn <= set(np.argsort(-lp)[:3].tolist()))
        self.assertGreater(len(drawn), 1)  # It does sample, not argmax.

    def test_seeds_reproduce_and_differ(self):
        a = sample(CONFIG, PARAMS, PROMPTS, jax.random.PRNGKey(11), 12)
        b = sample(CONFIG, PARAMS, PROMPTS, jax.random.PRNGKey(11), 12)
        c = sample(CONFIG, PARAMS, PROMPTS, jax.random.PRNGKey(12), 12)
        np.testing.assert_array_equal(a.tokens, b.tokens)
        self.assertFalse(np.array_equal(a.tokens, c.tokens))

    def test_stop_tokens_end_rows_and_pad_the_rest(self):
        greedy = sample(CONFIG, PARAMS, PROMPTS, jax.random.PRNGKey(0), 8, temperature=0.0)
        stop = int(greedy.tokens[0, 2])  # Row 0 emits it at step 2 (or earlier).
        result = sample(CONFIG, PARAMS, PROMPTS, jax.random.PRNGKey(0), 8, temperature=0.0,
                        stop_tokens=[stop], pad_id=63)
        n = result.lengths[0]
        self.assertLessEqual(n, 3)
        self.assertEqual(int(result.tokens[0, n - 1]), stop)
        self.assertTrue(np.all(result.tokens[0, n:] == 63))
        self.assertTrue(np.all(result.logprobs[0, n:] == 0))
        np.testing.assert_array_equal(result.tokens[0, :n], greedy.tokens[0, :n])

    def test_left_padding_and_sharded_batch_match(self):
        mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
        prompts = PROMPTS + [[4, 4, 4]]
        plain = sample(CONFIG, PARAMS, prompts, jax.random.PRNGKey(0), 6, temperature=0.0)
        sharded = sample(CONFIG, PARAMS, prompts, jax.random.PRNGKey(0), 6, temperature=0.0,
                         mesh=mesh)
        np.testing.assert_array_equal(plain.tokens, sharded.tokens)
        alone = sample(CONFIG, PARAMS, [PROMPTS[1]], jax.random.PRNGKey(0), 6, temperature=0.0)
        np.testing.assert_array_equal(alone.tokens[0], plain.tokens[1])
        tokens, valid = left_pad([[1, 2], [3]], pad_id=0)
        self.assertEqual(tokens.shape, (2, 16))
        self.assertEqual(valid.sum(1).tolist(), [2, 1])


if __name__ == "__main__":
    absltest.main()
