"""Every test process sees 8 simulated CPU devices, sidjax.main's CPU malloc setting and a
persistent compilation cache of its own.

All are set before jax is imported. The cache lives in a fresh directory per test session
(removed at exit; subprocesses started by tests inherit it through the environment), so a
test never loads a program compiled by another session, while tests that build the same
trainer or model again in this session load it instead of compiling it again.
"""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from sidjax.train import compilation, host_memory  # noqa: E402

host_memory.keep_freed_memory_on_cpu()

if compilation.ENV not in os.environ:
    _cache = tempfile.mkdtemp(prefix="sidjax_test_xla_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ[compilation.ENV] = _cache
compilation.enable_cache()

# absltest helpers (create_tempdir, ...) read absl flags, which pytest never parses.
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()
