"""Up-front checks of config values that would otherwise fail deep inside a stage.

A negative batch size used to surface as `IndexError: list index out of range`, a negative
prompt count as `negative dimensions are not allowed`, and a GRPO group of one ran to the
end with zero advantage on every rollout (it cannot learn). `check_config` names the field,
the value and the fix before any work starts.
"""

from __future__ import annotations

from ml_collections import ConfigDict


class ConfigError(ValueError):
    """A config value that cannot work: the message names the field and the fix."""


def _get(config: ConfigDict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, (ConfigDict, dict)) or part not in node:
            return None
        node = node[part]
    return node


# field -> (smallest allowed value, what the field means). Checked wherever present.
_MINIMUMS = {
    "train.batch_size": (1, "the global batch size"),
    "train.micro_batches": (1, "gradient-accumulation steps per update"),
    "optim.lr": (0.0, "the learning rate"),
    "grpo.prompts_per_step": (1, "prompts sampled per GRPO step"),
    "grpo.group_size": (2, "responses per prompt; group-normalised advantages need at least "
                           "two, a group of one has zero advantage and GRPO cannot learn"),
    "grpo.steps": (0, "GRPO steps"),
    "grpo.max_response_tokens": (1, "the rollout length"),
    "evaluation.beam": (1, "the beam width"),
    "evaluation.max_examples": (0, "evaluated rows (0 = all)"),
    "evaluation.batch_size": (1, "the evaluation batch size"),
    "sft.max_len": (8, "the training sequence length"),
}


# field -> the values it may take. Checked wherever present.
_CHOICES = {
    "model.tokenizer_kind": ("bpe", "sentencepiece"),
    "model.sid_init": ("noise", "items"),
}


def check_config(config: ConfigDict) -> None:
    """Raises ConfigError for the first value below its minimum or outside its choices (top
    level, then each pipeline stage section)."""
    sections = [("", config)]
    for stage in ("stage1", "stage2"):
        section = _get(config, f"pipeline.{stage}")
        if section is not None:
            sections.append((f"pipeline.{stage}.", section))
    for prefix, section in sections:
        for field, (minimum, meaning) in _MINIMUMS.items():
            value = _get(section, field)
            if value is None or isinstance(value, str):
                continue
            if value < minimum:
                raise ConfigError(
                    f"config.{prefix}{field}={value}: {meaning} must be at least {minimum}; "
                    f"set --config.{prefix}{field}=<value >= {minimum}>.")
        for field, choices in _CHOICES.items():
            value = _get(section, field)
            if value is not None and value not in choices:
                raise ConfigError(
                    f"config.{prefix}{field}='{value}' is not one of {choices}; set "
                    f"--config.{prefix}{field}={choices[0]} (or another of them).")
