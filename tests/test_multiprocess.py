"""Two real processes x 4 CPU devices (jax.distributed over 127.0.0.1, gloo collectives) run
short SFT and GRPO stages; they must match one process x 8 devices, and their checkpoints
must restore in one process on a different mesh."""

import json
import os
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
from absl.testing import absltest
from flax.traverse_util import flatten_dict

from sidjax.config_files import load_config
from sidjax.model.model import init_params
from sidjax.model.sharding import PARTITION_RULES
from sidjax.rl.rollout import grpo_loss_fn
from sidjax.sft.stage import load_export
from sidjax.sid.stage import sid_dataset
from sidjax.train import mesh as mesh_lib
from sidjax.train.trainer import Task, Trainer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
LAUNCH = os.path.join(REPO, "launch", "local_multiprocess.sh")
CONFIG = "configs/grpo.py:tiny"
OVERRIDES = {
    "sid.method": "rqkmeans",  # SIDs are built once, below; k-means keeps that quick.
    "mesh.shape.data": 1, "mesh.shape.fsdp": 8,  # Params split across both processes.
    "log.every_steps": 1, "log.progress": False, "log.tensorboard": False,
    "pipeline.stages": "sft,grpo,eval",
    "pipeline.stage1.train.num_steps": 6, "pipeline.stage1.eval.every_steps": 3,
    # Valid HR by beam search runs in one process only; select by the valid SID loss here.
    "pipeline.stage1.sft.hr_eval_examples": 0, "pipeline.stage1.eval.metric": "valid/sid_loss",
    "pipeline.stage1.eval.mode": "min",
    "grpo.steps": 2, "grpo.eval_every": 2,
    # A barely trained policy never earns the SID reward; the overlong penalty (most of its
    # responses run to the 64-token budget, some stop earlier) gives groups real advantages.
    "grpo.rewards.overlong": 1.0,
}


def _flags(workdir, extra=None):
    overrides = dict(OVERRIDES, **{"grpo.init_from": os.path.join(workdir, "sft", "export")},
                     **(extra or {}))
    return [f"--config={CONFIG}", f"--workdir={workdir}"] + [
        f"--config.{k}={v}" for k, v in overrides.items()]


def _metrics(workdir, stage, key):
    with open(os.path.join(workdir, stage, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return np.asarray([r[key] for r in rows if key in r])


class TwoProcessTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = os.path.join(absltest.get_default_test_tmpdir(), "multiprocess")
        shutil.rmtree(cls.root, ignore_errors=True)
        base = os.path.join(cls.root, "base")
        config = load_config(CONFIG, {"sid.method": "rqkmeans"})
        sid_dataset(config, base)  # Shared by every run: the runs differ only in processes.
        cls.one, cls.two = os.path.join(cls.root, "one"), os.path.join(cls.root, "two")
        for workdir in (cls.one, cls.two):
            shutil.copytree(base, workdir)
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS="--xla_force_host_platform_device_count=8")
        cls.one_run = subprocess.run([sys.executable, "-m", "sidjax.main", *_flags(cls.one)],
                                     cwd=REPO, env=env, capture_output=True, text=True,
                                     timeout=900)
        start = time.time()
        cls.two_run = subprocess.run(["bash", LAUNCH, "-n", "2", "-d", "4", "--",
                                      *_flags(cls.two)], cwd=REPO, capture_output=True,
                                     text=True, timeout=900)
        cls.two_seconds = time.time() - start

    def _check_ran(self):
        self.assertEqual(self.one_run.returncode, 0, self.one_run.stderr[-3000:])
        logs = ""
        for p in range(2):
            path = os.path.join(self.two, "logs", f"process_{p}.log")
            if os.path.exists(path):
                logs += open(path).read()[-3000:]
        self.assertEqual(self.two_run.returncode, 0, self.two_run.stderr + logs)

    def test_sft_losses_match_one_process(self):
        self._check_ran()
        print(f"two-process SFT + GRPO run: {self.two_seconds:.0f}s")
        for key in ("train/loss", "eval/valid/sid_loss"):
            one, two = _metrics(self.one, "sft", key), _metrics(self.two, "sft", key)
            self.assertLen(two, 6 if key == "train/loss" else 2)
            np.testing.assert_allclose(two, one, rtol=1e-4, err_msg=key)

    def test_grpo_losses_and_rollouts_match_one_process(self):
        self._check_ran()
        for key in ("train/loss", "train/kl", "train/grad_norm", "eval/val/reward"):
            one, two = _metrics(self.one, "grpo", key), _metrics(self.two, "grpo", key)
            self.assertLen(two, 1 if key.startswith("eval") else 2)
            np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-7, err_msg=key)
        self.assertGreater(_metrics(self.two, "grpo", "train/grad_norm")[0], 0)  # Real signal.
        self.assertGreater(_metrics(self.two, "grpo", "train/kl")[1], 0)
        rollouts = [[json.loads(line) for line in open(os.path.join(w, "grpo", "rollouts.jsonl"))]
                    for w in (self.one, self.two)]
        # logp_gap is None where no pass of the sampling params ran (on-policy, after the
        # first rollout): NaN here, equal on both sides.
        for key in ("reward_mean", "response_len", "logp_gap"):
            np.testing.assert_allclose(np.asarray([r[key] for r in rollouts[1]], float),
                                       np.asarray([r[key] for r in rollouts[0]], float),
                                       rtol=1e-4, atol=1e-6)
        self.assertIsNotNone(rollouts[1][0]["logp_gap"])

    def test_evaluation_shards_and_gathers_every_example(self):
        self._check_ran()
        results = [json.load(open(os.path.join(w, "eval", "results.json")))["entries"]
                   for w in (self.one, self.two)]
        self.assertEqual([e["label"] for e in results[1]], [e["label"] for e in results[0]])
        self.assertIn("stage3", [e["label"] for e in results[1]])
        for one, two in zip(*results):
            self.assertEqual(two["metrics"]["examples"], 32)
            for key in ("hr@10", "ndcg@10"):  # Params agree to ~1e-6: at most a near-tie flips.
                self.assertAlmostEqual(two["metrics"][key], one["metrics"][key], delta=1 / 32)
        for label in ("stage1", "stage3"):
            rows = [[json.loads(line) for line in open(os.path.join(w, "eval",
                                                                    f"predictions_{label}.jsonl"))]
                    for w in (self.one, self.two)]
            self.assertEqual([r["target_sid"] for r in rows[1]],
                             [r["target_sid"] for r in rows[0]])

    def test_only_process_zero_writes_side_files(self):
        self._check_ran()
        for path in ("sft/summary.json", "sft/export/config.json", "sft/export/tokenizer.json",
                     "grpo/summary.json", "grpo/export/model.safetensors", "teacher"):
            self.assertTrue(os.path.exists(os.path.join(self.two, path)), path)
        # One line per rollout: process 1 logs nothing.
        lines = open(os.path.join(self.two, "grpo", "rollouts.jsonl")).read().splitlines()
        self.assertLen(lines, 2)
        self.assertLen(open(os.path.join(self.two, "sft", "metrics.jsonl")).read().splitlines(),
                       len(open(os.path.join(self.one, "sft", "metrics.jsonl"))
                           .read().splitlines()))

    def test_two_process_checkpoint_restores_on_another_mesh(self):
        self._check_ran()
        config = load_config(CONFIG, dict(OVERRIDES))
        model, _ = load_export(os.path.join(self.two, "grpo", "export"))
        mc = model.config
        run = config.copy_and_resolve_references()
        run.train.num_steps = 2
        run.train.batch_size = 16
        mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
        task = Task(init_params=lambda rng: init_params(mc, rng),
                    loss_fn=grpo_loss_fn(mc, config.grpo), partition_rules=PARTITION_RULES)
        trainer = Trainer(run, os.path.join(self.two, "grpo"), task, mesh=mesh)
        state = trainer.init_or_restore()
        trainer.close()
        self.assertEqual(int(state.step), 2)
        embed = state.params["embed"]["embedding"]
        self.assertEqual(embed.sharding.mesh.shape, mesh.shape)
        restored = flatten_dict(jax.device_get(state.params))
        exported = flatten_dict(jax.device_get(model.params))
        self.assertEqual(set(restored), set(exported))
        for key, value in exported.items():  # The export was written from the same params.
            np.testing.assert_array_equal(restored[key], value, err_msg="/".join(key))
        mu = jax.tree.leaves(state.opt_state)
        self.assertTrue(any(np.abs(np.asarray(x)).sum() > 0 for x in mu if np.ndim(x) > 1))

    def test_rollouts_must_split_over_processes(self):
        self._check_ran()
        workdir = os.path.join(self.root, "uneven")
        shutil.copytree(self.two, workdir, ignore=shutil.ignore_patterns("grpo", "logs"))
        proc = subprocess.run(["bash", LAUNCH, "-n", "2", "-d", "4", "--",
                               *_flags(workdir, {"pipeline.stages": "grpo",
                                                 "grpo.prompts_per_step": 3})],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        self.assertNotEqual(proc.returncode, 0)
        log = open(os.path.join(workdir, "logs", "process_0.log")).read()
        self.assertIn("config.grpo.prompts_per_step=3 does not split over 2 processes", log)


if __name__ == "__main__":
    absltest.main()
