"""Rewards on hand-written responses; GRPO advantages and loss against hand-computed values."""

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from sidjax.rl import grpo, rewards

TARGET = "<a_1><b_2><c_3>"
VALID = {"<a_1><b_2><c_3>", "<a_1><b_2><c_4>", "<a_1><b_5><c_3>", "<a_7><b_2><c_3>"}


class StepRuleRewardTest(parameterized.TestCase):

    @parameterized.named_parameters(
        ("exact_valid", "<think>\nlong reasoning\n</think>\n\n<a_1><b_2><c_3>", 1.1),
        ("two_levels_valid", "<think>x</think>\n\n<a_1><b_2><c_4>", 0.6),
        ("first_level_valid", "<think>x</think><a_1><b_5><c_3>", 0.35),
        ("first_level_invalid", "<think>x</think><a_1><b_9><c_3>", 0.25),
        ("later_levels_ignored_after_mismatch", "<think>x</think><a_7><b_2><c_3>", 0.1),
        ("wrong_invalid", "<think>x</think><a_9><b_9><c_9>", 0.0),
        ("missing_think_close", "<think>x <a_1><b_2><c_3>", 0.0),
        ("no_think_at_all", "<a_1><b_2><c_3>", 0.0),
        ("only_two_tokens", "<think>x</think><a_1><b_2>", 0.0),
        ("unparseable", "<think>x</think> I recommend gloves.", 0.0),
        ("text_after_sid", "<think>x</think>\n\n<a_1><b_2><c_3> because gloves", 1.1),
        ("think_close_outside_last_50_chars",
         "<think>x</think>" + " padding" * 10 + "<a_1><b_2><c_3>", 0.0),
        ("four_tokens_uses_first_three", "<think>x</think><a_1><b_2><c_3><d_0>", 1.1),
    )
    def test_table(self, response, expected):
        self.assertAlmostEqual(rewards.step_rule_reward(response, TARGET, VALID), expected)

    def test_other_rewards_and_combination(self):
        good = "<think>a</think>\n\n<a_1><b_2><c_3>"
        bad = "<think>a</think>\n\n<a_1><b_2><c_4>"
        self.assertEqual(rewards.exact_match_reward(good, TARGET, VALID), 1.0)
        self.assertEqual(rewards.exact_match_reward(bad, TARGET, VALID), 0.0)
        self.assertEqual(rewards.format_reward(bad, TARGET, VALID), 1.0)
        self.assertEqual(rewards.format_reward("<a_1><b_2><c_3>", TARGET, VALID), 0.0)
        norm = 1 + 1 / math.log2(3) + 0.5
        self.assertAlmostEqual(rewards.rank_aware_reward(bad, TARGET, VALID, rank=1,
                                                         group_size=3), -(1 / math.log2(3)) / norm)
        self.assertEqual(rewards.rank_aware_reward(good, TARGET, VALID, rank=2, group_size=3), 1)
        combined = rewards.combine({"step_rule": 1.0, "format": 0.5})
        self.assertAlmostEqual(combined(bad, TARGET, VALID), 0.6 + 0.5)
        self.assertEqual(rewards.overlong_reward("<think>a b c", TARGET, VALID, truncated=True),
                         -1.0)
        self.assertEqual(rewards.overlong_reward(good, TARGET, VALID, truncated=False), 0.0)
        with_overlong = rewards.combine({"step_rule": 1.0, "overlong": 0.5})
        self.assertAlmostEqual(with_overlong(bad, TARGET, VALID, truncated=True), 0.6 - 0.5)
        with self.assertRaisesRegex(ValueError, "Unknown rewards"):
            rewards.combine({"bleu": 1.0})


class AdvantageTest(absltest.TestCase):

    def test_grpo_hand_computed(self):
        r = [1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0]
        adv = grpo.group_advantages(r, 4, "grpo")
        # Group 1: mean 0.5, unbiased std sqrt(1/6).
        std = math.sqrt(((0.5 ** 2) * 2) / 3)
        np.testing.assert_allclose(adv[:4], [0.5 / (std + 1e-6), -0.5 / (std + 1e-6), 0, 0],
                                   rtol=1e-6)
        np.testing.assert_array_equal(adv[4:], 0.0)  # Identical rewards: no signal.

    def test_drgrpo_rloo_and_singletons(self):
        r = [1.0, 0.0, 0.5, 0.5]
        np.testing.assert_allclose(grpo.group_advantages(r, 4, "drgrpo"), [0.5, -0.5, 0, 0])
        # RLOO: r_i - mean of the others.
        np.testing.assert_allclose(grpo.group_advantages(r, 4, "rloo"),
                                   [1 - 1 / 3, 0 - 2 / 3, 0.5 - 0.5, 0.5 - 0.5], rtol=1e-6)
        np.testing.assert_allclose(grpo.group_advantages([0.3, -1.0], 1, "grpo"),
                                   [0.3 / (1 + 1e-6), -1 / (1 + 1e-6)], rtol=1e-6)

    def test_non_finite_rewards_masked(self):
        adv = grpo.group_advantages([1.0, np.nan, 0.0, np.inf], 4, "grpo")
        std = math.sqrt(0.5)
        np.testing.assert_allclose(adv, [0.5 / (std + 1e-6), 0, -0.5 / (std + 1e-6), 0],
                                   rtol=1e-6)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "whole groups of 4"):
            grpo.group_advantages([1, 2, 3], 4)
        with self.assertRaisesRegex(ValueError, "estimator 'ppo'"):
            grpo.group_advantages([1, 2], 2, "ppo")


def _inputs():
    logp = jnp.log(jnp.array([[0.5, 0.2, 0.9], [0.3, 0.3, 0.1]]))
    old = jnp.log(jnp.array([[0.25, 0.2, 0.9], [0.6, 0.3, 0.1]]))
    ref = jnp.log(jnp.array([[0.5, 0.4, 0.9], [0.3, 0.3, 0.2]]))
    mask = jnp.array([[1, 1, 0], [1, 1, 1]], bool)
    adv = jnp.array([1.0, -2.0])
    return logp, old, ref, adv, mask


class PolicyLossTest(absltest.TestCase):

    def test_clipping_by_hand(self):
        logp, old, ref, adv, mask = _inputs()
        loss, (weight, m) = grpo.policy_loss(logp, old, ref, adv, mask, kl_coef=0.0,
                                             dual_clip=None)
        # Row 0 (A=1): ratios 2 -> clipped 1.2, 1 -> 1. pg = -1.2, -1.
        # Row 1 (A=-2): ratios 0.5 -> max(1.0, 2*0.8=1.6)=1.6, 1, 1 -> pg 1.6, 2, 2.
        per_token = [-1.2, -1.0, 1.6, 2.0, 2.0]
        self.assertAlmostEqual(float(loss), sum(per_token), places=5)
        self.assertEqual(float(weight), 5)
        self.assertAlmostEqual(float(m["clip_frac"][0] / m["clip_frac"][1]), 2 / 5)

    def test_dual_clip_caps_negative_advantages(self):
        logp = jnp.log(jnp.array([[0.9]]))
        old = jnp.log(jnp.array([[0.1]]))  # ratio 9
        loss, _ = grpo.policy_loss(logp, old, logp, jnp.array([-1.0]), jnp.ones((1, 1), bool),
                                   kl_coef=0.0, dual_clip=3.0)
        self.assertAlmostEqual(float(loss), 3.0, places=5)  # Not 9.
        loss, _ = grpo.policy_loss(logp, old, logp, jnp.array([-1.0]), jnp.ones((1, 1), bool),
                                   kl_coef=0.0, dual_clip=None)
        self.assertAlmostEqual(float(loss), 9.0, places=4)

    def test_kl_estimators(self):
        logp, ref = jnp.log(jnp.array([0.5])), jnp.log(jnp.array([0.25]))
        self.assertAlmostEqual(float(grpo.kl_penalty(logp, ref, "k1")[0]), math.log(2), places=6)
        d = math.log(0.5)  # ref - logp
        self.assertAlmostEqual(float(grpo.kl_penalty(logp, ref, "k3")[0]),
                               math.exp(d) - d - 1, places=6)
        self.assertEqual(float(grpo.kl_penalty(jnp.array([0.0]), jnp.array([30.0]), "k3")[0]), 10)

    def test_kl_term_and_aggregations(self):
        logp, old, ref, adv, mask = _inputs()
        kw = dict(kl_coef=0.5, dual_clip=None)
        pg = np.array([[-1.2, -1.0, 0.0], [1.6, 2.0, 2.0]])
        kl = np.asarray(grpo.kl_penalty(logp, ref, "k3"))
        tok = (pg + 0.5 * kl) * np.asarray(mask)
        loss, (w, _) = grpo.policy_loss(logp, old, ref, adv, mask, **kw)
        self.assertAlmostEqual(float(loss / w), tok.sum() / 5, places=5)
        loss, (w, _) = grpo.policy_loss(logp, old, ref, adv, mask,
                                        aggregation="seq-mean-token-mean", **kw)
        self.assertAlmostEqual(float(loss / w), (tok[0].sum() / 2 + tok[1].sum() / 3) / 2, places=5)
        loss, (w, _) = grpo.policy_loss(logp, old, ref, adv, mask, aggregation="fixed-length",
                                        max_len=4, **kw)
        self.assertAlmostEqual(float(loss / w), (tok[0].sum() / 4 + tok[1].sum() / 4) / 2, places=5)
        with self.assertRaisesRegex(ValueError, "aggregation 'sum'"):
            grpo.policy_loss(logp, old, ref, adv, mask, aggregation="sum")

    def test_gradient_at_old_policy_is_advantage_weighted_score(self):
        logits = jnp.array([[0.1, 0.4, -0.3]])

        def loss(logits):
            logp = jax.nn.log_softmax(logits)[:, :1]
            s, (w, _) = grpo.policy_loss(logp, jax.lax.stop_gradient(logp),
                                         jax.lax.stop_gradient(logp), jnp.array([2.0]),
                                         jnp.ones((1, 1), bool), kl_coef=0.0)
            return s / w

        g = jax.grad(loss)(logits)
        p = jax.nn.softmax(logits)[0]
        np.testing.assert_allclose(g[0], -2.0 * (jnp.eye(3)[0] - p), rtol=1e-5)


class MicroBatchTest(absltest.TestCase):

    def test_token_mean_sums_match_across_splits(self):
        rng = np.random.default_rng(0)
        logp = jnp.asarray(rng.normal(size=(8, 5)) - 2)
        old = logp + jnp.asarray(rng.normal(size=(8, 5)) * 0.1)
        ref = logp + jnp.asarray(rng.normal(size=(8, 5)) * 0.1)
        adv = jnp.asarray(grpo.group_advantages(rng.random(8), 4))
        mask = jnp.asarray(rng.random((8, 5)) > 0.3)
        for agg in grpo.AGGREGATIONS:
            whole_s, (whole_w, _) = grpo.policy_loss(logp, old, ref, adv, mask, aggregation=agg)
            parts = [grpo.policy_loss(logp[i::2], old[i::2], ref[i::2], adv[i::2], mask[i::2],
                                      aggregation=agg) for i in range(2)]
            total = sum(p[0] for p in parts) / sum(p[1][0] for p in parts)
            self.assertAlmostEqual(float(total), float(whole_s / whole_w), places=5)

    def test_group_layout(self):
        order = grpo.micro_batch_order(8, 2, 2)
        micro = [order[i::2] for i in range(2)]  # The trainer's strided split.
        for rows in micro:
            groups = collections.Counter(int(r) // 2 for r in rows)
            self.assertEqual(set(groups.values()), {2})  # Whole groups only.
        self.assertEqual(sorted(np.concatenate(micro).tolist()), list(range(8)))
        with self.assertRaisesRegex(ValueError, "split a group"):
            grpo.micro_batch_order(8, 4, 4)
        with self.assertRaisesRegex(ValueError, "whole groups"):
            grpo.check_group_layout(6, 4, 1)


if __name__ == "__main__":
    absltest.main()
