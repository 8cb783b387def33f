"""Command line: `python -m sidjax.main --config=configs/x.py[:variant] [--config.a.b=v ...]`.

Parses the config, joins a multi-process run when one is configured, logs the
process and device layout, and hands over to the stage's library function. A mistyped
config file, variant or field is one line naming it and the closest valid one (exit 2);
`--help` lists the config files and their variants.
"""

from __future__ import annotations

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
from sidjax.config_files import (check_field, config_names, configs_dir, load_config,
                                 resolve_config_path, variants_of)
from sidjax.data.types import DataError
from sidjax.train import compilation
from sidjax.train.console import quiet_library_logs
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


HELP_FLAGS = ("--help", "-help", "-h", "--helpshort", "-?")


def usage() -> str:
    """`--help`: the command, every packaged config file with its first docstring line and
    variants, and the other flags."""
    import ast

    rows = []
    for name in config_names():
        path = os.path.join(configs_dir(), name)
        with open(path) as f:
            doc = (ast.get_docstring(ast.parse(f.read())) or "").strip().splitlines()
        try:
            variants = variants_of(path)
        except Exception as e:  # A broken config file still gets its line.
            variants = (f"(cannot list: {e})",)
        rows.append(f"  configs/{name:<10} {doc[0] if doc else ''}\n"
                    f"  {'':<18} variants: {', '.join(variants) if variants else 'none'}")
    return "\n".join([
        "usage: python -m sidjax.main --config=configs/<file>.py[:<variant>] "
        "[--config.<field>=<value> ...] [--workdir=<dir>]",
        "",
        "Config files (shipped with sidjax, found from any directory; a path to your own file "
        "works too):",
        *rows,
        "",
        "Flags:",
        "  --config.<a>.<b>=<v>  override one field, e.g. --config.optim.lr=1e-4 "
        "(a config's fields: its workdir's config.json)",
        "  --workdir=<dir>       outputs (default workdir/<config name>); a rerun skips finished "
        "stages",
        "  --verbose             full tracebacks for data, config and workdir errors",
        "  --coordinator_address, --num_processes, --process_id: multi-process runs "
        "(launch/README.md)",
        "  --helpfull            every absl flag",
    ])


def _config_argument(argv: list[str]) -> tuple[int, str] | None:
    """(index, value) of `--config=X` or `--config X` in argv."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return i, arg[len("--config="):]
        if arg == "--config" and i + 1 < len(argv):
            return i, argv[i + 1]
    return None


def check_arguments(argv: list[str]) -> list[str]:
    """Resolves `--config`'s file (packaged configs from any directory) and checks its variant
    and every `--config.<field>=` override before absl reads them; returns argv with the
    resolved path. Raises ConfigError with one line naming the fault and the fix."""
    found = _config_argument(argv)
    if found is None:
        raise ConfigError("--config is required, e.g. --config=configs/grpo.py "
                          "(python -m sidjax.main --help lists the config files).")
    index, spec = found
    path, colon, variant = spec.partition(":")
    resolved = resolve_config_path(path)
    config = load_config(spec)
    for arg in argv:
        if arg.startswith("--config.") and "=" in arg:
            check_field(config, arg[len("--config."):].split("=", 1)[0], source=path)
    argv = list(argv)
    value = resolved + colon + variant
    if argv[index] == "--config":
        argv[index + 1] = value
    else:
        argv[index] = "--config=" + value
    return argv


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing with `--help` listing the configs and every mistake as one line."""
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        print(usage())
        sys.exit(0)
    try:
        argv = check_arguments(argv)
        return flags.FLAGS(argv)
    except (ConfigError, flags.Error) as e:
        message = str(e).strip().splitlines()[-1].strip() if str(e).strip() else repr(e)
        print(f"sidjax: error: {message}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    maybe_initialize_distributed()
    config = _CONFIG.value
    config_arg = config_flags.get_config_filename(flags.FLAGS["config"])  # 'path[:variant]'
    workdir = _WORKDIR.value or default_workdir(config_arg, config)
    try:
        cache = compilation.enable_cache()
    except OSError as e:  # A run without the cache only compiles more; it still trains.
        logging.warning("%s", e)
        cache = None
    logging.info("Compilation cache: %s (%s=<dir> or off).", cache or "off", compilation.ENV)
    logging.info(
        "process %d of %d; local devices %d, global devices %d (%s); glibc malloc keeps freed "
        "memory: %s (%s=default opts out).", jax.process_index(), jax.process_count(),
        jax.local_device_count(), jax.device_count(), jax.devices()[0].platform,
        _KEPT_FREED_MEMORY, host_memory.OPT_OUT_ENV)
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


def run() -> None:
    # Before any flag parsing, so jax's backend probe (the libtpu.so line) is filtered too.
    quiet_library_logs()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
