"""Model options: rematerialisation, attention implementations, bfloat16 compute, dropout."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from sidjax.model.config import get_preset
from sidjax.model.logprobs import token_logprobs
from sidjax.model.model import init_params
from sidjax.model.transformer import Transformer


def loss_and_grads(config, params, tokens):
    def loss(p):
        logits, _ = Transformer(config).apply({"params": p}, tokens)
        logp = jax.nn.log_softmax(logits[:, :-1])
        return -jnp.mean(jnp.take_along_axis(logp, tokens[:, 1:, None], -1))

    return jax.jit(jax.value_and_grad(loss))(params)


class OptionsTest(parameterized.TestCase):

    @parameterized.parameters(("full", "xla", 1), ("dots", "xla", 1), ("none", "dpa", 1),
                              ("none", "xla", 3), ("none", "dpa", 2))
    def test_same_loss_and_grads_as_default(self, remat, impl, unroll):
        base = get_preset("tiny", vocab_size=128, num_layers=3)
        params = init_params(base, jax.random.PRNGKey(0))
        tokens = jnp.asarray(np.random.default_rng(0).integers(0, 128, (2, 16)), jnp.int32)
        ref_loss, ref_grads = loss_and_grads(base, params, tokens)
        loss, grads = loss_and_grads(
            base.replace(remat=remat, attention_impl=impl, scan_unroll=unroll), params, tokens)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
                     grads, ref_grads)

    def test_bfloat16_params_and_compute_give_float32_logits_close_to_float32(self):
        config = get_preset("tiny", vocab_size=128)
        params = init_params(config, jax.random.PRNGKey(0))
        tokens = jnp.asarray(np.random.default_rng(0).integers(0, 128, (2, 16)), jnp.int32)
        ref, _ = Transformer(config).apply({"params": params}, tokens)
        bf16 = config.replace(param_dtype="bfloat16", dtype="bfloat16")
        params16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
        self.assertEqual(init_params(bf16, jax.random.PRNGKey(0))["embed"]["embedding"].dtype,
                         jnp.bfloat16)
        logits, _ = Transformer(bf16).apply({"params": params16}, tokens)
        self.assertEqual(logits.dtype, jnp.float32)
        np.testing.assert_allclose(logits, ref, atol=0.05 * float(jnp.abs(ref).max()))

    def test_dropout_only_with_a_dropout_rng(self):
        config = get_preset("tiny", vocab_size=128, dropout=0.3)
        params = init_params(config, jax.random.PRNGKey(0))
        tokens = jnp.asarray(np.random.default_rng(0).integers(0, 128, (2, 16)), jnp.int32)
        valid = jnp.ones(tokens.shape, bool)
        plain = token_logprobs(config, params, tokens, valid)
        off = token_logprobs(config.replace(dropout=0.0), params, tokens, valid)
        np.testing.assert_array_equal(plain, off)  # Scoring, sampling and GRPO: no dropout.
        a, b = (token_logprobs(config, params, tokens, valid, dropout_rng=jax.random.PRNGKey(k))
                for k in (1, 2))
        self.assertFalse(np.allclose(a, plain))
        self.assertFalse(np.allclose(a, b))
        np.testing.assert_array_equal(a, token_logprobs(config, params, tokens, valid,
                                                        dropout_rng=jax.random.PRNGKey(1)))
        with self.assertRaisesRegex(ValueError, "dropout=1.0"):
            get_preset("tiny", dropout=1.0)

    @parameterized.parameters(1, 5, 15)
    def test_logprobs_from_a_first_column_equal_the_full_pass(self, first):
        config = get_preset("tiny", vocab_size=128, num_layers=2)
        params = init_params(config, jax.random.PRNGKey(0))
        tokens = jnp.asarray(np.random.default_rng(1).integers(0, 128, (3, 16)), jnp.int32)
        valid = jnp.ones(tokens.shape, bool).at[0, :4].set(False)  # Left padding too.
        full = token_logprobs(config, params, tokens, valid, temperature=0.7)
        part = token_logprobs(config, params, tokens, valid, temperature=0.7, first=first)
        self.assertEqual(part.shape, full.shape)
        np.testing.assert_allclose(part[:, first:], full[:, first:], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(part[:, :first], 0.0)
        mask = jnp.arange(16) >= first  # A loss on the columns from `first`: same gradient.
        grads = [jax.grad(lambda p, f=f: jnp.sum(jnp.where(mask, token_logprobs(
            config, p, tokens, valid, first=f), 0.0)))(params) for f in (0, first)]
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                     *grads)

    def test_scan_unroll_auto_is_all_layers_on_cpu(self):
        from sidjax.model.setup import resolve_scan_unroll

        self.assertEqual(jax.default_backend(), "cpu")
        self.assertEqual(resolve_scan_unroll(0, 4), 4)  # Auto: all layers on a CPU.
        self.assertEqual(resolve_scan_unroll(2, 4), 2)
        self.assertEqual(resolve_scan_unroll(8, 4), 4)
        with self.assertRaisesRegex(ValueError, "scan_unroll=-1"):
            resolve_scan_unroll(-1, 4)

    def test_bad_options_fail_naming_the_field(self):
        with self.assertRaisesRegex(ValueError, "remat='some'"):
            get_preset("tiny", remat="some")
        with self.assertRaisesRegex(ValueError, "num_kv_heads=3"):
            get_preset("tiny", num_kv_heads=3)
        with self.assertRaisesRegex(ValueError, "Unknown model preset 'qwen9'"):
            get_preset("qwen9")


if __name__ == "__main__":
    absltest.main()
