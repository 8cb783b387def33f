"""Semantic IDs: quantiser math, k-means, Sinkhorn, collisions, RQ-VAE, the sid stage."""

import itertools
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from sidjax.config_files import load_config
from sidjax.data.minionerec import read_minionerec
from sidjax.sid import collisions, rqvae
from sidjax.sid.kmeans import balanced_kmeans, capacity_assign, kmeans
from sidjax.sid.quantizer import quantization_losses, residual_quantize
from sidjax.sid.rqkmeans import fit_rqkmeans
from sidjax.sid.sinkhorn import sinkhorn_assign
from sidjax.sid.stage import assign_sids, default_sid_config
from sidjax.train.trainer import Trainer
from sidjax.data.iterator import BatchIterator

REPO = os.path.join(os.path.dirname(__file__), os.pardir)


class QuantizerTest(absltest.TestCase):
    # Two levels of 2-D codes; z = (3.1, 0.9) -> level 1 picks (3, 1), residual (0.1, -0.1)
    # -> level 2 picks (0.1, -0.2), final residual (0, 0.1).
    CODEBOOKS = jnp.array([[[0.0, 0.0], [3.0, 1.0], [-2.0, 2.0]],
                           [[0.1, -0.2], [1.0, 1.0], [0.0, 0.5]]])
    Z = jnp.array([[3.1, 0.9], [-2.0, 2.6]])

    def test_codes_residuals_and_reconstruction(self):
        codes, out, residuals, chosen = residual_quantize(self.Z, self.CODEBOOKS)
        np.testing.assert_array_equal(codes, [[1, 0], [2, 2]])
        np.testing.assert_allclose(residuals[1], [[0.1, -0.1], [0.0, 0.6]], atol=1e-6)
        np.testing.assert_allclose(out, [[3.1, 0.8], [-2.0, 2.5]], atol=1e-6)

    def test_straight_through_gradient_is_identity(self):
        w = jnp.array([[1.0, -2.0], [0.5, 3.0]])
        grad = jax.grad(lambda z: jnp.sum(residual_quantize(z, self.CODEBOOKS)[1] * w))(self.Z)
        np.testing.assert_allclose(grad, w)

    def test_losses_hand_computed(self):
        _, _, residuals, chosen = residual_quantize(self.Z, self.CODEBOOKS)
        # Item 0: level 1 error (0.1, -0.1) -> 0.01; level 2 error (0, 0.1) -> 0.005.
        # codebook + 0.25 * commitment = 1.25 * error; mean over levels.
        losses = quantization_losses(residuals, chosen, beta=0.25)
        np.testing.assert_allclose(losses[0], 1.25 * (0.01 + 0.005) / 2, rtol=1e-5)
        # Item 1: level 1 error (0, 0.6) -> 0.18; level 2 error (0, 0.1) -> 0.005.
        np.testing.assert_allclose(losses[1], 1.25 * (0.18 + 0.005) / 2, rtol=1e-5)
        # Codebook loss moves codes only; commitment moves the input only.
        g_code = jax.grad(lambda c: jnp.sum(quantization_losses(
            *residual_quantize(self.Z, c)[2:], beta=0.0)))(self.CODEBOOKS)
        self.assertGreater(float(jnp.abs(g_code).sum()), 0)
        g_z = jax.grad(lambda z: jnp.sum(quantization_losses(
            *residual_quantize(z, self.CODEBOOKS)[2:], beta=0.0)))(self.Z)
        np.testing.assert_allclose(g_z, 0.0)


def planted_clusters(n_per=40, k=6, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim)) * 10
    labels = np.repeat(np.arange(k), n_per)
    return centers[labels] + rng.normal(size=(len(labels), dim)) * 0.3, labels, centers


class KMeansTest(absltest.TestCase):

    def test_recovers_planted_clusters(self):
        x, labels, true_centers = planted_clusters()
        centers, assign = kmeans(x, 6, jax.random.PRNGKey(0), iters=50)
        assign = np.asarray(assign)
        for c in range(6):  # Each found cluster is exactly one planted cluster.
            self.assertLen(set(labels[assign == c]), 1)
        for t in true_centers:
            self.assertLess(np.min(np.linalg.norm(np.asarray(centers) - t, axis=1)), 0.2)

    def test_balanced_variants_respect_capacity(self):
        x, _, _ = planted_clusters(n_per=30, k=3)
        assign = capacity_assign(np.random.default_rng(0).random((90, 9)), 10)
        self.assertEqual(np.bincount(assign, minlength=9).max(), 10)
        _, assign = balanced_kmeans(x, 9, jax.random.PRNGKey(0))
        self.assertLessEqual(np.bincount(assign, minlength=9).max(), 10)
        with self.assertRaisesRegex(ValueError, "cannot hold"):
            capacity_assign(np.zeros((11, 2)), 5)

    def test_sinkhorn_is_balanced(self):
        rng = np.random.default_rng(0)
        points, codes = rng.normal(size=(256, 4)), rng.normal(size=(8, 4))
        cost = ((points[:, None] - codes[None]) ** 2).sum(-1)
        counts = np.bincount(np.asarray(sinkhorn_assign(cost, 0.003, 200)), minlength=8)
        self.assertLessEqual(np.abs(counts - 32).max(), 4, counts)
        nearest = np.bincount(cost.argmin(1), minlength=8)
        self.assertGreater(np.abs(nearest - 32).max(), 8)  # Plain argmin is far from balanced.


class CollisionTest(absltest.TestCase):

    def test_extra_level_makes_sids_unique(self):
        codes = np.array([[1, 2, 3], [1, 2, 3], [4, 5, 6], [1, 2, 3]])
        out = collisions.add_disambiguation_level(codes)
        np.testing.assert_array_equal(out[:, 3], [0, 1, 0, 2])
        self.assertLen({tuple(r) for r in out}, 4)
        self.assertEqual(collisions.sid_tokens(out)[1], ("<a_1>", "<b_2>", "<c_3>", "<d_1>"))

    def test_sinkhorn_rounds_spread_colliding_items(self):
        rng = np.random.default_rng(0)
        codes = np.zeros((12, 3), np.int64)  # Everyone collides.
        codes[:, 0] = np.arange(12) // 6
        codebook = rng.normal(size=(16, 4))
        residuals = codebook[[0] * 12] + rng.normal(size=(12, 4)) * 0.01
        fixed, rounds = collisions.sinkhorn_rounds(codes, residuals, codebook, rounds=20)
        self.assertEmpty(collisions.collision_groups(fixed))
        np.testing.assert_array_equal(fixed[:, :2], codes[:, :2])  # Only the last level moves.
        self.assertGreaterEqual(rounds, 1)


def _sid_cfg(**kw):
    cfg = default_sid_config()
    cfg.update(dict(codes=16, hidden=(64, 32), e_dim=8, kmeans_iters=30))
    cfg.update(kw)
    return cfg


class RQVAETest(absltest.TestCase):

    def test_trained_on_clustered_embeddings(self):
        # Planted residual structure: x = 6 A[a] + 2 B[b] + 0.7 C[c], 320 distinct (a, b, c),
        # which a 3-level quantiser can represent exactly (RQ-KMeans gets ~0.3% collisions).
        rng = np.random.default_rng(1)
        a_, b_, c_ = (rng.normal(size=(8, 32)) for _ in range(3))
        triples = rng.permutation(list(itertools.product(range(8), repeat=3)))[:320]
        x = np.stack([6 * a_[a] + 2 * b_[b] + 0.7 * c_[c] for a, b, c in triples])
        x = (x + 0.01 * rng.normal(size=x.shape)).astype(np.float32)
        config = load_config(os.path.join(REPO, "configs", "rqvae.py:tiny"), {
            "train.num_steps": 1500, "eval.every_steps": 250, "log.progress": False,
            "train.batch_size": 64, "optim.lr": 3e-3})
        config.sid = _sid_cfg(hidden=(64,), e_dim=32)
        workdir = tempfile.mkdtemp()
        trainer = Trainer(config, workdir, rqvae.make_task(x, config.sid))
        result = trainer.fit(BatchIterator({"x": x}, 64, seed=0))
        trainer.close()
        self.assertLess(result.last_metrics["recon"], 0.05 * float(x.var(0).mean()))
        self.assertLessEqual(result.best_value, 0.05)  # Best-collision checkpoint, no handling.
        params = result.state.params
        z = np.asarray(rqvae.encode(params, jnp.asarray(x)))
        codes, info = assign_sids(z, np.asarray(params["codebooks"]), config.sid)
        self.assertGreaterEqual(len(np.unique(codes[:, 0])), 13, "most level-1 codes used")
        self.assertLessEqual(rqvae.collision_rate(codes), 0.01)
        self.assertIn("before_collision_handling", info)

    def test_reseed_moves_dead_codes(self):
        x = jnp.asarray(planted_clusters(n_per=10, k=4)[0], jnp.float32)
        cfg = _sid_cfg(codes=8, hidden=(16,), e_dim=4, kmeans_iters=10)
        params = rqvae.init_params(jax.random.PRNGKey(0), x, cfg)
        params["codebooks"] = params["codebooks"].at[0, 7].set(1e6)  # Nobody is near it.
        new, moved = rqvae.reseed_dead_codes(params, x, np.random.default_rng(0))
        self.assertGreaterEqual(moved, 1)
        self.assertLess(float(jnp.abs(new["codebooks"][0, 7]).max()), 1e3)

    def test_rqkmeans_levels(self):
        x, _, _ = planted_clusters(n_per=20, k=4, dim=6)
        codebooks, codes = fit_rqkmeans(x, levels=2, codes=4, iters=20)
        self.assertEqual((codebooks.shape, codes.shape), ((2, 4, 6), (80, 2)))
        _, balanced = fit_rqkmeans(x, levels=2, codes=8, balanced=True)
        self.assertLessEqual(np.bincount(balanced[:, 1]).max(), 10)


class SidStageTest(absltest.TestCase):

    def test_stage_writes_loadable_sids_report_and_plot_and_skips_when_done(self):
        from sidjax import stages

        config = load_config(os.path.join(REPO, "configs", "rqvae.py:tiny"),
                             {"log.progress": False})
        workdir = self.create_tempdir().full_path
        report = stages.train_and_evaluate(config, workdir)
        sid_dir = os.path.join(workdir, "sid")
        data = read_minionerec(os.path.join(sid_dir, "data"), "Synthetic_Store")
        self.assertTrue(data.catalog.has_sids)
        self.assertLen(data.catalog, report["items"])
        self.assertEqual(report["distinct_sids"], len(data.catalog.sid_strings()))
        for key in ("collision_rate", "largest_collision_group", "recon_mse", "levels",
                    "before_collision_handling", "fit_seconds"):
            self.assertIn(key, report)
        self.assertLessEqual(report["collision_rate"],
                             report["before_collision_handling"]["collision_rate"])
        self.assertTrue(os.path.exists(os.path.join(sid_dir, "sid_code_usage.png")))
        self.assertTrue(os.path.isdir(os.path.join(sid_dir, "rqvae", "best")))
        self.assertEqual(stages.train_and_evaluate(config, workdir), report)  # Cached.

    def test_extra_level_config(self):
        from sidjax import stages

        config = load_config(os.path.join(REPO, "configs", "rqvae.py:tiny"), {
            "sid.method": "rqkmeans", "sid.collisions": "extra_level"})
        report = stages.train_and_evaluate(config, self.create_tempdir().full_path)
        self.assertEqual(report["collision_rate"], 0.0)
        self.assertLen(report["levels"], 4)


if __name__ == "__main__":
    absltest.main()
