"""What a user watches: the progress line's rate and ETA (compilation excluded) and GRPO's
curves (trailing means, validation reward), against hand-computed values."""

import json
import os
from unittest import mock

import numpy as np
from absl.testing import absltest

from sidjax.rl import curves
from sidjax.train.metrics import Progress


class ProgressTest(absltest.TestCase):

    def test_rate_counts_from_the_first_step_not_from_compilation(self):
        clock = [100.0]
        with mock.patch("sidjax.train.metrics.time.time", lambda: clock[0]):
            progress = Progress(total_steps=1000, start_step=0, enabled=False)
            clock[0] = 160.0  # The first step took 60 s: compilation.
            self.assertEqual(progress.rate(1), 0.0)  # No rate before the first step is done.
            progress.first_step_done(1)
            clock[0] = 170.0  # Then 100 steps in 10 s.
            self.assertAlmostEqual(progress.rate(101), 10.0)
            progress.first_step_done(50)  # Only the first call counts.
            self.assertAlmostEqual(progress.rate(101), 10.0)
            # Counted from the start, the rate would be 101 / 70 s and the ETA 11 minutes
            # instead of 90 s.


class CurvesTest(absltest.TestCase):

    def test_smooth_is_a_trailing_mean(self):
        np.testing.assert_allclose(curves.smooth([1, 2, 3, 4, 5], 3), [1, 1.5, 2, 3, 4])
        np.testing.assert_allclose(curves.smooth([2, 4], 1), [2, 4])
        self.assertEqual(len(curves.smooth([], 3)), 0)
        self.assertEqual(curves.default_window(40), 4)
        self.assertEqual(curves.default_window(5), 3)

    def test_validation_series_from_the_trainer_metrics(self):
        path = os.path.join(self.create_tempdir().full_path, "metrics.jsonl")
        with open(path, "w") as f:
            for record in ({"step": 5, "train/loss": 1.0}, {"step": 40, "eval/val/reward": 0.2},
                           {"step": 80, "eval/val/reward": 0.3},
                           {"step": 80, "eval/val/reward": 0.35}):  # Resumed: last one stands.
                f.write(json.dumps(record) + "\n")
        self.assertEqual(curves.validation_series(path, updates_per_rollout=2, initial=0.1),
                         [(0, 0.1), (20, 0.2), (40, 0.35)])
        self.assertEqual(curves.validation_series(path + ".missing"), [])

    def test_plot_writes_a_png(self):
        path = os.path.join(self.create_tempdir().full_path, "grpo_curves.png")
        history = [{"step": i, "reward_mean": 0.1 + 0.01 * i, "reasoning_len": 30.0}
                   for i in range(12)]
        curves.plot_curves(history, path, [(0, 0.1), (10, 0.2)])
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    absltest.main()
