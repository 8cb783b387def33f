"""The batch iterator: deterministic, per-host disjoint, covering, exactly resumable."""

import numpy as np
from absl.testing import absltest

from sidjax.data.iterator import BatchIterator


def _source(n):
    return {"idx": np.arange(n), "x": np.arange(n, dtype=np.float32) * 10}


class BatchIteratorTest(absltest.TestCase):

    def test_same_seed_same_batches(self):
        a = BatchIterator(_source(100), 10, seed=3)
        b = BatchIterator(_source(100), 10, seed=3)
        for _ in range(25):
            np.testing.assert_array_equal(next(a)["idx"], next(b)["idx"])
        c = BatchIterator(_source(100), 10, seed=4)
        self.assertFalse(np.array_equal(next(BatchIterator(_source(100), 10, seed=3))["idx"],
                                        next(c)["idx"]))

    def test_hosts_disjoint_and_cover_each_epoch(self):
        n, batch, hosts = 96, 12, 3
        iters = [BatchIterator(_source(n), batch, seed=0, process_index=p, process_count=hosts)
                 for p in range(hosts)]
        for epoch in range(2):
            seen = []
            for _ in range(n // batch):
                parts = [next(it)["idx"] for it in iters]
                self.assertEqual([len(p) for p in parts], [batch // hosts] * hosts)
                seen.extend(np.concatenate(parts).tolist())
            self.assertEqual(sorted(seen), list(range(n)), f"epoch {epoch}")

    def test_epochs_reshuffle(self):
        it = BatchIterator(_source(20), 20, seed=0)
        self.assertFalse(np.array_equal(next(it)["idx"], next(it)["idx"]))

    def test_resume_mid_epoch_equals_uninterrupted(self):
        full = BatchIterator(_source(50), 8, seed=1)
        expected = [next(full)["idx"] for _ in range(20)]
        first = BatchIterator(_source(50), 8, seed=1)
        got = [next(first)["idx"] for _ in range(7)]
        resumed = BatchIterator(_source(50), 8, seed=1)
        resumed.set_state(first.get_state())
        got += [next(resumed)["idx"] for _ in range(13)]
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(e, g)

    def test_record_source(self):
        records = [{"a": np.array([i, i]), "b": i * 2} for i in range(10)]
        batch = next(BatchIterator(records, 4, seed=0, shuffle=False))
        np.testing.assert_array_equal(batch["a"], [[0, 0], [1, 1], [2, 2], [3, 3]])
        np.testing.assert_array_equal(batch["b"], [0, 2, 4, 6])

    def test_errors_name_the_fix(self):
        with self.assertRaisesRegex(ValueError, "fewer than one global batch"):
            BatchIterator(_source(5), 8, seed=0)
        with self.assertRaisesRegex(ValueError, "does not divide by the 3 processes"):
            BatchIterator(_source(50), 8, seed=0, process_index=0, process_count=3)
        it = BatchIterator(_source(50), 8, seed=0)
        with self.assertRaisesRegex(ValueError, "same config.seed"):
            it.set_state({"batches_done": 3, "seed": 9})


if __name__ == "__main__":
    absltest.main()
