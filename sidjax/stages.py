"""Stage registry: `config.stage` name -> the library function that runs it.

Entries are import paths so `sidjax.main` imports only the stage it runs
(the LLM stages pull in transformers; the toy stage does not).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from absl import logging
from ml_collections import ConfigDict

from sidjax.config_checks import check_config
from sidjax.train.console import quiet_library_logs
from sidjax.train.workdir_lock import workdir_lock

STAGES: dict[str, str] = {
    "toy_regression": "sidjax.toy.regression:train_and_evaluate",
    "sft": "sidjax.sft.stage:train_and_evaluate",
    "eval": "sidjax.eval.stage:train_and_evaluate",
    "grpo": "sidjax.rl.stage:train_and_evaluate",
    "pipeline": "sidjax.pipeline.run:train_and_evaluate",
    "plan": "sidjax.plan.stage:train_and_evaluate",
    "prepare_data": "sidjax.prepare.stage:train_and_evaluate",
    "sid": "sidjax.sid.stage:train_and_evaluate",
    "sasrec": "sidjax.sasrec.stage:train_and_evaluate",
}


def get_stage(name: str):
    if name not in STAGES:
        raise ValueError(
            f"config.stage='{name}' is not a known stage; known stages: {sorted(STAGES)}."
        )
    module, func = STAGES[name].split(":")
    return getattr(importlib.import_module(module), func)


CONFIG_FILE = "config.json"


def write_config(config: ConfigDict, workdir: str) -> str:
    """Writes the run's full config to `workdir/config.json` (process 0) and returns the path;
    the console gets this path instead of a 230-line dump."""
    import jax

    path = os.path.join(workdir, CONFIG_FILE)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(path, "w") as f:
            f.write(config.to_json_best_effort(indent=1, sort_keys=True) + "\n")
    return path


def train_and_evaluate(config: ConfigDict, workdir: str) -> Any:
    """Runs the stage named by `config.stage` (callable from a notebook): checks the config
    values first (ConfigError), holds the workdir's lock while it runs (WorkdirLocked when
    another run has it) and records the config in `workdir/config.json`."""
    import jax

    check_config(config)
    quiet_library_logs()
    stage = get_stage(config.stage)
    with workdir_lock(workdir, take=jax.process_index() == 0):
        logging.info("Stage %s, workdir %s (config: %s).", config.stage, workdir,
                     write_config(config, workdir))
        return stage(config, workdir)
