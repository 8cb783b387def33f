"""SFT batching and loss, and `tiny` stage-1 and stage-2 runs on the synthetic default."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from sidjax.config_files import load_config
from sidjax.model.config import get_preset
from sidjax.model.model import init_params
from sidjax.model.transformer import Transformer
from sidjax.pipeline import defaults as pipeline_defaults
from sidjax.sft import stage as sft_stage
from sidjax.sft.batches import BucketIterator, TokenizedSet, eval_batches, make_batch
from sidjax.sft.loss import lm_loss


def _toy_set(n=40, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 70, size=n)
    ids = [rng.integers(2, 50, size=k).astype(np.int32) for k in lengths]
    masks = [rng.random(k) > 0.5 for k in lengths]
    return TokenizedSet(ids, masks, np.arange(n, dtype=np.int32) % 2, ("a", "b"))


class BatchesTest(absltest.TestCase):

    def test_bucket_iterator_covers_each_example_at_most_once_per_epoch(self):
        data = _toy_set()
        it = BucketIterator(data, 4, pad_id=0, seed=1, smallest=16)
        seen = []
        for _ in range(it.batches_per_epoch):
            batch = next(it)
            self.assertIn(batch["tokens"].shape[1], (16, 24, 32, 48, 64, 96, 128))
            for row, valid in zip(batch["tokens"], batch["valid"]):
                seen.append(tuple(row[valid]))
        self.assertLen(set(seen), len(seen))
        self.assertGreaterEqual(len(seen), len(data) - 4 * len(it.buckets))
        state = it.get_state()
        after = next(it)
        resumed = BucketIterator(data, 4, pad_id=0, seed=1, smallest=16)
        resumed.set_state(state)
        np.testing.assert_array_equal(next(resumed)["tokens"], after["tokens"])

    def test_two_processes_read_disjoint_halves(self):
        data = _toy_set()
        rows = [BucketIterator(data, 4, 0, 3, 16, process_index=p, process_count=2)
                for p in range(2)]
        a, b = next(rows[0]), next(rows[1])
        self.assertEqual(a["tokens"].shape[0], 2)
        self.assertFalse(set(map(tuple, a["tokens"])) & set(map(tuple, b["tokens"])))

    def test_two_processes_cover_the_batchable_split_exactly_once_per_epoch(self):
        data = _toy_set(60)
        for i, ids in enumerate(data.ids):  # A unique first token names the example.
            ids[0] = 1000 + i
        iters = [BucketIterator(data, 4, 0, 5, 16, process_index=p, process_count=2)
                 for p in range(2)]
        batchable = sum(len(rows) // 4 * 4 for rows in iters[0].buckets.values())
        for epoch in range(2):
            seen = []
            for _ in range(iters[0].batches_per_epoch):
                for it in iters:
                    batch = next(it)
                    self.assertLen(batch["tokens"], 2)
                    seen += [int(row[valid][0]) - 1000
                             for row, valid in zip(batch["tokens"], batch["valid"])]
            self.assertLen(seen, batchable, f"epoch {epoch}")
            self.assertLen(set(seen), batchable, f"epoch {epoch}")

    def test_eval_batches_keep_every_example_once(self):
        data = _toy_set(13)
        batches = eval_batches(data, 8, 0, smallest=16)
        self.assertEqual(sum(int(b["valid"].any(1).sum()) for b in batches), 13)
        self.assertEqual(sum(int(b["loss_mask"].sum()) for b in batches), data.supervised_tokens())


class LossTest(absltest.TestCase):

    def test_token_mean_and_per_task_sums(self):
        config = get_preset("tiny", vocab_size=64)
        params = init_params(config, jax.random.PRNGKey(0))
        data = _toy_set(6)
        batch = make_batch(data, range(6), 0, 128)
        loss, (count, metrics) = lm_loss(config, ("a", "b"), params, batch)
        logits, _ = Transformer(config).apply({"params": params}, batch["tokens"],
                                              batch["valid"])
        logp = jax.nn.log_softmax(logits[:, :-1])
        nll = -jnp.take_along_axis(logp, batch["tokens"][:, 1:, None], -1)[..., 0]
        mask = batch["loss_mask"][:, 1:]
        self.assertAlmostEqual(float(loss), float((nll * mask).sum()), places=2)
        self.assertEqual(float(count), float(mask.sum()))
        self.assertAlmostEqual(float(metrics["loss/a"][0] + metrics["loss/b"][0]), float(loss),
                               places=2)
        self.assertEqual(float(metrics["loss/a"][1]), float(mask[::2].sum()))


class SftStageTest(absltest.TestCase):

    def test_tiny_stage1_then_stage2(self):
        workdir = self.create_tempdir().full_path
        config = load_config("configs/sft.py:tiny", {
            "train.num_steps": 90, "eval.every_steps": 30, "log.progress": False,
            "log.tensorboard": False, "sft.dropout": 0.25})
        summary = sft_stage.train_and_evaluate(config, workdir)
        self.assertEqual(summary["dropout"], 0.25)  # sft.dropout, not model.dropout.
        evals = [json.loads(line) for line in open(os.path.join(workdir, "sft", "metrics.jsonl"))
                 if "eval/valid/sid_loss" in line]
        losses = [e["eval/valid/sid_loss"] for e in evals]
        self.assertLen(losses, 3)
        self.assertLess(losses[-1], losses[0])
        train = [json.loads(line)["train/loss"] for line in
                 open(os.path.join(workdir, "sft", "metrics.jsonl")) if "train/loss" in line]
        self.assertLess(np.mean(train[-2:]), train[0])
        # The tiny (CPU-recipe) variant selects best/ by valid HR@10 by beam search.
        self.assertEqual(summary["eval_metric"], "valid/hr@10")
        self.assertEqual(summary["best_value"], max(e["eval/valid/hr@10"] for e in evals))
        self.assertIn("title2sid_loss", summary["final_eval"])
        self.assertIn("loss/sid_next", summary["final_train"])
        model, tokenizer = sft_stage.load_export(os.path.join(workdir, "sft", "export"))
        self.assertEqual(len(tokenizer.encode("<a_0><b_0><c_0>", add_special_tokens=False)), 3)
        # Rerun: skipped.
        self.assertEqual(sft_stage.train_and_evaluate(config, workdir)["steps"], 90)

        config2 = load_config("configs/reason.py:tiny", {
            "train.num_steps": 10, "eval.every_steps": 5, "log.progress": False,
            "log.tensorboard": False})
        summary2 = sft_stage.train_and_evaluate(config2, workdir)
        self.assertEqual(summary2["stage"], 2)
        self.assertEqual(list(summary2["examples_per_task"]), ["reasoning"])
        self.assertEqual(summary2["dropout"], config2.model.dropout)  # sft.dropout < 0.
        self.assertTrue(os.path.isdir(os.path.join(workdir, "reason", "export")))

    def test_stage_dropout_per_stage(self):
        """The synthetic default trains stage 1 at dropout 0.2 and stage 2 at model.dropout;
        `--config.model.dropout` still sets every stage that has no sft.dropout of its own."""
        config = pipeline_defaults.pipeline_config("")
        stage1, stage2 = (pipeline_defaults.stage_config(config, s) for s in (1, 2))
        self.assertEqual(sft_stage.stage_dropout(stage1), 0.2)
        self.assertEqual(sft_stage.stage_dropout(stage2), 0.1)
        stage2.model.dropout = 0.3
        self.assertEqual(sft_stage.stage_dropout(stage2), 0.3)
        stage1.sft.dropout = 1.0
        with self.assertRaisesRegex(ValueError, "sft.dropout=1.0 .stage 1."):
            sft_stage.stage_dropout(stage1)

    def test_stage2_without_stage1_says_what_to_run(self):
        workdir = self.create_tempdir().full_path
        config = load_config("configs/reason.py:tiny", {"sid_train.num_steps": 5})
        with self.assertRaisesRegex(FileNotFoundError, "run stage 1"):
            sft_stage.train_and_evaluate(config, workdir)


if __name__ == "__main__":
    absltest.main()
