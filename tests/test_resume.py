"""Kill a training process, rerun the same command, and end bitwise where an uninterrupted run ends."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl.testing import absltest

from sidjax.train import checkpoint as ckpt_lib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
NUM_STEPS = 1500
CKPT_EVERY = 100


def command(workdir):
    return [
        sys.executable, "-m", "sidjax.main", "--config=configs/toy.py:tiny", f"--workdir={workdir}",
        f"--config.train.num_steps={NUM_STEPS}", f"--config.ckpt.every_steps={CKPT_EVERY}",
        "--config.eval.every_steps=0", "--config.log.every_steps=100",
        "--config.log.progress=False", "--config.mesh.shape.fsdp=2",
    ]


def env():
    e = dict(os.environ)
    e["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    e["JAX_PLATFORMS"] = "cpu"
    return e


def run(workdir):
    proc = subprocess.run(command(workdir), cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=600)
    return proc


def start_and_signal(workdir, sig):
    """Starts training, sends `sig` once the first checkpoint is on disk, returns the process."""
    proc = subprocess.Popen(command(workdir), cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    first = os.path.join(workdir, "ckpt", str(CKPT_EVERY))
    deadline = time.time() + 300
    while not os.path.isdir(first):
        if proc.poll() is not None or time.time() > deadline:
            raise AssertionError("training ended before its first checkpoint:\n" +
                                 proc.stdout.read())
        time.sleep(0.005)
    os.kill(proc.pid, sig)
    output, _ = proc.communicate(timeout=300)
    return proc.returncode, output


def final_params(workdir):
    return ckpt_lib.load_params(os.path.join(workdir, "ckpt"))


class ResumeTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.reference_dir = tempfile.mkdtemp(prefix="uninterrupted_")
        proc = run(cls.reference_dir)
        assert proc.returncode == 0, proc.stderr[-3000:]
        cls.reference = final_params(cls.reference_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.reference_dir, ignore_errors=True)
        super().tearDownClass()

    def assert_bitwise_equal_to_reference(self, workdir):
        got = final_params(workdir)
        self.assertEqual(sorted(got), sorted(self.reference))
        for name in got:
            np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(self.reference[name]),
                                          err_msg=name)

    def test_sigkill_then_rerun_ends_bitwise_equal(self):
        workdir = self.create_tempdir().full_path
        code, output = start_and_signal(workdir, signal.SIGKILL)
        self.assertEqual(code, -signal.SIGKILL, output[-2000:])
        steps = sorted(int(d) for d in os.listdir(os.path.join(workdir, "ckpt")) if d.isdigit())
        self.assertLess(max(steps), NUM_STEPS, "the run finished before it was killed")
        proc = run(workdir)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        resumed_at = int(proc.stderr.split("Resumed from ")[1].split(" step ")[1].split(".")[0])
        self.assertBetween(resumed_at, CKPT_EVERY, NUM_STEPS - 1)
        self.assert_bitwise_equal_to_reference(workdir)

    def test_sigterm_saves_exits_143_and_resumes_bitwise_equal(self):
        workdir = self.create_tempdir().full_path
        code, output = start_and_signal(workdir, signal.SIGTERM)
        self.assertEqual(code, 143, output[-3000:])
        self.assertIn("Preempted (SIGTERM) at step", output)
        stopped_at = int(output.split("Preempted (SIGTERM) at step ")[1].split(";")[0])
        self.assertTrue(os.path.isdir(os.path.join(workdir, "ckpt", str(stopped_at))))
        proc = run(workdir)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertIn(f"step {stopped_at}.", proc.stderr.split("Resumed from ")[1])
        self.assert_bitwise_equal_to_reference(workdir)


if __name__ == "__main__":
    absltest.main()
