"""Command line: `python -m sidjax.main --config=configs/x.py[:variant] [--config.a.b=v ...]`.

Parses the config, joins a multi-process run when one is configured, logs the
process and device layout, and hands over to the stage's library function.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys

from sidjax.train import host_memory

# Before jax is imported, so XLA's threads share the one arena (see host_memory).
_KEPT_FREED_MEMORY = host_memory.keep_freed_memory_on_cpu()

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from sidjax import stages
from sidjax.config_checks import ConfigError
from sidjax.data.types import DataError
from sidjax.train.trainer import CheckpointSaveError, Preempted
from sidjax.train.workdir_lock import WorkdirError

# 128 + SIGTERM: schedulers read this as "killed by SIGTERM", so requeue logic applies.
PREEMPTED_EXIT_CODE = 143
# Bad data, a bad config value or an unusable workdir: the user's to fix, not a crash.
USER_ERROR_EXIT_CODE = 2
USER_ERRORS = (DataError, ConfigError, WorkdirError, CheckpointSaveError)
TRACEBACK_ENV = "SIDJAX_TRACEBACK"

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Stage config file, e.g. configs/toy.py or configs/toy.py:tiny.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory (checkpoints, metrics, results). "
    "Default: workdir/<config name>."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for a multi-process run. On TPU pods "
    "and SLURM clusters leave unset: jax.distributed detects them."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (0-based).")
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Show the traceback of data, config and workdir errors too (they print "
    f"as one line otherwise; {TRACEBACK_ENV}=1 does the same).")

flags.mark_flags_as_required(["config"])

def _in_cluster() -> bool:
    """True when the environment says this is one process of a multi-process job."""
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS") or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return True
    if "," in env.get("TPU_WORKER_HOSTNAMES", ""):  # A multi-host TPU slice.
        return True
    return int(env.get("SLURM_NTASKS", "1")) > 1


def maybe_initialize_distributed() -> None:
    """Joins the multi-process runtime when flags or the environment ask for it.

    Single-process runs (a laptop, a notebook, one GPU) skip it entirely.
    """
    if _COORDINATOR.value is not None:
        if _NUM_PROCESSES.value is None or _PROCESS_ID.value is None:
            raise app.UsageError(
                "--coordinator_address needs --num_processes and --process_id as well."
            )
        jax.distributed.initialize(
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
        )
    elif _in_cluster():
        jax.distributed.initialize()


def default_workdir(config_arg: str, config) -> str:
    """workdir/<config.name>, else workdir/<file stem>[_<variant>]."""
    if config.get("name"):
        return os.path.join("workdir", config.name)
    path, _, variant = config_arg.partition(":")
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("workdir", f"{stem}_{variant}" if variant else stem)


class _DropLibraryInfo(std_logging.Filter):
    """Orbax logs every checkpoint step at INFO; keep its warnings, drop the chatter."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_DropLibraryInfo())
    logging.info("glibc malloc keeps freed memory (CPU runs; %s=default to opt out): %s",
                 host_memory.OPT_OUT_ENV, _KEPT_FREED_MEMORY)
    maybe_initialize_distributed()
    config = _CONFIG.value
    config_arg = config_flags.get_config_filename(flags.FLAGS["config"])  # 'path[:variant]'
    workdir = _WORKDIR.value or default_workdir(config_arg, config)
    logging.info(
        "process %d of %d; local devices %d, global devices %d (%s)",
        jax.process_index(), jax.process_count(), jax.local_device_count(),
        jax.device_count(), jax.devices()[0].platform,
    )
    logging.info("stage %s, workdir %s\n%s", config.stage, workdir, config)
    try:
        stages.train_and_evaluate(config, workdir)
    except Preempted as e:
        logging.warning("%s", e)
        sys.exit(PREEMPTED_EXIT_CODE)
    except USER_ERRORS as e:
        if _VERBOSE.value or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(f"sidjax: error: {e}", file=sys.stderr)
        if isinstance(e, CheckpointSaveError):
            # orbax's background threads wait up to 5 minutes for a signal the failed save
            # never sends (measured: a clean exit took 305 s); nothing is left to write.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(USER_ERROR_EXIT_CODE)
        sys.exit(USER_ERROR_EXIT_CODE)


if __name__ == "__main__":
    app.run(main)
