"""Load `configs/*.py` files from Python (notebooks, tests) the way `--config=` does.

The configs ship with the package (`sidjax.configs`), so `load_config("grpo.py:tiny")` or
`load_config("configs/grpo.py")` works from any directory; a path that exists as given (your
own config file) is used as is. Each config file defines `get_config(variant)` and the tuple
`VARIANTS` of the names it accepts after the colon.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from typing import Any, Mapping

from ml_collections import ConfigDict

from sidjax.config_checks import ConfigError


def configs_dir() -> str:
    """The folder of the configs sidjax was installed with (the repository's `configs/`)."""
    spec = importlib.util.find_spec("sidjax.configs")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("The packaged configs (sidjax.configs) are missing; reinstall sidjax "
                          "with `pip install -e .` from the repository root.")
    return list(spec.submodule_search_locations)[0]


def config_names() -> list[str]:
    """The packaged config files, e.g. ['data.py', 'eval.py', 'grpo.py', ...]."""
    return sorted(f for f in os.listdir(configs_dir())
                  if f.endswith(".py") and not f.startswith("_"))


def resolve_config_path(path: str) -> str:
    """`path` when it exists; else, for `configs/x.py` or `x.py`, the packaged `x.py`."""
    if os.path.isfile(path):
        return path
    folder, name = os.path.split(path)
    packaged = os.path.join(configs_dir(), name)
    if os.path.normpath(folder) in ("", ".", "configs") and os.path.isfile(packaged):
        return packaged
    raise ConfigError(f"Config file '{path}' does not exist. Packaged configs: "
                      f"{', '.join('configs/' + n for n in config_names())} (python -m "
                      "sidjax.main --help lists their variants).")


def _module(path: str):
    module_spec = importlib.util.spec_from_file_location(
        f"sidjax_config_{os.path.splitext(os.path.basename(path))[0]}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def variants_of(path: str) -> tuple[str, ...]:
    """The variant names a config file accepts (its `VARIANTS`; empty when it has none)."""
    return tuple(getattr(_module(resolve_config_path(path)), "VARIANTS", ()))


def load_config(spec: str, overrides: Mapping[str, Any] | None = None) -> ConfigDict:
    """`load_config("configs/toy.py:tiny", {"train.num_steps": 10})` -> a locked ConfigDict.

    Overrides use the dotted names of `--config.a.b=v`; an unknown name raises ConfigError
    naming the closest field, as it does on the command line.
    """
    path, _, variant = spec.partition(":")
    resolved = resolve_config_path(path)
    module = _module(resolved)
    known = tuple(getattr(module, "VARIANTS", ()))
    if variant and hasattr(module, "VARIANTS") and variant not in known:
        raise ConfigError(f"{path} has no variant '{variant}'; "
                          + (f"its variants: {', '.join(known)} (or none, '{path}')."
                             if known else f"it takes none (use '{path}')."))
    config = module.get_config(variant or None)
    config.lock()
    for dotted, value in (overrides or {}).items():
        _set(config, dotted, value)
    return config


def check_field(config: ConfigDict, dotted: str, source: str = "the config") -> None:
    """Raises ConfigError when `dotted` names no field, with the closest one as the fix."""
    node, walked = config, []
    for name in dotted.split("."):
        if not isinstance(node, (ConfigDict, dict)) or name not in node:
            siblings = list(node.keys()) if isinstance(node, (ConfigDict, dict)) else []
            close = difflib.get_close_matches(name, siblings, n=1)
            where = ".".join(walked)
            hint = (f"; did you mean '{'.'.join(walked + close)}'?" if close else
                    f"; fields{' of ' + where if where else ''}: {', '.join(sorted(siblings))}."
                    if siblings else f"; '{where}' is a value, not a section.")
            raise ConfigError(f"{source} has no field '{dotted}'{hint}")
        node, walked = node[name], walked + [name]


def _set(config: ConfigDict, dotted: str, value: Any) -> None:
    check_field(config, dotted)
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
        node = node[name]
    node[leaf] = value
