"""Every test process sees 8 simulated CPU devices and sidjax.main's CPU malloc setting.

Both are set before jax is imported.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from sidjax.train import host_memory  # noqa: E402

host_memory.keep_freed_memory_on_cpu()

# absltest helpers (create_tempdir, ...) read absl flags, which pytest never parses.
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()
