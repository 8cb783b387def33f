"""The cluster launchers, with the cluster tools (srun, scontrol, gcloud) replaced by local
stand-ins: SLURM's srun really starts the tasks here, so gpu_slurm.sh runs a 2-process job."""

import json
import os
import stat
import subprocess

from absl.testing import absltest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))

# srun: run the command once per task with SLURM_PROCID set, like one task per node.
SRUN = """#!/usr/bin/env bash
echo "srun $*" >> "$CALLS"
if [[ -n "${SRUN_EXIT:-}" ]]; then exit "$SRUN_EXIT"; fi
cmd="${@: -1}"
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
  SLURM_PROCID=$i bash -c "$cmd" > "$LOGS/task_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""
SCONTROL = """#!/usr/bin/env bash
echo "scontrol $*" >> "$CALLS"
if [[ "$1 $2" == "show hostnames" ]]; then echo 127.0.0.1; echo 127.0.0.2; fi
"""
GCLOUD = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$CALLS"
"""


class LaunchTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.create_tempdir().full_path
        self.bin = os.path.join(self.tmp, "bin")
        os.makedirs(self.bin)
        for name, text in (("srun", SRUN), ("scontrol", SCONTROL), ("gcloud", GCLOUD)):
            path = os.path.join(self.bin, name)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
        self.calls = os.path.join(self.tmp, "calls.txt")
        self.env = dict(os.environ, PATH=f"{self.bin}:{os.environ['PATH']}", CALLS=self.calls,
                        LOGS=self.tmp, JAX_PLATFORMS="cpu",
                        XLA_FLAGS="--xla_force_host_platform_device_count=2")

    def _run(self, args, **env):
        return subprocess.run(args, cwd=REPO, env=dict(self.env, **env), capture_output=True,
                              text=True, timeout=600)

    def _calls(self):
        return open(self.calls).read().splitlines() if os.path.exists(self.calls) else []

    def test_slurm_job_runs_two_processes_from_slurm_variables(self):
        workdir = os.path.join(self.tmp, "work")
        proc = self._run(["bash", "launch/gpu_slurm.sh", "--config=configs/toy.py:tiny",
                          f"--workdir={workdir}", "--config.train.num_steps=4"],
                         SLURM_JOB_NODELIST="node[1-2]", SLURM_NTASKS="2", SLURM_JOB_ID="77",
                         SIDJAX_PORT=str(20000 + os.getpid() % 20000))
        logs = "".join(open(os.path.join(self.tmp, f"task_{i}.log")).read()[-2000:]
                       for i in range(2))
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr + logs)
        self.assertIn("coordinator 127.0.0.1:", proc.stdout)
        for i in range(2):
            self.assertIn(f"process {i} of 2; local devices 2, global devices 4",
                          open(os.path.join(self.tmp, f"task_{i}.log")).read())
        rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
        self.assertEqual(max(r["step"] for r in rows), 4)
        self.assertFalse(any("requeue" in c for c in self._calls()))

    def test_slurm_requeues_after_preemption_exit(self):
        proc = self._run(["bash", "launch/gpu_slurm.sh", "--config=configs/toy.py:tiny"],
                         SLURM_JOB_NODELIST="node1", SLURM_NTASKS="1", SLURM_JOB_ID="78",
                         SRUN_EXIT="143")
        self.assertEqual(proc.returncode, 143)
        self.assertIn("scontrol requeue 78", self._calls())

    def test_slurm_outside_an_allocation_says_so(self):
        env = {k: v for k, v in self.env.items() if not k.startswith("SLURM")}
        proc = subprocess.run(["bash", "launch/gpu_slurm.sh", "--config=configs/toy.py"],
                              cwd=REPO, env=env, capture_output=True, text=True)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("not inside a SLURM allocation", proc.stderr)

    def test_local_launcher_stops_on_the_first_failure(self):
        workdir = os.path.join(self.tmp, "bad")
        proc = self._run(["bash", "launch/local_multiprocess.sh", "-n", "2", "-d", "2", "--",
                          "--config=configs/toy.py:tiny", f"--workdir={workdir}",
                          "--config.train.batch_size=3"])
        self.assertEqual(proc.returncode, 1)
        self.assertRegex(proc.stderr, r"process [01] failed \(exit 1\); see .*process_[01].log")
        log = open(os.path.join(workdir, "logs", "process_0.log")).read()
        self.assertIn("does not divide over the 4 batch shards", log)
        missing = self._run(["bash", "launch/local_multiprocess.sh", "--",
                             "--config=configs/toy.py:tiny"])
        self.assertEqual(missing.returncode, 2)
        self.assertIn("pass --workdir", missing.stderr)

    def test_tpu_pod_commands(self):
        self.assertEqual(self._run(["bash", "launch/tpu_pod.sh", "create", "pod", "us-east5-a",
                                    "v5litepod-16"]).returncode, 0)
        self.assertEqual(self._run(["bash", "launch/tpu_pod.sh", "setup", "pod", "us-east5-a",
                                    "my-bucket"]).returncode, 0)
        proc = self._run(["bash", "launch/tpu_pod.sh", "run", "pod", "us-east5-a", "--",
                          "--config=configs/grpo.py:industrial", "--workdir=/mnt/sidjax/r 1"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        calls = self._calls()
        self.assertIn("compute tpus tpu-vm create pod --zone=us-east5-a "
                      "--accelerator-type=v5litepod-16 --version=v2-alpha-tpuv5-lite", calls)
        scp = [c for c in calls if " scp " in f" {c} "]
        self.assertLen(scp, 1)
        self.assertIn("--worker=all", scp[0])
        install = [c for c in calls if "pip install" in c]
        self.assertLen(install, 1)
        self.assertIn("--worker=all", install[0])
        self.assertTrue(any("gcsfuse --implicit-dirs my-bucket /mnt/sidjax" in c for c in calls))
        run = [c for c in calls if "sidjax.main" in c]
        self.assertLen(run, 1)
        self.assertIn("--worker=all", run[0])
        self.assertIn("python3 -m sidjax.main --config=configs/grpo.py:industrial "
                      "--workdir=/mnt/sidjax/r\\ 1", run[0])
        self.assertIn("$(hostname).log", run[0])
        bad = self._run(["bash", "launch/tpu_pod.sh", "run", "pod"])
        self.assertEqual(bad.returncode, 2)


if __name__ == "__main__":
    absltest.main()
