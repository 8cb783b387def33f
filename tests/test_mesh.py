"""Mesh construction, batch placement and the activation-sharding helper."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax.sharding import PartitionSpec as P

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
