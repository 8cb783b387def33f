"""Guards around a run: config values checked up front, one run per workdir, and expected
errors printed as one line by the command line (issue 18)."""

import json
import os
import socket
import subprocess
import sys

from absl.testing import absltest

from sidjax import stages
from sidjax.config_checks import ConfigError, check_config
from sidjax.config_files import load_config
from sidjax.train import workdir_lock as lock_lib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


def run_main(*args, env=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
    return subprocess.run([sys.executable, "-m", "sidjax.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


class ConfigCheckTest(absltest.TestCase):

    def test_every_shipped_config_passes(self):
        for spec in ("configs/grpo.py", "configs/grpo.py:tiny", "configs/grpo.py:industrial",
                     "configs/grpo.py:industrial_cpu", "configs/sft.py", "configs/reason.py",
                     "configs/eval.py", "configs/sasrec.py", "configs/toy.py:tiny",
                     "configs/rqvae.py", "configs/data.py", "configs/plan.py"):
            check_config(load_config(spec))

    def test_bad_values_name_the_field(self):
        cases = {"train.batch_size": -32, "grpo.prompts_per_step": -4, "grpo.group_size": 1,
                 "evaluation.beam": 0, "pipeline.stage1.train.batch_size": 0}
        for field, value in cases.items():
            config = load_config("configs/grpo.py:tiny", {field: value})
            with self.assertRaisesRegex(ConfigError, f"config.{field}={value}: .*--config.{field}"):
                check_config(config)

    def test_a_value_outside_its_choices_names_them(self):
        config = load_config("configs/grpo.py:tiny", {"model.tokenizer_kind": "wordpiece"})
        with self.assertRaisesRegex(ConfigError, "config.model.tokenizer_kind='wordpiece' is not "
                                                 "one of .*bpe.*sentencepiece"):
            check_config(config)
        check_config(load_config("configs/grpo.py:tiny",
                                 {"model.tokenizer_kind": "sentencepiece"}))
        config = load_config("configs/grpo.py:tiny", {"model.sid_init": "codebook"})
        with self.assertRaisesRegex(ConfigError, "config.model.sid_init='codebook' is not one "
                                                 "of .*noise.*items"):
            check_config(config)

    def test_group_of_one_is_refused_before_any_work(self):
        workdir = self.create_tempdir().full_path
        config = load_config("configs/grpo.py:tiny", {"grpo.group_size": 1})
        with self.assertRaisesRegex(ConfigError, "group_size=1.*cannot learn"):
            stages.train_and_evaluate(config, workdir)
        self.assertEqual(os.listdir(workdir), [])  # Nothing written, no lock left behind.


class WorkdirLockTest(absltest.TestCase):

    def test_second_holder_is_refused_naming_the_first(self):
        workdir = self.create_tempdir().full_path
        path = os.path.join(workdir, lock_lib.LOCK_NAME)
        with open(path, "w") as f:  # A live holder: this test's parent process.
            json.dump({"host": socket.gethostname(), "pid": os.getppid(), "started": "t0"}, f)
        with self.assertRaisesRegex(lock_lib.WorkdirLocked, f"process {os.getppid()} on"):
            lock_lib.acquire(workdir)
        self.assertTrue(os.path.exists(path))  # The holder's lock is untouched.

    def test_stale_lock_is_taken_over_and_released(self):
        workdir = self.create_tempdir().full_path
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout.strip()
        path = os.path.join(workdir, lock_lib.LOCK_NAME)
        with open(path, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": int(dead), "started": "t0"}, f)
        with self.assertLogs(level="WARNING") as logs:
            with lock_lib.workdir_lock(workdir):
                with open(path) as f:
                    self.assertEqual(json.load(f)["pid"], os.getpid())
                with lock_lib.workdir_lock(workdir):  # Re-entrant (pipeline -> stage).
                    pass
                self.assertTrue(os.path.exists(path))
        self.assertFalse(os.path.exists(path))
        self.assertIn("stale lock", "".join(logs.output))

    def test_unwritable_workdir_is_one_clear_error(self):
        parent = self.create_tempdir().full_path
        not_a_dir = os.path.join(parent, "file")
        open(not_a_dir, "w").close()
        with self.assertRaisesRegex(lock_lib.WorkdirError, f"Workdir {not_a_dir}/run cannot "
                                                           "be written .*writable --workdir"):
            lock_lib.acquire(os.path.join(not_a_dir, "run"))


class CommandLineErrorTest(absltest.TestCase):

    def test_locked_workdir_and_bad_value_are_one_line_without_traceback(self):
        workdir = self.create_tempdir().full_path
        with open(os.path.join(workdir, lock_lib.LOCK_NAME), "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": "t0"}, f)
        proc = run_main("--config=configs/toy.py:tiny", f"--workdir={workdir}")
        self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
        self.assertIn(f"sidjax: error: Workdir {workdir} is in use by process {os.getpid()}",
                      proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        proc = run_main("--config=configs/toy.py:tiny", "--config.train.batch_size=-32",
                        f"--workdir={self.create_tempdir().full_path}")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("sidjax: error: config.train.batch_size=-32", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        proc = run_main("--config=configs/toy.py:tiny", "--config.train.batch_size=-32",
                        f"--workdir={self.create_tempdir().full_path}", "--verbose")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("Traceback", proc.stderr)


if __name__ == "__main__":
    absltest.main()


class FailedSaveCommandLineTest(absltest.TestCase):

    def test_disk_fault_mid_run_is_one_line_and_a_prompt_exit(self):
        """The checkpoint directory becomes a file after the first save (a real OSError even
        for root): the run stops with one line, and the process exits at once instead of
        waiting five minutes in orbax's background threads."""
        import time
        workdir = self.create_tempdir().full_path
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidjax.main", "--config=configs/toy.py:tiny",
             f"--workdir={workdir}", "--config.train.num_steps=3000",
             "--config.ckpt.every_steps=100", "--config.ckpt.keep=5",
             "--config.eval.every_steps=0", "--config.log.every_steps=10",
             "--config.log.progress=False"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = os.path.join(workdir, "ckpt", "100")
        deadline = time.time() + 300
        while not os.path.isdir(first):
            self.assertIsNone(proc.poll(), "the run ended before its first checkpoint")
            self.assertLess(time.time(), deadline)
            time.sleep(0.005)
        os.rename(os.path.join(workdir, "ckpt"), os.path.join(workdir, "kept"))
        open(os.path.join(workdir, "ckpt"), "w").close()
        broke = time.time()
        _, stderr = proc.communicate(timeout=240)
        self.assertLess(time.time() - broke, 120)
        self.assertEqual(proc.returncode, 2, stderr[-2000:])
        self.assertRegex(stderr, r"sidjax: error: A checkpoint save in .*ckpt failed \(stopped at "
                                 r"step \d+\): NotADirectoryError.*last good checkpoint is step "
                                 r"\d+")
        self.assertIn("100", os.listdir(os.path.join(workdir, "kept")))


class ConcurrentRunsTest(absltest.TestCase):

    def test_second_real_run_in_the_same_workdir_is_refused(self):
        import time
        workdir = self.create_tempdir().full_path
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        args = [sys.executable, "-m", "sidjax.main", "--config=configs/toy.py:tiny",
                f"--workdir={workdir}", "--config.train.num_steps=100000",
                "--config.log.progress=False"]
        first = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        self.addCleanup(first.kill)
        lock = os.path.join(workdir, lock_lib.LOCK_NAME)
        deadline = time.time() + 120
        while not os.path.exists(lock):
            self.assertIsNone(first.poll(), "the first run ended before taking the lock")
            self.assertLess(time.time(), deadline)
            time.sleep(0.01)
        second = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=300)
        self.assertEqual(second.returncode, 2, second.stderr[-2000:])
        self.assertIn(f"is in use by process {first.pid} on {socket.gethostname()}",
                      second.stderr)
        self.assertIsNone(first.poll())  # The first run carries on.
