"""The GRPO rollout + update loop on the shared trainer: a learnable toy reward rises, and
micro-batch accumulation equals one batch."""

import json
import os
import shutil

import jax
import numpy as np
from absl.testing import absltest

from sidjax.model.config import get_preset
from sidjax.model.model import init_params
from sidjax.model.sharding import PARTITION_RULES
from sidjax.rl.rollout import RolloutSource, RolloutSpec, grpo_loss_fn
from sidjax.rl.stage import default_grpo_config
from sidjax.train.defaults import base_config
from sidjax.train.trainer import Task, Trainer, make_train_step
from sidjax.train import optim

TARGET, EOS, PAD = 7, 1, 0


def _setup(workdir, steps=30, micro_batches=1, lr=3e-3, ckpt_every=0, **grpo):
    model_config = get_preset("tiny", vocab_size=32, num_layers=1)
    params = init_params(model_config, jax.random.PRNGKey(0))
    cfg = default_grpo_config()
    cfg.update(steps=steps, prompts_per_step=4, group_size=8, max_response_tokens=4,
               kl_coef=0.0, eval_every=1000)
    cfg.update(grpo)
    config = base_config()
    config.train.num_steps = steps
    config.train.batch_size = 32
    config.train.micro_batches = micro_batches
    config.optim.lr = lr
    config.ckpt.every_steps = ckpt_every
    config.ckpt.keep = 10
    config.log.progress = False
    config.log.tensorboard = False
    rng = np.random.default_rng(0)
    prompts = [rng.integers(2, 32, size=4).tolist() for _ in range(16)]
    # Reward: the fraction of response tokens (before EOS) that are the target token.
    spec = RolloutSpec(prompts=prompts, targets=[TARGET] * 16,
                       reward_fn=lambda ids, t: float(np.mean([i == t for i in ids] or [0])),
                       stop_tokens=[EOS], pad_id=PAD)
    source = RolloutSource(spec, cfg, model_config, params, micro_batches, seed=0,
                           log_dir=workdir)
    task = Task(init_params=lambda r: init_params(model_config, r),
                loss_fn=grpo_loss_fn(model_config, cfg), partition_rules=PARTITION_RULES,
                initial_params=params)
    trainer = Trainer(config, workdir, task)
    source.trainer = trainer
    source.place_reference(trainer.shardings.params)
    trainer.init_or_restore(source)
    return trainer, source, config, cfg, model_config


class GrpoLoopTest(absltest.TestCase):

    def test_learnable_reward_rises(self):
        workdir = self.create_tempdir().full_path
        trainer, source, *_ = _setup(workdir)
        trainer.fit(source)
        trainer.close()
        rewards = [h["reward_mean"] for h in source.history]
        start, end = np.mean(rewards[:3]), np.mean(rewards[-3:])
        self.assertLess(start, 0.15)  # ~1/32 of tokens by chance.
        self.assertGreater(end, start + 0.4)
        self.assertLen(open(f"{workdir}/rollouts.jsonl").readlines(), 30)
        # Compilation is logged apart from the work: the first update (a new trainer's step)
        # traces and compiles; no row's share is negative or exceeds its part's seconds.
        rows = source.history
        self.assertGreater(rows[1]["update_compile_s"], 0.0)
        for row in rows:
            self.assertGreaterEqual(row["compile_s"], 0.0)
            self.assertLessEqual(row["compile_s"], row["rollout_s"] + row["ref_s"] + 0.5)
            self.assertLessEqual(row["update_compile_s"], row["update_s"] + 0.5)

    def test_resumed_run_rewinds_the_rollout_log(self):
        workdir = self.create_tempdir().full_path
        trainer, source, *_ = _setup(workdir, steps=4, ckpt_every=2)
        trainer.fit(source)
        trainer.close()
        # As if killed after rollout 3 was logged but before step 4's checkpoint.
        shutil.rmtree(os.path.join(workdir, "ckpt", "4"))
        trainer, source, *_ = _setup(workdir, steps=4, ckpt_every=2)
        self.assertEqual(int(trainer.state.step), 2)
        trainer.fit(source)
        trainer.close()
        with open(os.path.join(workdir, "rollouts.jsonl")) as f:
            rows = [json.loads(line) for line in f]
        self.assertEqual([r["rollout"] for r in rows], [0, 1, 2, 3])
        self.assertEqual([h["rollout"] for h in source.history], [0, 1, 2, 3])

    def test_micro_batches_equal_one_batch(self):
        workdir = self.create_tempdir().full_path
        trainer, source, config, cfg, model_config = _setup(workdir, steps=1, micro_batches=2)
        batch = next(source)
        self.assertEqual(sorted(batch), ["part_0", "part_1"])  # The default: two length parts.
        # Plain SGD: params after the step are linear in the gradient, so the comparison checks
        # the accumulated gradients (Adam's g / sqrt(v) would amplify float-order noise in
        # near-zero gradients into lr-sized differences).
        config.optim.name, config.optim.lr, config.optim.grad_clip = "sgd", 1.0, 0.0
        tx = optim.make_optimizer(config.optim, 1)
        schedule = optim.make_schedule(config.optim, 1)
        loss_fn = grpo_loss_fn(model_config, cfg)
        state = trainer.state.replace(opt_state=tx.init(trainer.state.params))
        outs = []
        for micro in (1, 2, 4):
            step = jax.jit(make_train_step(loss_fn, tx, schedule, micro))
            outs.append(step(state, jax.tree.map(jax.numpy.asarray, batch)))
        for new_state, metrics in outs[1:]:
            self.assertAlmostEqual(float(metrics["loss"]), float(outs[0][1]["loss"]), places=5)
            for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(outs[0][0].params)):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        trainer.close()

    def test_on_policy_shortcut_gives_the_two_pass_gradient(self):
        # One update per rollout: the loss detaches its own log-probs as the old ones instead
        # of the rollout computing them in another forward pass; same loss, same gradient.
        from sidjax.model.logprobs import token_logprobs

        workdir = self.create_tempdir().full_path
        trainer, source, config, cfg, model_config = _setup(workdir, steps=1, length_parts=1)
        batch = next(source)
        self.assertNotIn("old_logp", batch)  # The rollout skipped the old pass.
        params = trainer.state.params
        old = token_logprobs(model_config, params, batch["tokens"], batch["valid"], 1.0)
        two_pass = dict(cfg.to_dict(), updates_per_rollout=2)
        from ml_collections import ConfigDict

        losses = {}
        for name, loss_cfg, extra in (("shortcut", cfg, {}),
                                      ("two_pass", ConfigDict(two_pass), {"old_logp": old})):
            fn = grpo_loss_fn(model_config, loss_cfg)
            b = {k: jax.numpy.asarray(v) for k, v in {**batch, **extra}.items()}

            def scalar(p, fn=fn, b=b):
                loss_sum, (weight, _) = fn(p, b, jax.random.PRNGKey(0))
                return loss_sum / weight

            losses[name] = jax.value_and_grad(scalar)(params)
        # The loss is a sum of +-advantage terms that nearly cancel (advantages sum to zero in
        # each group), so float32 rounding shows up relative to the terms, not to the sum.
        np.testing.assert_allclose(losses["shortcut"][0], losses["two_pass"][0],
                                   rtol=1e-6, atol=1e-7)
        for a, b in zip(jax.tree.leaves(losses["shortcut"][1]),
                        jax.tree.leaves(losses["two_pass"][1])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
        trainer.close()

    def test_batch_width_follows_the_longest_response(self):
        from sidjax.rl.rollout import response_width

        # Four evenly spaced widths up to the limit, each a multiple of 16.
        self.assertEqual([response_width(n, 128, 4) for n in (1, 32, 33, 65, 97, 128)],
                         [32, 32, 64, 96, 128, 128])
        self.assertEqual(response_width(20, 128, 1), 128)  # One width: always the limit.
        self.assertEqual(response_width(300, 1024, 4), 512)
        self.assertEqual(response_width(40, 50, 4), 48)
        workdir = self.create_tempdir().full_path
        trainer, source, *_ = _setup(workdir, steps=1, length_parts=1)
        batch = next(source)
        # Prompts of 4 tokens pad to 16 columns, responses of at most 4 tokens to 16.
        self.assertEqual(batch["tokens"].shape, (32, 32))
        trainer.close()

    def test_length_parts_give_the_one_batch_loss_and_gradient(self):
        # Responses of 1-40 tokens: sorted into two parts, the short half is padded to its own
        # longest response; the loss, gradient and metrics are the one batch's.
        batches, losses = {}, {}
        for parts in (1, 2):
            workdir = self.create_tempdir().full_path
            trainer, source, config, cfg, model_config = _setup(
                workdir, steps=1, micro_batches=2, max_response_tokens=40, kl_coef=0.01,
                length_parts=parts)
            batches[parts] = batch = next(source)
            fn = grpo_loss_fn(model_config, cfg)
            device_batch = jax.tree.map(jax.numpy.asarray, batch)

            def scalar(p, fn=fn, b=device_batch):
                loss_sum, (weight, metrics) = fn(p, b, jax.random.PRNGKey(0))
                return loss_sum / weight, metrics

            losses[parts] = jax.value_and_grad(scalar, has_aux=True)(trainer.state.params)
            trainer.fit(source)  # A nested batch through the trainer's micro-batches.
            self.assertEqual(int(trainer.state.step), 1)
            trainer.close()
        one, two = batches[1], batches[2]
        self.assertEqual(sorted(two), ["part_0", "part_1"])
        response_len = lambda b: b["valid"][:, 16:].sum(1)  # Prompts pad to 16 columns.
        self.assertLessEqual(response_len(two["part_0"]).max(), response_len(two["part_1"]).min())
        self.assertLess(two["part_0"]["tokens"].shape[1], two["part_1"]["tokens"].shape[1])
        self.assertEqual(two["part_1"]["tokens"].shape[1], one["tokens"].shape[1])
        self.assertEqual(sum(p["tokens"].shape[0] for p in two.values()), 32)
        self.assertEqual(sorted(np.concatenate([response_len(p) for p in two.values()])),
                         sorted(response_len(one)))
        (loss_1, metrics_1), grads_1 = losses[1]
        (loss_2, metrics_2), grads_2 = losses[2]
        np.testing.assert_allclose(loss_2, loss_1, rtol=1e-5, atol=1e-7)
        for a, b in zip(jax.tree.leaves(metrics_2), jax.tree.leaves(metrics_1)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(jax.tree.leaves(grads_2), jax.tree.leaves(grads_1)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)

    def test_length_parts_must_split_into_micro_batches(self):
        cfg = default_grpo_config()
        cfg.update(prompts_per_step=2, group_size=4, length_parts=3)
        spec = RolloutSpec([[2, 3]], [1], lambda ids, t: 0.0, [EOS], PAD)
        config = get_preset("tiny", vocab_size=32)
        with self.assertRaisesRegex(ValueError, "length_parts=3"):
            RolloutSource(spec, cfg, config, {}, 1, 0, self.create_tempdir().full_path)

    def test_rollouts_that_split_groups_are_rejected(self):
        cfg = default_grpo_config()
        cfg.update(prompts_per_step=2, group_size=4, updates_per_rollout=3)
        spec = RolloutSpec([[2, 3]], [1], lambda ids, t: 0.0, [EOS], PAD)
        config = get_preset("tiny", vocab_size=32)
        with self.assertRaisesRegex(ValueError, "whole groups"):
            RolloutSource(spec, cfg, config, {}, 1, 0, self.create_tempdir().full_path)
        cfg.update(updates_per_rollout=1)
        with self.assertRaisesRegex(ValueError, "split a group"):
            RolloutSource(spec, cfg, config, {}, 4, 0, self.create_tempdir().full_path)


if __name__ == "__main__":
    absltest.main()


class ConstrainedTailTest(absltest.TestCase):

    def test_tail_appends_a_catalog_sid_and_trains_only_sampled_tokens(self):
        from sidjax.decode.sid_tables import build_sid_tables
        from sidjax.rl.rollout import SidTail

        workdir = self.create_tempdir().full_path
        trainer, source, *_ = _setup(workdir, steps=1)
        sids = [[20, 24, 28], [20, 24, 29], [21, 25, 30], [22, 26, 31]]
        tables = build_sid_tables(sids, [])
        think_close, sep, end = 5, [6], [EOS]
        source.spec.tail = SidTail(tables, think_close, sep, end)
        prompts = [[3, 4, 9]] * 3
        responses = [[8, 9, think_close], [8, EOS], [think_close]]
        logps = [np.full(len(r), -1.0) for r in responses]
        trained = [np.ones(len(r), bool) for r in responses]
        source._add_tails(trainer.state.params, prompts, responses, logps, trained,
                          jax.random.PRNGKey(3))
        for i in (0, 2):
            head = 3 if i == 0 else 1
            self.assertEqual(responses[i][head:head + 1], sep)
            self.assertIn(responses[i][head + 1:head + 4], sids)
            self.assertEqual(responses[i][-1], EOS)
            np.testing.assert_array_equal(trained[i], [True] * head + [False, True, True, True,
                                                                       False])
            self.assertTrue(np.all(logps[i][head + 1:head + 4] < 0))
        self.assertEqual(responses[1], [8, EOS])  # Did not close its think block: untouched.
        trainer.close()
