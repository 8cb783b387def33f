"""Stage configs (`get_config(variant)` in each file). Installed as `sidjax.configs`, so
`sidjax.config_files.load_config("grpo.py:tiny")` and `--config=configs/grpo.py` find them from
any directory."""
