"""What compilation costs a run: JAX's persistent compilation cache, and a clock of
compile seconds.

Why: every run of a stage compiles its steps again (a fresh jit per trainer), and a
compilation costs seconds on a CPU and minutes for a large model on a TPU. The GRPO
stage compiles its log-prob pass and update once per response width (up to
`grpo.response_buckets` x `grpo.length_parts` shapes, 4-9 s each on the CPU recipe's
model), so a short run, a resumed one, a seed sweep or a benchmark round pays them
again. With the cache, a program compiled once (same computation, same flags, same
backend and JAX version) is loaded from disk instead; tracing and lowering are still paid.
Measured on bench/grpo_step.py's model: an update at a new batch width took 4.5-8 s to
compile and 1.3-1.7 s to load.

`sidjax.main`, the benchmarks and the tests call `enable_cache()` before their first
compilation. The directory comes from `SIDJAX_COMPILE_CACHE` (`off` turns the cache
off; a gs:// URL shares one cache across a pod's hosts), else `~/.cache/sidjax/xla`;
entries are evicted least-recently-used beyond `MAX_BYTES`. Only compilations that took
at least `MIN_COMPILE_SECONDS` are stored.

`seconds()` is the process's total time spent tracing, lowering and compiling so far
(JAX's monitoring events), so a loop can tell a step's compilation from its work: the
GRPO stage logs it per rollout, and bench/grpo_step.py reports steps with and without it.
"""

from __future__ import annotations

import os
import threading

ENV = "SIDJAX_COMPILE_CACHE"
DEFAULT_DIR = os.path.join("~", ".cache", "sidjax", "xla")
MAX_BYTES = 4 * 1024 ** 3
MIN_COMPILE_SECONDS = 0.5


# JAX's duration events for one compilation: trace to jaxpr, lower to MLIR, XLA compile.
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")

_lock = threading.Lock()
_total = [0.0]
_listening = [False]


def _on_duration(event: str, secs: float, **_) -> None:
    if event in COMPILE_EVENTS:
        with _lock:
            _total[0] += secs


def seconds() -> float:
    """Seconds this process has spent compiling since the first call (which starts the clock)."""
    import jax

    with _lock:
        if not _listening[0]:
            jax.monitoring.register_event_duration_secs_listener(_on_duration)
            _listening[0] = True
        return _total[0]


def cache_dir() -> str | None:
    """The directory `enable_cache()` uses: $SIDJAX_COMPILE_CACHE, else the default; None = off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("off", "0", "none", "false"):
        return None
    return _local_or_url(value or DEFAULT_DIR)


def _local_or_url(path: str) -> str:
    """A URL (gs://bucket/dir, which JAX reads and writes itself) as given; a local path
    absolute, with ~ expanded."""
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def enable_cache(path: str | None = None) -> str | None:
    """Turns JAX's persistent compilation cache on at `path` (default: `cache_dir()`).

    Returns the directory, or None when the cache is off. A directory that cannot be
    created raises an error naming it and the variable that picks another.
    """
    import jax

    path = cache_dir() if path is None else _local_or_url(path)
    if path is None:
        return None
    try:
        if "://" not in path:  # A pod's shared bucket (gs://...) needs no directory.
            os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise OSError(f"Cannot create the compilation cache directory {path} ({e}); set "
                      f"{ENV} to a writable directory, or {ENV}=off to run without "
                      "the cache.") from e
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return path
