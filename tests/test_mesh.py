"""Mesh construction, batch placement and the activation-sharding helper."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax.sharding import PartitionSpec as P

from sidjax.train import distributed
from sidjax.train import mesh as mesh_lib


class ResolveShapeTest(parameterized.TestCase):

    @parameterized.parameters(
        ({"data": -1, "fsdp": 1, "tensor": 1}, 8, (8, 1, 1)),
        ({"data": 2, "fsdp": -1, "tensor": 2}, 8, (2, 2, 2)),
        ({"data": 1, "fsdp": 1, "tensor": 1}, 1, (1, 1, 1)),
        ({"data": -1}, 4, (4, 1, 1)),
    )
    def test_resolves(self, shape, devices, expected):
        self.assertEqual(mesh_lib.resolve_mesh_shape(shape, devices), expected)

    @parameterized.parameters(
        ({"data": -1, "fsdp": -1}, "more than one -1"),
        ({"data": 3, "fsdp": -1}, "does not divide"),
        ({"data": 2, "fsdp": 2, "tensor": 1}, "needs 4 devices"),
        ({"batch": 8}, "unknown axes"),
    )
    def test_rejects(self, shape, message):
        with self.assertRaisesRegex(ValueError, message):
            mesh_lib.resolve_mesh_shape(shape, 8)


class PlacementTest(absltest.TestCase):

    def test_global_batch_is_sharded_over_data_and_fsdp(self):
        mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
        local = {"x": np.arange(16 * 3, dtype=np.float32).reshape(16, 3)}
        batch = mesh_lib.make_global_batch(local, mesh)
        self.assertEqual(batch["x"].shape, (16, 3))
        self.assertEqual(batch["x"].sharding.spec, P(("data", "fsdp"), None))
        np.testing.assert_array_equal(np.asarray(batch["x"]), local["x"])
        # Each of the 4 batch shards holds 4 rows; tensor replicas hold copies.
        self.assertEqual({s.data.shape for s in batch["x"].addressable_shards}, {(4, 3)})

    def test_shard_activation_is_noop_without_mesh(self):
        x = jnp.ones((8, 4))
        self.assertIs(mesh_lib.shard_activation(x, P("data")), x)

    def test_shard_activation_constrains_under_mesh(self):
        mesh = mesh_lib.make_mesh({"data": 8})

        @jax.jit
        def f(x):
            return mesh_lib.shard_activation(x * 2, P("data", None))

        with jax.set_mesh(mesh):
            y = f(jnp.ones((8, 4)))
        self.assertEqual(y.sharding.spec, P("data"))
        np.testing.assert_array_equal(np.asarray(y), 2 * np.ones((8, 4)))


if __name__ == "__main__":
    absltest.main()


class DistributedHelpersTest(absltest.TestCase):
    """One process: the helpers reduce to plain operations (two processes: test_multiprocess)."""

    def test_run_on_rows_pads_to_the_mesh_and_strips(self):
        mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
        x = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)  # 5 rows over 4 batch shards.
        seen = []

        def fn(a):
            seen.append((a.shape, a.sharding.spec))
            return jax.jit(lambda y: {"double": y * 2, "sum": y.sum(1)})(a)

        out = distributed.run_on_rows(fn, mesh, x)
        self.assertEqual(seen[0], ((8, 3), P(("data", "fsdp"), None)))
        np.testing.assert_array_equal(out["double"], 2 * x)
        np.testing.assert_array_equal(out["sum"], x.sum(1))

    def test_local_rows_and_gathers(self):
        mesh = mesh_lib.make_mesh({"fsdp": 8})
        x = mesh_lib.global_rows(np.arange(16).reshape(8, 2), mesh)
        np.testing.assert_array_equal(distributed.local_rows(x), np.arange(16).reshape(8, 2))
        self.assertEqual(distributed.local_row_range(x.sharding, x.shape), (0, 8))
        np.testing.assert_array_equal(distributed.to_host({"x": x})["x"],
                                      np.arange(16).reshape(8, 2))
        self.assertEqual(distributed.gather_objects([{"a": 1}]), [{"a": 1}])
        self.assertEqual(distributed.broadcast({"k": [1, 2]}), {"k": [1, 2]})
        self.assertEqual(distributed.global_max(3), 3)
        with distributed.main_writes("test") as writer:
            self.assertTrue(writer)
