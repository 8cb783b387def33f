"""Stage 3: GRPO from the stage-2 export (sidreasoner_method.md section 8).

Prompts are the stage-2/RL prompt (ending at `<|im_start|>assistant\\n`) for the teacher
narrative rows (as the method) or all training samples; responses are sampled
unconstrained at temperature 1; the reward is `config.grpo.rewards` (default the method's
step rule) on the decoded response. Validation: greedy responses to valid-split prompts,
their mean reward, exact-match rate and reasoning length (the method validates the same
way). Outputs in workdir/grpo/:

  export/           final policy as an HF model + tokenizer
  rollouts.jsonl    per rollout: reward mean/std, zero-advantage groups, lengths, timings
  grpo_curves.png   reward (raw and smoothed), validation reward and reasoning length vs step
  summary.json      timings (rollout / reference / update split), validation before/after
A finished stage (summary.json present) is skipped on rerun.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

import jax
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from sidjax.data import corpora
from sidjax.decode.sampler import sample
from sidjax.eval.evaluate import thinking_prompt
from sidjax.model.chat import THINK_CLOSE
from sidjax.model.model import Model, init_params
from sidjax.model.setup import resolve_scan_unroll
from sidjax.model.sharding import PARTITION_RULES
from sidjax.rl import rewards as rewards_lib
from sidjax.rl.curves import plot_curves, validation_series
from sidjax.decode.sid_tables import tables_from_catalog
from sidjax.rl.rollout import RolloutSource, RolloutSpec, SidTail, grpo_loss_fn
from sidjax.train import distributed
from sidjax.train.trainer import Task, Trainer


def default_grpo_config() -> ConfigDict:
    """The method's GRPO settings (section 8); CPU variants shrink the batch sizes."""
    return ConfigDict({
        "init_from": "",  # HF export to start from; '' = <workdir>/reason/export.
        "steps": 100,  # Rollouts (each followed by updates_per_rollout optimiser steps).
        "prompts_per_step": 256,
        "group_size": 16,
        "updates_per_rollout": 1,
        "temperature": 1.0, "top_k": 0, "top_p": 1.0,
        "max_response_tokens": 1024,
        # The update batch is as wide as the smallest of this many evenly spaced widths up to
        # max_response_tokens that holds the rollout's longest response (sidjax.rl.rollout.
        # response_width): at most this many compilations; 1 = always max_response_tokens.
        "response_buckets": 4,
        # Rows of each update batch sorted by response length and split into this many equal
        # parts, each as wide as its own longest response; the loss and gradient are the
        # whole batch's (sidjax.rl.rollout.length_parts). Measured on bench/grpo_step.py's
        # model (responses 1-128 tokens, mean 55): reference pass + update 0.53 s with 1 part,
        # 0.39 with 2, 0.33 with 4, but a new tuple of part widths compiles the update again
        # (4 s with 1 part, 7 with 2, 9 with 4). 0 = auto: 2 where the halves divide into
        # micro-batches over the mesh, else 1.
        "length_parts": 0,
        # Rows sampled at once over all processes (0 = the whole rollout); bounds KV memory.
        "sample_batch": 0,
        # After </think>, force "\n\n" and sample the SID along catalog edges, then EOS (the
        # method samples unconstrained: False).
        "constrained_tail": False,
        # Weights of sidjax.rl.rewards.REWARDS; the method's is step_rule alone. overlong
        # (-1 for a response cut at max_response_tokens) is DAPO's overlong punishment.
        "rewards": {"step_rule": 1.0, "overlong": 0.0},
        "estimator": "grpo", "eps": 1e-6,
        "clip_low": 0.2, "clip_high": 0.2, "dual_clip": 3.0,
        "kl_coef": 0.001, "kl_estimator": "k3",
        "aggregation": "token-mean",
        "max_len_norm": 1024,  # Dr. GRPO's fixed length (aggregation 'fixed-length').
        "ref_offload": False,  # Keep the reference params in host memory between uses.
        # Layers unrolled in the policy's layer scan (log-prob passes and update): 0 = auto,
        # all of them on a CPU (measured on bench/grpo_step.py's tiny model: update 0.43 ->
        # 0.33 s per step), 1 (a rolled scan, fastest to compile) on accelerators.
        "scan_unroll": 0,
        "prompt_source": "narrative",  # Teacher narrative rows (the method) or 'train'.
        "eval_every": 50, "eval_examples": 256,
    })


def _prompt_rows(config: ConfigDict, dataset, workdir: str) -> list[tuple[list[str], str]]:
    cfg = config.grpo
    if cfg.prompt_source == "narrative":
        path = config.sft.narrative_path or corpora.narrative_path(
            os.path.join(workdir, "teacher"), dataset.name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"GRPO prompts come from the narrative corpus '{path}', "
                                    "which does not exist; run stage 1 first or set "
                                    "config.grpo.prompt_source='train'.")
        return [(r["history_item_sid"], r["item_sid"]) for r in corpora.read_narratives(path)]
    if cfg.prompt_source == "train":
        catalog = dataset.catalog
        return [([catalog.sid_string(i) for i in s.history], catalog.sid_string(s.target))
                for s in dataset.split("train")]
    raise ValueError(f"config.grpo.prompt_source='{cfg.prompt_source}': use narrative or train.")


def reasoning_tokens(think_close: int, ids: list[int]) -> int:
    """Tokens before the first </think> (all of them when it never closes)."""
    return ids.index(think_close) if think_close in ids else len(ids)


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    from sidjax.sft.stage import EXPORT_DIR, export, load_export, prompt_style
    from sidjax.sid.stage import sid_dataset

    cfg = config.grpo
    out_dir = os.path.join(workdir, "grpo")
    summary_path = os.path.join(out_dir, "summary.json")
    done = distributed.finished_summary(summary_path, "GRPO")
    if done is not None:
        return done
    with distributed.main_writes("grpo-dir") as writer:
        if writer:
            os.makedirs(out_dir, exist_ok=True)
    start = time.time()
    dataset = sid_dataset(config, workdir)
    source_dir = cfg.init_from or os.path.join(workdir, "reason", EXPORT_DIR)
    if not os.path.isdir(source_dir):
        raise FileNotFoundError(f"GRPO starts from '{source_dir}' (config.grpo.init_from), which "
                                "does not exist; run stage 2 (configs/reason.py) with the same "
                                "--workdir first.")
    model, tokenizer = load_export(source_dir, dtype=config.model.dtype)
    model = dataclasses.replace(model, config=model.config.replace(
        scan_unroll=resolve_scan_unroll(cfg.scan_unroll, model.config.num_layers)))
    rows = _prompt_rows(config, dataset, workdir)
    style = prompt_style(config)
    prompt_ids = tokenizer([thinking_prompt(h, style) for h, _ in rows],
                           add_special_tokens=False)["input_ids"]
    valid_sids = set(dataset.catalog.sid_strings())
    reward = rewards_lib.combine(cfg.rewards.to_dict())

    def truncated(ids) -> bool:  # Cut at max_response_tokens: no EOS at the end.
        return not ids or ids[-1] != tokenizer.eos_token_id

    def reward_fn(ids, target):
        return reward(tokenizer.decode(ids, skip_special_tokens=True), target, valid_sids,
                      truncated=truncated(ids))

    think_close = tokenizer.convert_tokens_to_ids(THINK_CLOSE)
    tail = None
    if cfg.constrained_tail:
        tail = SidTail(tables=tables_from_catalog(dataset.catalog, tokenizer, end_text=()),
                       think_close=think_close,
                       separator=tokenizer.encode("\n\n", add_special_tokens=False),
                       end=[tokenizer.eos_token_id])
    spec = RolloutSpec(prompts=prompt_ids, targets=[t for _, t in rows], reward_fn=reward_fn,
                       stop_tokens=[tokenizer.eos_token_id], pad_id=int(tokenizer.pad_token_id),
                       reasoning_length=functools.partial(reasoning_tokens, think_close),
                       tail=tail)

    valid_rows = [([dataset.catalog.sid_string(i) for i in s.history],
                   dataset.catalog.sid_string(s.target)) for s in dataset.split("valid")]
    # Each process generates and scores its contiguous share of the validation prompts.
    valid_rows = distributed.process_share(valid_rows[:cfg.eval_examples])
    valid_prompts = tokenizer([thinking_prompt(h, style) for h, _ in valid_rows],
                              add_special_tokens=False)["input_ids"] if valid_rows else []
    mc = model.config
    mesh = None  # Set with the trainer: validation runs on its mesh and params.

    def eval_fn(params):
        out = sample(mc, params, valid_prompts, jax.random.PRNGKey(0), cfg.max_response_tokens,
                     temperature=0.0, stop_tokens=spec.stop_tokens, pad_id=spec.pad_id,
                     mesh=mesh)
        responses = [row[:int(n)].tolist() for row, n in zip(out.tokens, out.lengths)]
        texts = [tokenizer.decode(r, skip_special_tokens=True) for r in responses]
        scores = np.asarray([
            [reward(t, tgt, valid_sids, truncated=truncated(r)),
             rewards_lib.exact_match_reward(t, tgt, valid_sids),
             spec.reasoning_length(r)]
            for t, r, (_, tgt) in zip(texts, responses, valid_rows)]).reshape(-1, 3)
        sums = distributed.gather_rows(np.concatenate([scores.sum(0), [len(scores)]])[None])
        total = sums.sum(0)
        mean = total[:3] / max(total[3], 1)
        return {"val/reward": float(mean[0]), "val/exact_match": float(mean[1]),
                "val/reasoning_len": float(mean[2])}

    run_config = ConfigDict(config.to_dict())
    updates = int(cfg.updates_per_rollout)
    run_config.train.num_steps = int(cfg.steps) * updates
    run_config.train.batch_size = int(cfg.prompts_per_step) * int(cfg.group_size) // updates
    run_config.eval.every_steps = int(cfg.eval_every) * updates
    run_config.eval.metric = ""  # The method evaluates the policy at a fixed step.
    source = RolloutSource(spec, cfg, mc, model.params, int(config.train.micro_batches),
                           config.seed, out_dir, cfg.ref_offload)
    task = Task(init_params=lambda rng: init_params(mc, rng),
                loss_fn=grpo_loss_fn(mc, cfg, source.prompt_width),
                partition_rules=PARTITION_RULES, eval_fn=eval_fn, initial_params=model.params)
    trainer = Trainer(run_config, out_dir, task)
    mesh = trainer.mesh
    initial_eval = eval_fn(jax.device_put(model.params, trainer.shardings.params))
    logging.info("GRPO start: validation %s", initial_eval)
    source.trainer = trainer
    source.place_reference(trainer.shardings.params)
    trainer.init_or_restore(source)
    result = trainer.fit(source)
    trainer.close()
    export(Model(mc, result.state.params), tokenizer, os.path.join(out_dir, EXPORT_DIR))
    history = [json.loads(line) for line in open(source.log_path)]
    if distributed.is_main():
        validation = validation_series(os.path.join(out_dir, "metrics.jsonl"), updates,
                                       initial_eval["val/reward"])
        plot_curves(history, os.path.join(out_dir, "grpo_curves.png"), validation)

    def mean(key, part):
        values = [h[key] for h in part if key in h]
        return float(np.mean(values)) if values else None

    summary = {
        "wall_s": time.time() - start, "steps": int(result.state.step),
        "prompts": len(rows), "val_before": initial_eval, "val_after": result.eval_metrics,
        "reward_first5": mean("reward_mean", history[:5]),
        "reward_last5": mean("reward_mean", history[-5:]),
        "reasoning_len_first5": mean("reasoning_len", history[:5]),
        "reasoning_len_last5": mean("reasoning_len", history[-5:]),
        "rollout_s": mean("rollout_s", history), "ref_s": mean("ref_s", history),
        "update_s": mean("update_s", history[1:]),
        "final_train": result.last_metrics,
    }
    with distributed.main_writes("grpo-summary") as writer:
        if writer:
            with open(summary_path, "w") as f:
                json.dump(summary, f, indent=1)
    logging.info("GRPO done in %.0fs: reward %.3f -> %.3f; validation reward %.3f -> %.3f.",
                 summary["wall_s"], summary["reward_first5"] or 0, summary["reward_last5"] or 0,
                 initial_eval["val/reward"], result.eval_metrics.get("val/reward", float("nan")))
    return summary
