"""The decoder against Hugging Face transformers: logits, hidden states, export, sharding."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl.testing import absltest, parameterized
from jax.sharding import PartitionSpec as P
from transformers import AutoModelForCausalLM

from sidjax.model import hf as hf_lib
from sidjax.model.config import ModelConfig, get_preset
from sidjax.model.model import Model, init_sharded_params
from sidjax.model.safetensors_io import SafetensorsFile, save_file
from sidjax.model.transformer import Transformer, init_cache, split_layers
from sidjax.train.mesh import make_mesh
from tests.hf_fixtures import make_hf_model

CASES = [(f, tie) for f in ("qwen3", "qwen2", "llama") for tie in (False, True)]


def left_padded_batch(rng, vocab, lengths, total):
    tokens = np.zeros((len(lengths), total), np.int64)
    valid = np.zeros((len(lengths), total), np.int64)
    for row, n in enumerate(lengths):
        tokens[row, total - n:] = rng.integers(0, vocab, n)
        valid[row, total - n:] = 1
    return tokens, valid


class ParityTest(parameterized.TestCase):

    @parameterized.parameters(*CASES)
    def test_logits_and_hidden_states_match_transformers(self, family, tie):
        path = self.create_tempdir().full_path
        hf = make_hf_model(family, tie, path)
        model = hf_lib.load_hf_model(path)
        self.assertEqual(model.config.family, family)
        self.assertEqual(model.config.tie_word_embeddings, tie)
        rng = np.random.default_rng(1)

        # No padding: logits and every layer's hidden state.
        tokens = rng.integers(0, 96, (2, 40))
        with torch.no_grad():
            ref = hf(torch.tensor(tokens), output_hidden_states=True)
        logits, _, (per_layer, final) = Transformer(model.config).apply(
            {"params": model.params}, jnp.asarray(tokens, jnp.int32), return_hidden=True)
        self.assertGreater(np.abs(ref.logits.numpy()).mean(), 0.3)  # Logits are not ~0.
        np.testing.assert_allclose(np.asarray(logits), ref.logits.numpy(), atol=1e-4, rtol=0)
        layers = model.config.num_layers
        for i in range(1, layers):  # HF: [embeddings, layer 1, ..., layer L-1, norm(layer L)].
            np.testing.assert_allclose(np.asarray(per_layer[i - 1]),
                                       ref.hidden_states[i].numpy(), atol=1e-4, err_msg=f"{i}")
        np.testing.assert_allclose(np.asarray(final), ref.hidden_states[layers].numpy(), atol=1e-4)

        # Left-padded batch: real positions match HF given the same mask and positions.
        tokens, valid = left_padded_batch(rng, 96, [12, 5, 9], 12)
        positions = np.maximum(np.cumsum(valid, -1) - 1, 0)
        with torch.no_grad():
            ref = hf(torch.tensor(tokens), attention_mask=torch.tensor(valid),
                     position_ids=torch.tensor(positions)).logits.numpy()
        ours = np.asarray(model(tokens, valid))
        self.assertTrue(np.isfinite(ours).all())
        mask = valid.astype(bool)
        np.testing.assert_allclose(ours[mask], ref[mask], atol=1e-4, rtol=0)
        # A row's logits do not depend on the padding in front of it.
        alone = np.asarray(model(tokens[1:2, -5:]))
        np.testing.assert_allclose(ours[1, -5:], alone[0], atol=1e-5)


def tiny_decoder(impl: str = "xla"):
    config = get_preset("tiny", vocab_size=64, attention_impl=impl, num_layers=3)
    module = Transformer(config)
    params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))["params"]
    return config, module, params


class KVCacheTest(parameterized.TestCase):

    def prefill(self, config, module, params, tokens, valid, slots=16, **kwargs):
        return module.apply({"params": params}, tokens, valid,
                            cache=init_cache(config, len(tokens), slots), **kwargs)

    @parameterized.parameters("xla", "dpa")
    def test_prefill_then_single_steps_equal_full_forward(self, impl):
        config, module, params = tiny_decoder(impl)
        rng = np.random.default_rng(0)
        tokens, valid = left_padded_batch(rng, 64, [6, 3], 6)
        steps = rng.integers(0, 64, (2, 5))
        full_tokens = np.concatenate([tokens, steps], 1)
        full_valid = np.concatenate([valid, np.ones_like(steps)], 1)
        full, _ = module.apply({"params": params}, full_tokens, full_valid)

        prefill, cache = self.prefill(config, module, params, tokens, valid)
        got = [prefill]
        for t in range(steps.shape[1]):
            logits, cache = module.apply({"params": params}, steps[:, t:t + 1],
                                         np.ones((2, 1)), cache=cache)
            got.append(logits)
        got = np.concatenate([np.asarray(g) for g in got], 1)
        mask = full_valid.astype(bool)
        np.testing.assert_allclose(got[mask], np.asarray(full)[mask], atol=1e-5)
        self.assertEqual(int(cache.index), 11)

    def test_split_layers_and_cache_steps_equal_scanned_ones(self):
        """The sampler's CPU loop: per-layer weights and a split cache, same logits."""
        config, module, params = tiny_decoder()
        rng = np.random.default_rng(0)
        tokens, valid = left_padded_batch(rng, 64, [6, 3], 6)
        steps = rng.integers(0, 64, (2, 4))
        _, stacked = self.prefill(config, module, params, tokens, valid)
        split = stacked.split()
        layers = split_layers(params)
        for t in range(steps.shape[1]):
            want, stacked = module.apply({"params": params}, steps[:, t:t + 1], np.ones((2, 1)),
                                         cache=stacked)
            got, split = module.apply({"params": params}, steps[:, t:t + 1], np.ones((2, 1)),
                                      cache=split, layer_params=layers)
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
        self.assertLen(split.k, 3)
        with self.assertRaisesRegex(ValueError, "split KVCache.*layer_params"):
            module.apply({"params": params}, steps[:, :1], np.ones((2, 1)), cache=split)

    def test_last_only_prefill_gives_the_last_logits_and_the_same_cache(self):
        config, module, params = tiny_decoder()
        tokens, valid = left_padded_batch(np.random.default_rng(0), 64, [6, 3], 6)
        full, full_cache = self.prefill(config, module, params, tokens, valid)
        last, last_cache = self.prefill(config, module, params, tokens, valid, last_only=True)
        self.assertEqual(last.shape, (2, 1, 64))
        np.testing.assert_allclose(np.asarray(last[:, 0]), np.asarray(full[:, -1]), atol=1e-6)
        for got, want in zip(jax.tree.leaves(last_cache), jax.tree.leaves(full_cache)):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    @parameterized.parameters("xla", "dpa")
    def test_shared_prefix_cache_equals_full_forward(self, impl):
        """Rows sharing a prompt through `prefix=` see it as if it preceded their tokens."""
        config, module, params = tiny_decoder(impl)
        rng = np.random.default_rng(1)
        prompts, valid = left_padded_batch(rng, 64, [6, 2], 6)
        prefix = self.prefill(config, module, params, prompts, valid, slots=6, last_only=True)[1]
        groups, steps = 3, rng.integers(0, 64, (6, 4))  # Rows 0-2 follow prompt 0, 3-5 prompt 1.
        cache = init_cache(config, 6, 4)
        got = []
        for t in (slice(0, 1), slice(1, 3), slice(3, 4)):  # One token, then two, then one.
            logits, cache = module.apply({"params": params}, steps[:, t],
                                         np.ones_like(steps[:, t]), cache=cache, prefix=prefix)
            got.append(np.asarray(logits))
        got = np.concatenate(got, 1)
        full_tokens = np.concatenate([np.repeat(prompts, groups, 0), steps], 1)
        full_valid = np.concatenate([np.repeat(valid, groups, 0), np.ones_like(steps)], 1)
        full = np.asarray(module.apply({"params": params}, full_tokens, full_valid)[0])
        np.testing.assert_allclose(got, full[:, 6:], atol=1e-5)
        with self.assertRaisesRegex(ValueError, "prefix cache has 2 rows.*5 rows"):
            module.apply({"params": params}, steps[:5, :1], np.ones((5, 1)),
                         cache=init_cache(config, 5, 4), prefix=prefix)


class ExportTest(parameterized.TestCase):

    @parameterized.parameters(*CASES)
    def test_sidjax_to_transformers_same_logits(self, family, tie):
        source = self.create_tempdir().full_path
        make_hf_model(family, tie, source, seed=3)
        config = hf_lib.read_hf_config(source)
        params = Transformer(config).init(jax.random.PRNGKey(7), jnp.zeros((1, 1), jnp.int32))
        # Random sidjax params at std ~ 1/sqrt(fan_in), so logits are O(1).
        params = jax.tree.map(lambda x: x * 8.0 if x.ndim > 1 else x, params["params"])
        model = Model(config, params)
        out = self.create_tempdir().full_path
        hf_lib.save_hf_model(model, out)
        hf = AutoModelForCausalLM.from_pretrained(out).eval()
        tokens = np.random.default_rng(2).integers(0, 96, (2, 17))
        with torch.no_grad():
            ref = hf(torch.tensor(tokens)).logits.numpy()
        self.assertGreater(np.abs(ref).mean(), 0.3)
        # Logits near 1 summed in float32 in another order (XLA vs torch threads): 1.1e-4 seen.
        np.testing.assert_allclose(np.asarray(model(tokens)), ref, atol=2e-4, rtol=0)

    @parameterized.parameters(*CASES)
    def test_transformers_to_sidjax_to_hf_reproduces_tensors(self, family, tie):
        source = self.create_tempdir().full_path
        make_hf_model(family, tie, source)
        out = self.create_tempdir().full_path
        hf_lib.save_hf_model(hf_lib.load_hf_model(source), out)
        original, written = SafetensorsFile(os.path.join(source, "model.safetensors")), \
            SafetensorsFile(os.path.join(out, "model.safetensors"))
        expected_keys = set(original.keys()) - ({"lm_head.weight"} if tie else set())
        self.assertEqual(set(written.keys()), expected_keys)
        for key in expected_keys:
            np.testing.assert_array_equal(written.get(key), original.get(key), err_msg=key)

    def test_sharded_export_with_index_loads_in_transformers(self):
        source = self.create_tempdir().full_path
        hf = make_hf_model("qwen3", False, source)
        out = self.create_tempdir().full_path
        hf_lib.save_hf_model(hf_lib.load_hf_model(source), out, max_shard_bytes=20_000)
        index = json.load(open(os.path.join(out, "model.safetensors.index.json")))
        self.assertGreater(len(set(index["weight_map"].values())), 2)
        reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
        again = hf_lib.load_hf_model(out)  # Our reader takes the index too.
        tokens = torch.tensor(np.arange(10)[None])
        with torch.no_grad():
            np.testing.assert_allclose(reloaded(tokens).logits.numpy(), hf(tokens).logits.numpy(),
                                       atol=1e-5)
        np.testing.assert_allclose(np.asarray(again(tokens.numpy())), hf(tokens).logits.detach()
                                   .numpy(), atol=1e-4)

    def test_bfloat16_round_trip(self):
        source = self.create_tempdir().full_path
        make_hf_model("qwen3", True, source)
        model = hf_lib.load_hf_model(source, dtype="bfloat16")
        self.assertEqual(model.params["layers"]["mlp"]["up"]["kernel"].dtype, jnp.bfloat16)
        self.assertEqual(model(np.arange(6)[None]).dtype, jnp.float32)
        out = self.create_tempdir().full_path
        hf_lib.save_hf_model(model, out)
        written = SafetensorsFile(os.path.join(out, "model.safetensors"))
        self.assertEqual(written.header["model.norm.weight"]["dtype"], "BF16")
        reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
        self.assertEqual(next(reloaded.parameters()).dtype, torch.bfloat16)


class ShardedTest(absltest.TestCase):

    def test_sharded_load_and_forward_equal_single_device(self):
        source = self.create_tempdir().full_path
        make_hf_model("qwen3", False, source)
        mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
        sharded = hf_lib.load_hf_model(source, mesh=mesh)
        single = hf_lib.load_hf_model(source)
        params = sharded.params
        self.assertEqual(params["layers"]["attn"]["q"]["kernel"].sharding.spec,
                         P(None, "fsdp", "tensor", None))
        self.assertEqual(params["layers"]["mlp"]["down"]["kernel"].sharding.spec,
                         P(None, "tensor", "fsdp"))
        self.assertEqual(params["lm_head"].sharding.spec, P("fsdp", "tensor"))
        # [L, D=32, F=48] over fsdp=2, tensor=2: each device holds [3, 16, 24].
        self.assertEqual({s.data.shape for s in
                          params["layers"]["mlp"]["gate"]["kernel"].addressable_shards},
                         {(3, 16, 24)})
        tokens = np.random.default_rng(0).integers(0, 96, (4, 24))
        np.testing.assert_allclose(np.asarray(sharded(tokens)), np.asarray(single(tokens)),
                                   atol=1e-5)

    def test_random_init_directly_sharded(self):
        mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
        config = get_preset("tiny", vocab_size=128)
        params = init_sharded_params(config, jax.random.PRNGKey(0), mesh)
        self.assertEqual(params["embed"]["embedding"].sharding.spec, P("tensor", "fsdp"))


class ErrorsTest(absltest.TestCase):

    def _checkpoint(self):
        path = self.create_tempdir().full_path
        make_hf_model("qwen3", True, path)
        return path, SafetensorsFile(os.path.join(path, "model.safetensors"))

    def test_unmapped_tensor_is_named(self):
        path, file = self._checkpoint()
        tensors = {k: np.array(file.get(k)) for k in file.keys()}
        tensors["model.layers.0.mlp.extra.weight"] = np.zeros((2, 2), np.float32)
        save_file(tensors, os.path.join(path, "model.safetensors"))
        with self.assertRaisesRegex(ValueError, "model.layers.0.mlp.extra.weight"):
            hf_lib.load_hf_model(path)

    def test_misshaped_tensor_is_named(self):
        path, file = self._checkpoint()
        tensors = {k: np.array(file.get(k)) for k in file.keys()}
        tensors["model.layers.1.mlp.up_proj.weight"] = np.zeros((48, 31), np.float32)
        save_file(tensors, os.path.join(path, "model.safetensors"))
        with self.assertRaisesRegex(ValueError, r"model.layers.1.mlp.up_proj.weight' has shape "
                                                r"\(48, 31\), expected \(48, 32\)"):
            hf_lib.load_hf_model(path)

    def test_missing_tensor_is_named(self):
        path, file = self._checkpoint()
        tensors = {k: np.array(file.get(k)) for k in file.keys() if "layers.2.input" not in k}
        save_file(tensors, os.path.join(path, "model.safetensors"))
        with self.assertRaisesRegex(ValueError, "model.layers.2.input_layernorm.weight"):
            hf_lib.load_hf_model(path)


class ConfigTest(parameterized.TestCase):

    @parameterized.parameters(
        # Totals from the model cards (tied models count the embedding once).
        ("qwen3-0.6b", 0.6e9), ("qwen3-1.7b", 1.7e9), ("qwen3-4b", 4.0e9), ("qwen3-8b", 8.2e9),
        ("qwen2.5-0.5b", 0.49e9), ("qwen2.5-1.5b", 1.54e9), ("qwen2.5-7b", 7.61e9),
        ("llama3.2-1b", 1.23e9), ("llama3.2-3b", 3.21e9), ("llama3.1-8b", 8.03e9),
    )
    def test_preset_sizes(self, name, published):
        self.assertAlmostEqual(get_preset(name).num_params() / published, 1.0, delta=0.02)

    def test_qwen3_non_embedding_counts_match_model_cards(self):
        # Qwen3 cards: 0.6B -> 0.44B, 1.7B -> 1.4B, 8B -> 6.95B non-embedding (head excluded).
        for name, non_embedding in (("qwen3-0.6b", 0.44e9), ("qwen3-1.7b", 1.4e9),
                                    ("qwen3-8b", 6.95e9)):
            c = get_preset(name)
            embeddings = c.vocab_size * c.hidden_size * (1 if c.tie_word_embeddings else 2)
            self.assertAlmostEqual((c.num_params() - embeddings) / non_embedding, 1.0, delta=0.02)

    def test_small_preset_is_about_20m(self):
        self.assertBetween(get_preset("small").num_params(), 18e6, 24e6)

    def test_transformers4_style_config(self):
        legacy = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
                  "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "rope_theta": 500000.0,
                  "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192}}
        config = ModelConfig.from_hf_config(legacy)
        self.assertEqual(config.rope_llama3, (32.0, 1.0, 4.0, 8192))
        self.assertEqual((config.num_kv_heads, config.head_dim, config.rope_theta), (2, 4, 5e5))

    def test_bad_family_and_rope_fail_clearly(self):
        with self.assertRaisesRegex(ValueError, "model_type='gpt2'"):
            ModelConfig.from_hf_config({"model_type": "gpt2"})
        with self.assertRaisesRegex(ValueError, "rope_type='yarn'"):
            ModelConfig.from_hf_config({
                "model_type": "qwen3", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
                "num_hidden_layers": 1, "num_attention_heads": 2,
                "rope_parameters": {"rope_type": "yarn", "rope_theta": 1.0}})


if __name__ == "__main__":
    absltest.main()
