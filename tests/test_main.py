"""The command line: config overrides, errors a user sees, default workdir."""

import json
import os
import subprocess
import sys

from absl.testing import absltest
from ml_collections import ConfigDict

from sidjax import main as main_lib
from sidjax import stages
from sidjax.config_checks import ConfigError
from sidjax.config_files import config_names, load_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


def run_main(*args, cwd=REPO):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "sidjax.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


class CommandLineTest(absltest.TestCase):

    def assertOneLineError(self, proc, *parts):
        self.assertEqual(proc.returncode, main_lib.USER_ERROR_EXIT_CODE, proc.stderr[-2000:])
        lines = proc.stderr.strip().splitlines()
        self.assertLen(lines, 1, proc.stderr[-2000:])
        self.assertTrue(lines[0].startswith("sidjax: error: "), lines[0])
        for part in parts:
            self.assertIn(part, lines[0])

    def test_mistyped_override_is_one_line_naming_the_closest_field(self):
        proc = run_main("--config=configs/grpo.py", "--config.optim.lrr=1",
                        f"--workdir={self.create_tempdir().full_path}")
        self.assertOneLineError(proc, "no field 'optim.lrr'", "did you mean 'optim.lr'?")
        proc = run_main("--config=configs/toy.py:tiny", "--config.no_such_field=1")
        self.assertOneLineError(proc, "no field 'no_such_field'", "fields:", "optim")
        proc = run_main("--config=configs/toy.py:tiny", "--config.toy.hidden=abc")
        self.assertOneLineError(proc, "--config.toy.hidden=abc")

    def test_missing_file_and_variant_are_one_line(self):
        self.assertOneLineError(run_main("--config=configs/toy.py:huge"), "no variant 'huge'",
                                "its variants: tiny")
        self.assertOneLineError(run_main("--config=configs/nope.py"),
                                "'configs/nope.py' does not exist", "configs/grpo.py")
        self.assertOneLineError(run_main(), "--config is required")

    def test_help_lists_configs_and_variants(self):
        proc = run_main("--help")
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        for name in ("configs/grpo.py", "configs/toy.py", "configs/plan.py",
                     "tiny, industrial, industrial_cpu", "--workdir"):
            self.assertIn(name, proc.stdout)

    def test_packaged_config_from_another_directory_and_a_quiet_console(self):
        elsewhere = self.create_tempdir().full_path
        workdir = os.path.join(elsewhere, "run")
        proc = run_main("--config=configs/toy.py:tiny", f"--workdir={workdir}",
                        "--config.train.num_steps=3", cwd=elsewhere)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        with open(os.path.join(workdir, "config.json")) as f:
            self.assertEqual(json.load(f)["train"]["num_steps"], 3)
        self.assertIn("config.json", proc.stderr)
        self.assertNotIn("libtpu", proc.stderr)
        self.assertNotIn("num_examples:", proc.stderr)  # No config dump on the console.
        self.assertIn("Compiling the train step", proc.stderr)
        self.assertLess(len(proc.stderr.splitlines()), 20, proc.stderr)

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
        with self.assertRaisesRegex(ConfigError, "optim.nope"):
            load_config(os.path.join(REPO, "configs/toy.py"), {"optim.nope": 1})

    def test_load_config_finds_the_packaged_configs_from_anywhere(self):
        here = os.getcwd()
        os.chdir(self.create_tempdir().full_path)
        try:
            for spec in ("toy.py:tiny", "configs/toy.py:tiny"):
                self.assertEqual(load_config(spec).stage, "toy_regression")
            with self.assertRaisesRegex(ConfigError, "'elsewhere/toy.py' does not exist"):
                load_config("elsewhere/toy.py")
        finally:
            os.chdir(here)
        self.assertIn("grpo.py", config_names())

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
