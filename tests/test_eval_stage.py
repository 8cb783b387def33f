"""Evaluation: reasoning cut, SID baselines, and beam-search evaluation of a tiny model in both
modes (every prediction a catalog SID, metrics consistent with the per-example ranks)."""

import os
import signal

import jax
import numpy as np
from absl.testing import absltest

from sidjax.data.synthetic import SyntheticConfig, generate
from sidjax.eval import evaluate
from sidjax.eval import stage as eval_stage
from sidjax.eval.metrics import ranking_metrics
from sidjax.model.config import get_preset
from sidjax.model.model import Model, init_params
from sidjax.model.tokenizer import add_sid_tokens, sid_tokens, train_tokenizer


def _dataset():
    dataset, _ = generate(SyntheticConfig(num_users=60))
    n = len(dataset.catalog)
    dataset.catalog = dataset.catalog.with_sids(
        [(f"<a_{i % 3}>", f"<b_{i % 5}>", f"<c_{i}>") for i in range(n)])
    return dataset


class EvaluateTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data = _dataset()
        texts = [evaluate.thinking_prompt(["x"]), evaluate.nonthinking_prompt(["x"])] * 5
        tokenizer = train_tokenizer(texts + [i.title for i in cls.data.catalog.items], 400)
        config = get_preset("tiny", vocab_size=448)
        model = Model(config, init_params(config, jax.random.PRNGKey(0)))
        cls.tokenizer, cls.model, _ = add_sid_tokens(
            tokenizer, model, sid_tokens(cls.data.catalog.sid_strings()))

    def test_cut_reasoning_keeps_the_methods_quirk(self):
        self.assertEqual(evaluate.cut_reasoning("<think>\nabc\n</think>\n\n<a_1>"),
                         "<think>\nabc")
        self.assertEqual(evaluate.cut_reasoning("<think>\nno close!"), "<think>\nno close")

    def test_prompts(self):
        p = evaluate.nonthinking_prompt(["<a_1><b_2><c_3>", "<a_1><b_2><c_4>"])
        self.assertTrue(p.endswith("chronological interaction history: <a_1><b_2><c_3>, "
                                   "<a_1><b_2><c_4><|im_end|>\n<|im_start|>assistant\n"
                                   "<think>\n</think>\n\n"))
        self.assertTrue(evaluate.thinking_prompt(["<a_1>"]).endswith(
            "Directly output the item SID after thinking.<|im_end|>\n<|im_start|>assistant\n"))

    def test_both_modes_only_return_catalog_sids(self):
        samples = self.data.split("test")[:6]
        valid = set(self.data.catalog.sid_strings())
        for mode in evaluate.MODES:
            out = evaluate.evaluate_model(self.model, self.tokenizer, self.data.catalog, samples,
                                          mode, beam=5, batch_size=4, max_reasoning_tokens=8)
            self.assertEqual(out.metrics["invalid_rate"], 0.0)
            for record in out.predictions:
                self.assertLen(record["top_sids"], 5)
                self.assertLen(set(record["top_sids"]), 5)
                self.assertTrue(set(record["top_sids"]) <= valid)
                self.assertEqual(record["scores"], sorted(record["scores"], reverse=True))
                self.assertIn('"', record["top_rendered"][0])  # Rendered with titles.
            ranks = ranking_metrics([r["top_sids"] for r in out.predictions],
                                    [r["target_sid"] for r in out.predictions], (1, 3, 5))
            self.assertEqual(ranks["hr@5"], out.metrics["hr@5"])
        self.assertGreater(out.metrics["mean_reasoning_tokens"], 0)
        self.assertLessEqual(out.metrics["mean_reasoning_tokens"], 8)

    def test_sigterm_mid_evaluation_saves_chunks_and_resumes_to_the_same_result(self):
        samples = self.data.split("test")[:10]
        calls, signalled = [], []

        def run(rows):
            calls.append(len(rows))
            if len(calls) == 2 and not signalled:  # SIGTERM during the second chunk.
                signalled.append(True)
                os.kill(os.getpid(), signal.SIGTERM)
            return evaluate.evaluate_model(self.model, self.tokenizer, self.data.catalog, rows,
                                           "thinking", beam=5, batch_size=4,
                                           max_reasoning_tokens=4)

        out_dir = self.create_tempdir().full_path
        settings = {"beam": 5, "model": "m"}
        with self.assertRaisesRegex(eval_stage.EvaluationInterrupted,
                                    "after 8 of 10 rows; progress saved in .*partial_m.jsonl"):
            eval_stage._evaluate_in_chunks("m", settings, out_dir, run, samples, 4)
        with open(os.path.join(out_dir, "partial_m.jsonl")) as f:
            self.assertLen(f.readlines(), 1 + 8)
        calls.clear()
        resumed = eval_stage._evaluate_in_chunks("m", settings, out_dir, run, samples, 4)
        self.assertEqual(calls, [2])  # Only the rows not saved yet.
        once = evaluate.evaluate_model(self.model, self.tokenizer, self.data.catalog, samples,
                                       "thinking", beam=5, batch_size=4, max_reasoning_tokens=4)
        self.assertEqual([r["top_sids"] for r in resumed.predictions],
                         [r["top_sids"] for r in once.predictions])
        for key in ("hr@1", "hr@5", "ndcg@5", "mean_reasoning_tokens", "examples"):
            self.assertEqual(resumed.metrics[key], once.metrics[key], key)
        calls.clear()  # Other settings: the saved rows are not reused.
        eval_stage._evaluate_in_chunks("m", {"beam": 3}, out_dir, run, samples, 4)
        self.assertEqual(calls, [4, 4, 2])

    def test_baselines_by_sid_string(self):
        catalog = self.data.catalog
        train, test = self.data.split("train"), self.data.split("test")
        preds = evaluate.baseline_sid_predictions("popularity", catalog, train, test, k=10)
        self.assertTrue(all(len(p) == 10 and len(set(p)) == 10 for p in preds))
        counts = np.bincount([s.target for s in train], minlength=len(catalog))
        self.assertEqual(preds[0][0], catalog.sid_string(int(np.argmax(counts))))
        self.assertTrue(all(p == preds[0] for p in preds))
        metrics = evaluate.baseline_metrics(catalog, train, test)
        self.assertEqual(set(metrics), {"popularity", "random", "transition", "last_item"})
        self.assertGreater(metrics["transition"]["hr@10"], metrics["popularity"]["hr@10"])
        counter = evaluate.baseline_sid_predictions("transition", catalog, train, test, k=10)
        self.assertTrue(all(len(p) == 10 and len(set(p)) == 10 for p in counter))
        with self.assertRaisesRegex(ValueError, "Unknown baseline"):
            evaluate.baseline_sid_predictions("oracle", catalog, train, test)
        with self.assertRaisesRegex(ValueError, "mode"):
            evaluate.evaluate_model(self.model, self.tokenizer, catalog, test, "cot")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    absltest.main()
