"""The compilation cache setting and the compile-seconds clock."""

import os
from unittest import mock

import jax
import jax.numpy as jnp
from absl.testing import absltest

from sidjax.train import compilation


class CompilationTest(absltest.TestCase):

    def test_cache_dir_from_the_environment_default_and_off(self):
        with mock.patch.dict(os.environ, {compilation.ENV: "/tmp/some_cache"}):
            self.assertEqual(compilation.cache_dir(), "/tmp/some_cache")
        with mock.patch.dict(os.environ, {compilation.ENV: "gs://bucket/xla"}):
            self.assertEqual(compilation.cache_dir(), "gs://bucket/xla")  # Not made local.
        with mock.patch.dict(os.environ, {compilation.ENV: "off"}):
            self.assertIsNone(compilation.cache_dir())
            self.assertIsNone(compilation.enable_cache())
        env = {k: v for k, v in os.environ.items() if k != compilation.ENV}
        with mock.patch.dict(os.environ, env, clear=True):
            self.assertEqual(compilation.cache_dir(),
                             os.path.expanduser("~/.cache/sidjax/xla"))

    def test_tests_run_with_the_cache_the_environment_names(self):
        # conftest.py enabled it (a per-session directory unless the variable was set).
        self.assertEqual(jax.config.jax_compilation_cache_dir, compilation.cache_dir())

    def test_unusable_directory_names_it_and_the_variable(self):
        blocker = self.create_tempfile("a_file").full_path
        with self.assertRaisesRegex(OSError, f"{blocker}/x.*{compilation.ENV}"):
            compilation.enable_cache(os.path.join(blocker, "x"))

    def test_clock_counts_a_new_compilation_only(self):
        f = jax.jit(lambda x: jnp.sin(x) * 3.0 + jnp.cos(x))
        x = jnp.ones((7, 5))
        before = compilation.seconds()
        f(x).block_until_ready()
        after_first = compilation.seconds()
        self.assertGreater(after_first, before)
        f(x).block_until_ready()  # Cached executable: no tracing, no compilation.
        self.assertEqual(compilation.seconds(), after_first)


if __name__ == "__main__":
    absltest.main()
