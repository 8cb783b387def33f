"""SID token rows from the items' text embeddings (sidjax/model/sid_init.py)."""

import numpy as np
from absl.testing import absltest
from ml_collections import ConfigDict

from sidjax.model import sid_init
from sidjax.model.setup import build_llm, default_model_config


class ResidualTokenVectorsTest(absltest.TestCase):

    def test_hand_computed_levels(self):
        sids = ["<a_0><b_0>", "<a_0><b_1>", "<a_1><b_0>"]
        x = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
        v = sid_init.residual_token_vectors(sids, x)
        # Level 0: means of the items under each first token.
        np.testing.assert_allclose(v["<a_0>"], [2.0, 1.0])
        np.testing.assert_allclose(v["<a_1>"], [0.0, 4.0])
        # Residuals: item 0 [-1, -1], item 1 [1, 1], item 2 [0, 0]; <b_0> holds items 0, 2.
        np.testing.assert_allclose(v["<b_0>"], [-0.5, -0.5])
        np.testing.assert_allclose(v["<b_1>"], [1.0, 1.0])
        self.assertLen(v, 4)

    def test_items_with_an_extra_level(self):
        v = sid_init.residual_token_vectors(["<a_0><b_0>", "<a_0><b_0><c_1>"],
                                            np.array([[0.0], [2.0]]))
        # a_0: mean 1; b_0 (both items) explains nothing more; c_1 only the second item's
        # remaining +1.
        np.testing.assert_allclose(v["<a_0>"], [1.0])
        np.testing.assert_allclose(v["<b_0>"], [0.0])
        np.testing.assert_allclose(v["<c_1>"], [1.0])

    def test_errors_name_the_problem(self):
        with self.assertRaisesRegex(ValueError, "2 SIDs but 1 embedding rows"):
            sid_init.residual_token_vectors(["<a_0>", "<a_1>"], np.zeros((1, 2)))
        with self.assertRaisesRegex(ValueError, "'bad' has no SID tokens"):
            sid_init.residual_token_vectors(["bad"], np.zeros((1, 2)))

    def test_projection_keeps_similarity_and_sets_norm(self):
        rng = np.random.default_rng(0)
        base = rng.standard_normal(64)
        vectors = {"<a_0>": base, "<a_1>": base + 0.1 * rng.standard_normal(64),
                   "<a_2>": rng.standard_normal(64), "<a_3>": np.zeros(64)}
        rows = sid_init.projected_rows(vectors, 32, target_norm=3.0)
        for row in rows.values():
            self.assertAlmostEqual(float(np.linalg.norm(row)), 3.0, places=4)

        def cos(a, b):
            return float(rows[a] @ rows[b]) / 9.0

        self.assertGreater(cos("<a_0>", "<a_1>"), 0.9)
        self.assertLess(abs(cos("<a_0>", "<a_2>")), 0.5)


class BuildLlmTest(absltest.TestCase):

    def test_sid_rows_follow_the_vectors(self):
        cfg = default_model_config()
        cfg.update(hidden_size=32, intermediate_size=64, num_layers=1, tokenizer_vocab=300)
        tokens = ["<a_0>", "<a_1>", "<a_2>", "<b_0>"]
        corpus = ["some item text for the tokenizer", "another line"] * 20
        plain, tok = build_llm(cfg, tokens, corpus, seed=0)
        rng = np.random.default_rng(1)
        shared = rng.standard_normal(16)
        vectors = {"<a_0>": shared, "<a_1>": shared + 0.01 * rng.standard_normal(16),
                   "<a_2>": -shared, "<b_0>": rng.standard_normal(16)}
        model, tok2 = build_llm(cfg, tokens, corpus, seed=0, sid_vectors=vectors)
        ids = tok2.convert_tokens_to_ids(tokens)
        before = np.asarray(plain.params["embed"]["embedding"])
        after = np.asarray(model.params["embed"]["embedding"])
        rows = after[ids]
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1),
                                   np.linalg.norm(before[ids], axis=1).mean(), rtol=1e-4)
        unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        self.assertGreater(float(unit[0] @ unit[1]), 0.99)
        self.assertLess(float(unit[0] @ unit[2]), -0.99)
        others = np.setdiff1d(np.arange(len(before)), ids)
        np.testing.assert_array_equal(after[others], before[others])

    def test_config_names_the_choices(self):
        self.assertEqual(default_model_config().sid_init, "noise")
        self.assertIn("items", sid_init.SID_INITS)
        self.assertIsInstance(default_model_config(), ConfigDict)


if __name__ == "__main__":
    absltest.main()
