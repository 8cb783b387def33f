"""The one-command pipeline (`configs/grpo.py:tiny`) end to end, then a rerun that skips every
finished stage."""

import json
import os

from absl.testing import absltest

from sidjax.config_files import load_config
from sidjax.pipeline import run
from tests.notebook_runner import REPO, execute, outputs_text

OVERRIDES = {"log.progress": False, "log.tensorboard": False}  # The tiny variant as is.
OUTPUTS = ("sid/sid_report.json", "teacher", "sasrec/summary.json", "sft/export/config.json",
           "sft/summary.json",
           "reason/export/model.safetensors", "reason/summary.json", "grpo/summary.json",
           "grpo/rollouts.jsonl", "grpo/grpo_curves.png", "grpo/export/tokenizer.json",
           "eval/results.json", "eval/results.md", "eval/predictions_stage3.jsonl",
           "results.md")


class PipelineTest(absltest.TestCase):

    def test_tiny_pipeline_then_cached_rerun(self):
        workdir = self.create_tempdir().full_path
        config = load_config("configs/grpo.py:tiny", OVERRIDES)
        out = run.train_and_evaluate(config, workdir)
        for path in OUTPUTS:
            self.assertTrue(os.path.exists(os.path.join(workdir, path)), path)
        with open(os.path.join(workdir, "eval", "results.json")) as f:
            labels = [e["label"] for e in json.load(f)["entries"]]
        self.assertEqual(labels, ["popularity", "random", "transition", "last_item", "sasrec",
                                  "stage1", "stage2", "stage3"])
        for label in ("popularity", "transition counter", "| sasrec |",
                      "after stage 1 (non-thinking)", "after stage 2 (thinking)",
                      "after stage 3 / GRPO (thinking)", "Example reasoning traces"):
            self.assertIn(label, out["report"])
        with open(os.path.join(workdir, "grpo", "rollouts.jsonl")) as f:
            rollouts = [json.loads(line) for line in f]
        self.assertLen(rollouts, 4)
        # The mechanics a smoke run must show: GRPO groups whose rewards differ, reasoning
        # that is text and ends before the token budget, predictions that depend on the user.
        self.assertLess(min(r["zero_adv_groups"] for r in rollouts), 1.0)
        with open(os.path.join(workdir, "eval", "predictions_stage3.jsonl")) as f:
            predictions = [json.loads(line) for line in f]
        ended = [p for p in predictions if "Recent items:" in p["reasoning"]]
        self.assertGreater(len(ended), len(predictions) // 2)
        self.assertGreater(len({p["top_sids"][0] for p in predictions}), 3)
        stamps = {p: os.path.getmtime(os.path.join(workdir, p)) for p in OUTPUTS}
        again = run.train_and_evaluate(load_config("configs/grpo.py:tiny", OVERRIDES), workdir)
        self.assertEqual(again["report"], out["report"])
        for path in OUTPUTS:
            if path not in ("eval/results.json", "eval/results.md", "results.md"):
                self.assertEqual(os.path.getmtime(os.path.join(workdir, path)), stamps[path], path)
        with open(os.path.join(workdir, "grpo", "rollouts.jsonl")) as f:
            self.assertLen(f.readlines(), 4)  # GRPO did not run again.
        self._quickstart_notebook_runs_on(workdir)
        # A setting that changes the numbers (here the beam) evaluates the models again
        # instead of reusing the cached entries.
        run.train_and_evaluate(load_config("configs/grpo.py:tiny", {
            **OVERRIDES, "pipeline.stages": "eval", "evaluation.beam": 5}), workdir)
        with open(os.path.join(workdir, "eval", "results.json")) as f:
            entries = {e["label"]: e for e in json.load(f)["entries"]}
        for label in ("stage1", "stage2", "stage3"):
            self.assertEqual(entries[label]["settings"]["beam"], 5, label)
            metrics = entries[label]["metrics"]
            self.assertEqual(metrics["hr@10"], metrics["hr@5"], label)  # Five beams only.

    def _quickstart_notebook_runs_on(self, workdir: str) -> None:
        """notebooks/quickstart.ipynb top to bottom in a fresh kernel, on this workdir: its
        pipeline cell (the tiny variant as shipped) finds every stage finished, and every
        other cell (table, plots, traces, the interactive beam search, the transformers
        reload) runs for real."""
        notebook = execute("quickstart.ipynb", {"SIDJAX_NOTEBOOK_WORKDIR": workdir,
                                                "SIDJAX_NOTEBOOK_QUICK": "0",
                                                "SIDJAX_SOURCE": REPO})
        text = outputs_text(notebook)
        self.assertIn("found the CPU backend", text)
        for piece in ("| popularity |", "| sasrec |", "after stage 3", "### Test row 1",
                      "**Reasoning**:", "| rank | SID | item | score | the true next item? |",
                      "model.safetensors", "max |logit difference|"):
            self.assertIn(piece, text)
        self.assertRegex(text, r"<[a-d]_\d+><[a-d]_\d+><[a-d]_\d+> \[[^]]+\]")  # SID [title]
        images = [out for cell in notebook.cells for out in cell.get("outputs", [])
                  if "image/png" in out.get("data", {})]
        # SID code usage, SFT curves, GRPO curves (a count only: a failure must not print PNGs).
        self.assertEqual(len(images), 3)


if __name__ == "__main__":
    absltest.main()
