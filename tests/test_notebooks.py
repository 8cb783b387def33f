"""The Colab notebooks run top to bottom on this CPU, and are committed clean.

Each notebook is executed by nbclient in a fresh kernel (any cell error fails the test with
the cell's traceback). paper_scale runs here with SIDJAX_NOTEBOOK_QUICK=1 (a few steps on a
few rows) and a tiny local checkpoint; quickstart runs in tests/test_pipeline.py on the tiny
pipeline that test has just trained, so the suite pays for that pipeline once.
"""

import json
import os
import subprocess
import sys

from absl.testing import absltest

from tests.notebook_runner import NOTEBOOKS, REPO, execute, outputs_text


class CommittedNotebooksTest(absltest.TestCase):

    def test_committed_without_outputs(self):
        names = sorted(n for n in os.listdir(NOTEBOOKS) if n.endswith(".ipynb"))
        self.assertEqual(names, ["paper_scale.ipynb", "quickstart.ipynb"])
        for name in names:
            with open(os.path.join(NOTEBOOKS, name)) as f:
                notebook = json.load(f)
            for n, cell in enumerate(notebook["cells"]):
                if cell["cell_type"] == "code":
                    self.assertEqual(cell["outputs"], [], f"{name} cell {n} has outputs")
                    self.assertIsNone(cell["execution_count"], f"{name} cell {n}")


class PaperScaleTest(absltest.TestCase):

    def _tiny_checkpoint(self, path: str) -> None:
        """A tiny from-scratch Qwen3 saved as a Hugging Face directory (no download)."""
        import jax

        from sidjax.model.config import get_preset
        from sidjax.model.hf import save_hf_model
        from sidjax.model.model import Model, init_params
        from sidjax.model.tokenizer import train_tokenizer

        tokenizer = train_tokenizer(["Nitrile gloves, safety goggles and a digital caliper. "
                                     "Can you predict the next possible item?"] * 20, 400)
        config = get_preset("tiny", vocab_size=448, eos_token_id=tokenizer.eos_token_id)
        save_hf_model(Model(config, init_params(config, jax.random.PRNGKey(0))), path)
        tokenizer.save_pretrained(path)

    def test_runs_top_to_bottom_on_a_cpu(self):
        root = self.create_tempdir().full_path
        checkpoint = os.path.join(root, "checkpoint")
        self._tiny_checkpoint(checkpoint)
        data_dir = os.path.join(os.path.dirname(REPO), "shared", "data", "amazon18")
        env = {"SIDJAX_NOTEBOOK_QUICK": "1", "SIDJAX_NOTEBOOK_WORKDIR": os.path.join(root, "run"),
               "SIDJAX_SOURCE": REPO, "SIDJAX_HF_PATH": checkpoint, "SIDJAX_ALLOW_CPU": "1",
               "SIDJAX_DATA_DIR": data_dir}
        has_data = os.path.isdir(data_dir)
        if has_data:  # The train split is not shipped; derive the partial one, as the README.
            train = os.path.join(root, "train.csv")
            subprocess.run([sys.executable, os.path.join(data_dir, "derive_train.py"), data_dir,
                            "Industrial_and_Scientific", train], check=True,
                           capture_output=True)
            env["SIDJAX_TRAIN_PATH"] = train
        text = outputs_text(execute("paper_scale.ipynb", env))
        self.assertIn("found the CPU backend", text)
        for piece in ("sft: mesh", "grpo: mesh", "params", "mesh axes"):
            self.assertIn(piece, text)
        if has_data:
            self.assertIn("3,686 items", text)
            self.assertIn("transition  valid HR@10", text)
            self.assertTrue(os.path.isdir(os.path.join(root, "run", "sft", "export")))
            for piece in ("| popularity |", "| stage1 |"):
                self.assertIn(piece, text)
        else:
            self.assertIn("Skipped stage 1: no dataset", text)

    def test_skips_what_it_cannot_run_with_a_reason(self):
        env = {"SIDJAX_NOTEBOOK_QUICK": "1", "SIDJAX_SOURCE": REPO, "SIDJAX_HF_PATH": "",
               "SIDJAX_DATA_DIR": "/nonexistent", "SIDJAX_ALLOW_CPU": "0",
               "SIDJAX_NOTEBOOK_WORKDIR": self.create_tempdir().full_path}
        text = outputs_text(execute("paper_scale.ipynb", env))
        self.assertIn("qwen3-1.7b sft: mesh", text)  # The planner runs without weights.
        self.assertIn("Skipped: no dataset at DATA_DIR='/nonexistent'", text)
        self.assertIn("Skipped stage 1: no checkpoint at HF_PATH=''", text)
        self.assertIn("no TPU or GPU here", text)
        self.assertIn("Skipped evaluation", text)


if __name__ == "__main__":
    absltest.main()
