"""Load `configs/*.py` files from Python (notebooks, tests) the way `--config=` does."""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Mapping

from ml_collections import ConfigDict


def load_config(spec: str, overrides: Mapping[str, Any] | None = None) -> ConfigDict:
    """`load_config("configs/toy.py:tiny", {"train.num_steps": 10})` -> a locked ConfigDict.

    Overrides use the dotted names of `--config.a.b=v`; an unknown name raises,
    as it does on the command line.
    """
    path, _, variant = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file '{path}' does not exist (from spec '{spec}').")
    module_spec = importlib.util.spec_from_file_location(
        f"sidjax_config_{os.path.splitext(os.path.basename(path))[0]}", path
    )
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(variant or None)
    config.lock()
    for dotted, value in (overrides or {}).items():
        _set(config, dotted, value)
    return config


def _set(config: ConfigDict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for i, name in enumerate(parents):
        if name not in node:
            raise KeyError(f"Config has no field '{'.'.join(parents[:i + 1])}' (override "
                           f"'{dotted}').")
        node = node[name]
    if leaf not in node:
        raise KeyError(f"Config has no field '{dotted}'.")
    node[leaf] = value
