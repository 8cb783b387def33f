"""The CPU allocator setting: freed memory stays in the process, so reuse does not page-fault."""

import os
import platform
import subprocess
import sys
import textwrap
from unittest import mock

from absl.testing import absltest

from sidjax.train import host_memory

# Allocates, touches and frees 256 MiB on a worker thread (as XLA's threads do) twice and
# prints the page faults of the second round.
_PROBE = textwrap.dedent("""
    import ctypes, resource, sys, threading
    from sidjax.train import host_memory
    if sys.argv[1] == "keep":
        assert host_memory.keep_freed_memory()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def touch_and_free(size=1 << 28):
        ptr = libc.malloc(size)
        ctypes.memset(ptr, 1, size)
        libc.free(ptr)

    def on_thread(fn):
        thread = threading.Thread(target=fn)
        thread.start()
        thread.join()

    on_thread(touch_and_free)
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    on_thread(touch_and_free)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
""")


def second_round_faults(mode: str) -> int:
    proc = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                          timeout=120, check=True)
    return int(proc.stdout.strip().splitlines()[-1])


@absltest.skipUnless(platform.system() == "Linux" and platform.libc_ver()[0] == "glibc",
                     "glibc only")
class KeepFreedMemoryTest(absltest.TestCase):

    def test_reused_block_does_not_fault_again(self):
        pages = (1 << 28) // os.sysconf("SC_PAGE_SIZE")
        default, kept = second_round_faults("default"), second_round_faults("keep")
        # glibc's default mmaps a block this large and unmaps it on free: every page faults again.
        self.assertGreater(default, pages // 2)
        self.assertLess(kept, pages // 100)


class WillRunOnCpuTest(absltest.TestCase):

    def test_jax_platforms_decides_when_set(self):
        with mock.patch.dict(os.environ, {"JAX_PLATFORMS": "cpu"}):
            self.assertTrue(host_memory.will_run_on_cpu())
        with mock.patch.dict(os.environ, {"JAX_PLATFORMS": "cuda,cpu"}):
            self.assertFalse(host_memory.will_run_on_cpu())

    def test_installed_plugin_means_accelerator(self):
        env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
        with mock.patch.dict(os.environ, env, clear=True):
            with mock.patch.object(host_memory.importlib.util, "find_spec",
                                   lambda name: object() if name == "libtpu" else None):
                self.assertFalse(host_memory.will_run_on_cpu())
            with mock.patch.object(host_memory.importlib.util, "find_spec", lambda name: None):
                self.assertEqual(host_memory.will_run_on_cpu(),
                                 not host_memory.metadata.entry_points(group="jax_plugins"))


if __name__ == "__main__":
    absltest.main()
