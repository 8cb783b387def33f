"""Every test process sees 8 simulated CPU devices (set before jax is imported)."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# absltest helpers (create_tempdir, ...) read absl flags, which pytest never parses.
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()
