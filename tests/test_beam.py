"""Constrained SID beam search against brute-force enumeration of every valid SID."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from sidjax.decode.beam import sid_beam_search
from sidjax.decode.sid_tables import build_sid_tables
from sidjax.model.config import get_preset
from sidjax.model.model import init_params
from sidjax.model.transformer import Transformer

END = (5, 6)  # Stand-ins for the ids of "\n" and <|im_end|>.


def model():
    config = get_preset("tiny", vocab_size=64, num_layers=2)
    # Weights scaled so log-probs differ clearly between SIDs.
    params = jax.tree.map(lambda x: x * 8 if x.ndim > 1 else x,
                          init_params(config, jax.random.PRNGKey(0)))
    return config, params


CONFIG, PARAMS = model()


@jax.jit
def _log_probs(tokens):
    logits, _ = Transformer(CONFIG).apply({"params": PARAMS}, tokens)
    return jax.nn.log_softmax(logits)  # [N, T, V]


def brute_force(prompt, sids, end, renormalize=False, allowed=None):
    """Score every SID (+ end tokens) with full forward passes (one batch of all SIDs)."""
    seqs = np.stack([np.concatenate([prompt, sid, end]) for sid in sids]).astype(np.int32)
    lps = np.asarray(_log_probs(jnp.asarray(seqs)), np.float64)
    n, out = len(prompt), {}
    for sid, lp in zip(sids, lps):
        total = 0.0
        for i, tok in enumerate(list(sid) + list(end)):
            if renormalize:
                if i >= len(sid):
                    continue  # Forced tokens: probability 1 among the allowed.
                options = allowed(tuple(sid[:i]))
                total += lp[n - 1 + i, tok] - np.log(np.exp(lp[n - 1 + i, options]).sum())
            else:
                total += lp[n - 1 + i, tok]
        out[tuple(int(t) for t in sid)] = total
    return out


def catalog(rng, n, a=3, b=4, c=5):
    return sorted({(10 + int(rng.integers(a)), 20 + int(rng.integers(b)),
                    30 + int(rng.integers(c))) for _ in range(n)})


class BeamSearchTest(parameterized.TestCase):

    def test_exact_when_no_prefix_is_pruned(self):
        # <= 3 level-1 and <= 6 level-2 prefixes, beam 6, no end tokens: beam search is exact.
        rng = np.random.default_rng(0)
        sids = catalog(rng, 40, a=2, b=3, c=6)
        tables = build_sid_tables(sids, ())
        prompts = rng.integers(40, 64, (3, 7))
        result = sid_beam_search(CONFIG, PARAMS, prompts, tables, beam=6)
        for row, prompt in enumerate(prompts):
            truth = sorted(brute_force(prompt, sids, ()).items(), key=lambda x: -x[1])[:6]
            got = [tuple(int(t) for t in s) for s in result.tokens[row]]
            self.assertEqual(got, [s for s, _ in truth])
            np.testing.assert_allclose(result.scores[row], [v for _, v in truth], atol=1e-4)

    def test_all_sids_with_end_tokens_scored_like_full_forward_passes(self):
        rng = np.random.default_rng(1)
        sids = catalog(rng, 9)
        tables = build_sid_tables(sids, END)
        prompt = rng.integers(40, 64, (1, 5))
        result = sid_beam_search(CONFIG, PARAMS, prompt, tables, beam=len(sids))
        truth = brute_force(prompt[0], sids, END)
        got = {tuple(int(t) for t in s): v for s, v in zip(result.tokens[0], result.scores[0])}
        self.assertEqual(set(got), set(truth))
        for sid, value in got.items():
            self.assertAlmostEqual(value, truth[sid], delta=1e-4)
        self.assertTrue(np.all(np.diff(result.scores[0]) <= 0))  # Best first.

    @parameterized.parameters(10, 16, 50)
    def test_outputs_always_valid_distinct_and_scored(self, beam):
        rng = np.random.default_rng(beam)
        sids = catalog(rng, 60, a=4, b=6, c=8)  # Shared prefixes, many pruned.
        tables = build_sid_tables(sids, END)
        prompts = rng.integers(40, 64, (4, 6))
        result = sid_beam_search(CONFIG, PARAMS, prompts, tables, beam=beam)
        self.assertEqual(result.tokens.shape, (4, beam, 3))
        for row, prompt in enumerate(prompts):
            valid = [tuple(int(t) for t in s) for s, ok in zip(result.tokens[row],
                                                               result.valid[row]) if ok]
            self.assertLen(valid, min(beam, len(sids)))
            self.assertLen(set(valid), len(valid))
            self.assertTrue(set(valid) <= set(sids))
            truth = brute_force(prompt, valid, END)
            # float32 sums of five log-probs near -26 round at ~1e-5 relative (seen: 1.4e-4).
            np.testing.assert_allclose(result.scores[row][result.valid[row]],
                                       [truth[s] for s in valid], rtol=1e-5, atol=1e-4)

    def test_single_item_and_fewer_items_than_beams(self):
        for sids in ([(11, 22, 33)], [(11, 22, 33), (11, 22, 34), (12, 20, 30)]):
            tables = build_sid_tables(sids, END)
            result = sid_beam_search(CONFIG, PARAMS, np.full((2, 4), 41), tables, beam=10)
            self.assertEqual(result.valid.sum(axis=1).tolist(), [len(sids)] * 2)
            self.assertTrue(np.all(np.isneginf(result.scores[~result.valid])))
            strings = result.sid_strings(tables)
            self.assertEqual(sorted(s for s in strings[0] if s), sorted(str(s) for s in sids))

    def test_renormalized_scoring(self):
        rng = np.random.default_rng(3)
        sids = catalog(rng, 8)
        tables = build_sid_tables(sids, END)
        prompt = rng.integers(40, 64, (1, 6))
        result = sid_beam_search(CONFIG, PARAMS, prompt, tables, beam=len(sids),
                                 renormalize=True)

        def allowed(prefix):
            return sorted({s[len(prefix)] for s in sids if s[:len(prefix)] == prefix})

        truth = brute_force(prompt[0], sids, END, renormalize=True, allowed=allowed)
        for sid, value in zip(result.tokens[0], result.scores[0]):
            self.assertAlmostEqual(value, truth[tuple(int(t) for t in sid)], delta=1e-4)
        # Renormalised probabilities over all SIDs sum to 1.
        self.assertAlmostEqual(float(np.exp(result.scores[0]).sum()), 1.0, delta=1e-4)

    def test_left_padded_prompts_match_unpadded(self):
        rng = np.random.default_rng(4)
        sids = catalog(rng, 30)
        tables = build_sid_tables(sids, END)
        short = rng.integers(40, 64, 5)
        padded = np.concatenate([np.zeros(3, int), short])[None]
        valid = np.concatenate([np.zeros(3, bool), np.ones(5, bool)])[None]
        a = sid_beam_search(CONFIG, PARAMS, short[None], tables, beam=10)
        b = sid_beam_search(CONFIG, PARAMS, padded, tables, beam=10, prompt_valid=valid)
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)

    def test_tables_reject_mixed_lengths(self):
        with self.assertRaisesRegex(ValueError, "same number of levels"):
            build_sid_tables([(1, 2, 3), (1, 2)], END)


if __name__ == "__main__":
    absltest.main()


class TablesFromCatalogTest(absltest.TestCase):

    def test_catalog_with_sid_tokens(self):
        from sidjax.data.types import Catalog, Item
        from sidjax.decode.sid_tables import tables_from_catalog
        from sidjax.model.model import Model
        from sidjax.model.tokenizer import add_sid_tokens, sid_tokens, train_tokenizer

        sids = [("<a_1>", "<b_2>", "<c_3>"), ("<a_1>", "<b_2>", "<c_4>"),
                ("<a_1>", "<b_2>", "<c_3>"), ("<a_7>", "<b_0>", "<c_0>")]  # 0 and 2 collide.
        catalog = Catalog([Item(id=i, title=f"t{i}", sid=s) for i, s in enumerate(sids)])
        tokenizer = train_tokenizer(["some text for the tokenizer\n"] * 20, 300)
        config = get_preset("tiny", vocab_size=len(tokenizer))
        tokenizer, _, _ = add_sid_tokens(tokenizer, Model(config, init_params(
            config, jax.random.PRNGKey(0))), sid_tokens(["".join(s) for s in sids]))
        tables = tables_from_catalog(catalog, tokenizer)
        self.assertEqual(tables.num_sids, 3)  # Collided items share one SID.
        self.assertEqual(tables.end_tokens, (tokenizer.encode("\n")[0],
                                             tokenizer.convert_tokens_to_ids("<|im_end|>")))
        root = [t for t in tables.child_tokens[0] if t >= 0]
        self.assertEqual(sorted(tokenizer.convert_ids_to_tokens(root)), ["<a_1>", "<a_7>"])
        self.assertIn("<a_1><b_2><c_4>", tables.leaf_sids.values())
