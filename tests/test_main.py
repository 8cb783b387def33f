"""The command line: config overrides, errors a user sees, default workdir."""

import os
import subprocess
import sys

from absl.testing import absltest
from ml_collections import ConfigDict

from sidjax import main as main_lib
from sidjax import stages
from sidjax.config_files import load_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


def run_main(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "sidjax.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


class CommandLineTest(absltest.TestCase):

    def test_unknown_override_fails_naming_the_field(self):
        proc = run_main("--config=configs/toy.py:tiny", "--config.no_such_field=1",
                        f"--workdir={self.create_tempdir().full_path}")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("no_such_field", proc.stderr)

    def test_unknown_variant_fails_naming_it(self):
        proc = run_main("--config=configs/toy.py:huge")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("no variant 'huge'", proc.stderr)

    def test_override_reaches_the_run(self):
        workdir = self.create_tempdir().full_path
        proc = run_main("--config=configs/toy.py:tiny", f"--workdir={workdir}",
                        "--config.train.num_steps=3", "--config.log.every_steps=1")
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertIn("process 0 of 1; local devices", proc.stderr)
        self.assertEqual(sorted(os.listdir(os.path.join(workdir, "ckpt"))), ["3"])

    def test_default_workdir(self):
        self.assertEqual(main_lib.default_workdir("configs/toy.py:tiny", ConfigDict({"name": ""})),
                         os.path.join("workdir", "toy_tiny"))
        self.assertEqual(main_lib.default_workdir("configs/toy.py", ConfigDict({"name": ""})),
                         os.path.join("workdir", "toy"))
        self.assertEqual(main_lib.default_workdir("x.py", ConfigDict({"name": "run1"})),
                         os.path.join("workdir", "run1"))


class ClusterDetectionTest(absltest.TestCase):

    def test_in_cluster(self):
        from unittest import mock

        cases = [({}, False), ({"SLURM_NTASKS": "1"}, False), ({"SLURM_NTASKS": "4"}, True),
                 ({"TPU_WORKER_HOSTNAMES": "t1"}, False), ({"TPU_WORKER_HOSTNAMES": "t1,t2"}, True),
                 ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True)]
        for env, expected in cases:
            with mock.patch.dict(os.environ, env, clear=True):
                self.assertEqual(main_lib._in_cluster(), expected, env)


class LibraryApiTest(absltest.TestCase):

    def test_load_config_with_overrides(self):
        config = load_config(os.path.join(REPO, "configs/toy.py:tiny"), {"optim.lr": 0.5})
        self.assertEqual(config.optim.lr, 0.5)
        self.assertEqual(config.stage, "toy_regression")
        with self.assertRaisesRegex(KeyError, "optim.nope"):
            load_config(os.path.join(REPO, "configs/toy.py"), {"optim.nope": 1})

    def test_cpu_recipe_and_paper_settings(self):
        """The from-scratch CPU recipe changes scoring and the stage-1 mixture; the paper
        variant keeps the method's (full-vocabulary scores, unweighted tasks)."""
        for variant, share in (("", 0.2), ("tiny", 0.3), ("industrial_cpu", 0.3)):
            config = load_config(os.path.join(REPO, f"configs/grpo.py:{variant}"))
            self.assertTrue(config.evaluation.renormalize, variant)
            self.assertEqual(config.sft.item_fact_share, share, variant)
            self.assertEqual(config.pipeline.stage1.eval.metric, "valid/hr@10", variant)
        paper = load_config(os.path.join(REPO, "configs/grpo.py:industrial"))
        self.assertFalse(paper.evaluation.renormalize)
        self.assertEqual(paper.sft.item_fact_share, 0.0)
        self.assertEqual(paper.pipeline.stage1.eval.metric, "valid/sid_loss")

    def test_unknown_stage_lists_known_ones(self):
        with self.assertRaisesRegex(ValueError, "config.stage='nope'.*toy_regression"):
            stages.get_stage("nope")


if __name__ == "__main__":
    absltest.main()
