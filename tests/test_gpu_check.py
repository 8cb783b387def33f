"""bench/gpu_check.sh at CPU shapes: it runs end to end and prints one parseable JSON line."""

import json
import os
import subprocess

from absl.testing import absltest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


class GpuCheckTest(absltest.TestCase):

    def test_small_run_prints_one_json_line(self):
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS="--xla_force_host_platform_device_count=2")
        proc = subprocess.run(["bash", "bench/gpu_check.sh", "--small"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        lines = proc.stdout.strip().splitlines()
        self.assertLen(lines, 1)
        result = json.loads(lines[0])
        self.assertEqual(result["devices"], 2)  # fsdp over both devices.
        for key in ("sft_tokens_per_s", "decode_tokens_per_s_b8", "decode_tokens_per_s_b16",
                    "beam_examples_per_s"):
            self.assertGreater(result[key], 0, key)
        self.assertIsNone(result["sft_mfu"])  # No known peak for a CPU.
        self.assertLess(result["sft_loss"], 8.0)  # ~ln(1024) for random weights.


if __name__ == "__main__":
    absltest.main()
