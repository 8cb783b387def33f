"""Learning-rate schedules and optimiser construction against hand-computed values."""

import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized

from sidjax.train import optim
from sidjax.train.defaults import base_config


def _optim(**kw):
    c = base_config().optim
    c.update(kw)
    return c


class ScheduleTest(parameterized.TestCase):

    def test_linear_warmup_then_linear_decay_to_zero(self):
        # lr 1e-3, 10 warmup steps, 110 total: the method's HF linear schedule.
        s = optim.make_schedule(_optim(lr=1e-3, warmup_steps=10, schedule="linear"), 110)
        np.testing.assert_allclose(
            [s(0), s(5), s(10), s(60), s(110)], [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)

    def test_cosine_with_floor(self):
        s = optim.make_schedule(_optim(lr=2.0, schedule="cosine", end_lr_factor=0.1), 100)
        # At the middle the cosine is at (1 + cos(pi/2))/2 = 0.5 of the way: 0.1*2 + 0.9*2*0.5.
        np.testing.assert_allclose([s(0), s(50), s(100)], [2.0, 1.1, 0.2], rtol=1e-6)

    def test_constant(self):
        s = optim.make_schedule(_optim(lr=0.5, schedule="constant"), 100)
        np.testing.assert_allclose([s(0), s(99)], [0.5, 0.5])

    def test_unknown_names_fail_clearly(self):
        with self.assertRaisesRegex(ValueError, "config.optim.schedule='step'"):
            optim.make_schedule(_optim(schedule="step"), 10)
        with self.assertRaisesRegex(ValueError, "config.optim.name='lion'"):
            optim.make_optimizer(_optim(name="lion"), 10)

    def test_grad_clip_bounds_the_update(self):
        tx = optim.make_optimizer(_optim(name="sgd", lr=1.0, grad_clip=1.0), 10)
        params = {"w": jnp.zeros(2)}
        updates, _ = tx.update({"w": jnp.array([30.0, 40.0])}, tx.init(params), params)
        # Norm 50 clipped to 1, then SGD with lr 1: update = -g / 50.
        np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)
        self.assertIsInstance(tx, optax.GradientTransformation)


if __name__ == "__main__":
    absltest.main()
