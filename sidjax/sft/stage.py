"""Stages 1 and 2: SID-language alignment SFT and reasoning activation, on the shared trainer.

Stage 1 (`configs/sft.py`) trains the method's nine-task mixture; stage 2
(`configs/reason.py`) trains `<think>reasoning</think>\\n\\nSID` responses from the stage-1
export. Both select the best checkpoint by the non-thinking next-SID loss on the valid
split (`valid/sid_loss`, early stopping with `config.eval.patience`) and also log the
title2sid / sid2title losses. Outputs in workdir/<config.sft.dir>/:

  export/        the best checkpoint as an HF model directory + tokenizer (SID tokens
                 included): the next stage's input, loadable by transformers
  ckpt/, best/   trainer checkpoints;   tokens_*.npz  the tokenisation cache
  summary.json   wall time, steps, best/final validation losses, per-task train losses

Where the workdir has no SIDs yet, the `sid` stage runs first; where no teacher corpora
are given, the teacher synthesiser writes them into workdir/teacher/.
A finished stage (summary.json present) is skipped on rerun.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time

import jax
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from sidjax.data import corpora as corpora_lib
from sidjax.data.teacher import synthesize_corpora, template_general_chats
from sidjax.decode.sid_tables import tables_from_catalog
from sidjax.embed.encoders import embed_catalog
from sidjax.eval.evaluate import evaluate_model
from sidjax.model import sid_init
from sidjax.model.hf import load_hf_model, save_hf_model
from sidjax.model.model import Model, init_params
from sidjax.model.setup import build_llm
from sidjax.model.sharding import PARTITION_RULES
from sidjax.model.tokenizer import load_tokenizer, sid_tokens
from sidjax.sft.batches import BucketIterator, eval_batches, tokenize_cached
from sidjax.sft.loss import lm_loss
from sidjax.sid.stage import sid_dataset, standardize
from sidjax.tasks import prompts
from sidjax.tasks import examples as tasks_lib
from sidjax.train import checkpoint as ckpt_lib
from sidjax.train import distributed
from sidjax.train.trainer import Task, Trainer

EXPORT_DIR = "export"


def default_sft_config(stage: int = 1) -> ConfigDict:
    return ConfigDict({
        "stage": stage,
        "dir": "sft" if stage == 1 else "reason",
        # Stage 2 starts from this HF directory; '' = <workdir>/sft/export (stage 1's output).
        "init_from": "",
        "epochs": 10 if stage == 1 else 5,  # Used when config.train.num_steps <= 0.
        "max_len": 1024,  # Truncation keeps the last max_len tokens.
        "general_max_len": 3072,
        "weights": {name: 0.0 if name in tasks_lib.EXTRA_TASKS else 1.0
                    for name in tasks_lib.STAGE1_TASKS},
        # > 0: scale the item-fact task weights (title2sid, sid2title, item_enriched) so they
        # are this share of stage 1's examples, whatever the item/row ratio of the dataset.
        "item_fact_share": 0.0,
        # Stage 2: > 0 mixes stage 1's SID-sequence tasks (tasks.examples.REPLAY_TASKS, at
        # their `weights`) into the reasoning rows as this share of the examples, so stage 2
        # keeps what stage 1 taught (0 = the method: reasoning rows only).
        "replay_share": 0.0,
        "eval_batch_size": 64,
        "eval_examples": 0,  # Cap on valid rows for the validation loss (0 = all).
        "feat_eval_examples": 256,  # title2sid / sid2title rows logged at each eval.
        # Teacher corpora and general chats: '' = synthesised into <workdir>/teacher/.
        "item_enriched_path": "", "narrative_path": "", "general_path": "",
        "general_limit": 60000, "general_template_chats": 500,
        # Valid-split HR@K / NDCG@K by constrained beam search at every evaluation
        # (`valid/hr@10`, `valid/ndcg@10`, ...; select `best/` with eval.metric='valid/hr@10',
        # eval.mode='max'): the first this many valid rows, 0 = off. Stage 1 is scored in
        # non-thinking mode, stage 2 in thinking mode (greedy reasoning, then the beam).
        "hr_eval_examples": 0,
        "hr_eval_beam": 10,
        # Train on the first this many train rows only (0 = all): the overfit check
        # (tests/test_learning.py) trains and scores a few hundred rows.
        "train_rows": 0,
        # Training dropout for this stage; < 0 = config.model.dropout. A per-stage setting
        # because the rate that helps stage 1 can hurt stage 2 (README, "Models that learn").
        "dropout": -1.0,
    })


def _teacher_corpora(config: ConfigDict, dataset, workdir: str) -> dict[str, str]:
    cfg = config.sft
    paths = {"item_enriched": cfg.item_enriched_path, "narrative": cfg.narrative_path}
    if not all(paths.values()):
        out_dir = os.path.join(workdir, "teacher")
        made = {"item_enriched": corpora_lib.item_enhanced_path(out_dir, dataset.name),
                "narrative": corpora_lib.narrative_path(out_dir, dataset.name)}
        if not all(distributed.exists(p) for p in made.values()):
            with distributed.main_writes("teacher-corpora") as writer:
                if writer:  # Process 0 runs the teacher (and its requests) alone.
                    start = time.time()
                    synthesize_corpora(dataset, out_dir, config.teacher)
                    logging.info("Teacher corpora (%s) written to %s in %.1fs.",
                                 config.teacher.backend, out_dir, time.time() - start)
        paths = {k: v or made[k] for k, v in paths.items()}
    for key, path in paths.items():
        if not os.path.exists(path):
            raise FileNotFoundError(f"config.sft.{key}_path='{path}' does not exist.")
    return paths


def build_examples(config: ConfigDict, dataset, workdir: str) -> dict[str, list]:
    """The stage's training tasks (name -> examples)."""
    cfg = config.sft
    paths = _teacher_corpora(config, dataset, workdir)
    rows = corpora_lib.read_narratives(paths["narrative"])
    style = prompt_style(config)
    if cfg.stage == 2:
        tasks = {"reasoning": tasks_lib.reasoning_activation(rows, style)}
        if float(cfg.replay_share) > 0:
            tasks.update(tasks_lib.replay_examples(dataset, "train", style))
        return tasks
    chats = (corpora_lib.read_general_chats(cfg.general_path, cfg.general_limit)
             if cfg.general_path else template_general_chats(cfg.general_template_chats,
                                                             config.seed))
    corpus = {"item_enriched": list(corpora_lib.read_item_enhanced(paths["item_enriched"])
                                    .values()),
              "narrative": [r["integrated_narrative"] for r in rows],
              "general_reasoning": chats}
    return tasks_lib.stage1_examples(dataset, "train", corpus, style=style)


def prompt_style(config: ConfigDict) -> str:
    """The run's prompt style ('method' or 'compact'), from config.model."""
    return prompts.resolve_style(config.model.prompt_style, config.model.hf_path)


def _eval_sets(dataset, rng_seed: int, cfg: ConfigDict, style: str) -> dict[str, list]:
    catalog = dataset.catalog
    valid = list(dataset.split("valid"))
    if cfg.eval_examples and len(valid) > cfg.eval_examples:
        keep = np.random.default_rng(rng_seed).choice(len(valid), cfg.eval_examples, False)
        valid = [valid[i] for i in sorted(keep)]
    rng = np.random.default_rng(rng_seed + 1)

    def subset(examples):
        if len(examples) <= cfg.feat_eval_examples:
            return examples
        return [examples[i] for i in sorted(rng.choice(len(examples), cfg.feat_eval_examples,
                                                       False))]

    return {"sid": tasks_lib.sid_next(catalog, valid, style),
            "title2sid": subset(tasks_lib.title2sid(catalog, style)),
            "sid2title": subset(tasks_lib.sid2title(catalog, style))}


def _sid_vectors(config: ConfigDict, dataset, workdir: str) -> dict | None:
    """`model.sid_init='items'`: each SID token's starting vector from the (z-scored) text
    embeddings of the items that carry it (sidjax/model/sid_init.py); None for 'noise'."""
    init = config.model.get("sid_init", "noise")
    if init not in sid_init.SID_INITS:
        raise ValueError(f"config.model.sid_init='{init}' is not one of {sid_init.SID_INITS}.")
    if init == "noise":
        return None
    catalog = dataset.catalog
    x = standardize(embed_catalog(catalog, config.embed, os.path.join(workdir, "embeddings")))
    return sid_init.residual_token_vectors([catalog.sid_string(i) for i in range(len(catalog))],
                                           x)


def stage_dropout(config: ConfigDict) -> float:
    """The dropout rate this SFT stage trains with: config.sft.dropout, or
    config.model.dropout when that is < 0."""
    rate = float(config.sft.get("dropout", -1.0))
    field = "sft.dropout"
    if rate < 0:
        rate, field = float(config.model.dropout), "model.dropout"
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"config.{field}={rate} (stage {config.sft.stage}) must be in [0, 1) "
                         "(sft.dropout < 0 uses model.dropout).")
    return rate


def _initial_model(config: ConfigDict, dataset, workdir: str, corpus_texts):
    cfg = config.sft
    tokens = sid_tokens(dataset.catalog.sid_strings())
    model_cfg = ConfigDict(config.model.to_dict())
    model_cfg.dropout = stage_dropout(config)
    if cfg.stage == 1:
        return build_llm(model_cfg, tokens, corpus_texts, seed=config.seed,
                         sid_vectors=_sid_vectors(config, dataset, workdir))
    source = cfg.init_from or os.path.join(workdir, "sft", EXPORT_DIR)
    if not os.path.isdir(source):
        raise FileNotFoundError(f"Stage 2 starts from '{source}' (config.sft.init_from), which "
                                "does not exist; run stage 1 (configs/sft.py) with the same "
                                "--workdir first, or set config.sft.init_from.")
    model_cfg.hf_path = source
    return build_llm(model_cfg, tokens, [], seed=config.seed)


def export(model: Model, tokenizer, path: str) -> None:
    """Every process calls it (sharded params are gathered); process 0 writes. It returns
    once the directory is complete."""
    save_hf_model(model, path)
    with distributed.main_writes("export") as writer:
        if writer:
            tokenizer.save_pretrained(path)


def load_export(path: str, dtype: str = "float32", mesh=None) -> tuple[Model, object]:
    """A stage's export directory -> (Model, tokenizer)."""
    return load_hf_model(path, dtype=dtype, mesh=mesh), load_tokenizer(path)


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    cfg = config.sft
    out_dir = os.path.join(workdir, cfg.dir)
    summary_path = os.path.join(out_dir, "summary.json")
    done = distributed.finished_summary(summary_path, f"Stage {cfg.stage}")
    if done is not None:
        return done
    start = time.time()
    dataset = sid_dataset(config, workdir)
    if cfg.train_rows:
        dataset = dataclasses.replace(dataset, splits={
            **dataset.splits, "train": dataset.split("train")[:int(cfg.train_rows)]})
    train_tasks = build_examples(config, dataset, workdir)
    weights = (tasks_lib.item_fact_weights(train_tasks, cfg.weights.to_dict(),
                                           float(cfg.item_fact_share)) if cfg.stage == 1 else
               tasks_lib.replay_weights(train_tasks, cfg.weights.to_dict(),
                                        float(cfg.replay_share)))
    examples = tasks_lib.mix(train_tasks, weights, seed=config.seed)
    model, tokenizer = _initial_model(config, dataset, workdir,
                                      (e.text for e in examples[:20000]))
    task_names = tuple(train_tasks)
    general = [e for e in examples if e.task == "general_reasoning"]
    others = [e for e in examples if e.task != "general_reasoning"]
    cache = out_dir
    train = tokenize_cached(others, tokenizer, cfg.max_len, task_names, cache)
    if general:
        extra = tokenize_cached(general, tokenizer, cfg.general_max_len, task_names, cache)
        train.ids += extra.ids
        train.masks += extra.masks
        train.task = np.concatenate([train.task, extra.task])
    pad_id = int(tokenizer.pad_token_id)
    iterator = BucketIterator(train, int(config.train.batch_size), pad_id, config.seed,
                              largest=max(cfg.max_len, cfg.general_max_len))
    per_task = {name: int((train.task == i).sum()) for i, name in enumerate(task_names)}
    logging.info("Stage %d: %d examples (%s), %d supervised tokens, %d batches per epoch.",
                 cfg.stage, len(train), per_task, train.supervised_tokens(),
                 iterator.batches_per_epoch)

    run_config = ConfigDict(config.to_dict())
    if run_config.train.num_steps <= 0:
        run_config.train.num_steps = int(cfg.epochs * iterator.batches_per_epoch)
    if run_config.eval.every_steps < 0:
        run_config.eval.every_steps = iterator.batches_per_epoch
    model_config = model.config
    eval_sets = {name: eval_batches(tokenize_cached(
        ex, tokenizer, cfg.max_len, tuple(sorted({e.task for e in ex}))), cfg.eval_batch_size,
        pad_id) for name, ex in _eval_sets(dataset, config.seed, cfg,
                                           prompt_style(config)).items()}
    eval_loss = jax.jit(functools.partial(_sum_count, model_config))
    hr_rows = list(dataset.split("valid"))[:int(cfg.hr_eval_examples)]
    if hr_rows and jax.process_count() > 1:
        raise ValueError(f"config.sft.hr_eval_examples={cfg.hr_eval_examples}: valid HR by beam "
                         "search runs in single-process runs only; set it to 0 and "
                         "eval.metric='valid/sid_loss' (mode 'min') for multi-process runs.")
    hr_tables = tables_from_catalog(dataset.catalog, tokenizer) if hr_rows else None
    style = prompt_style(config)

    def eval_fn(params):
        out = {}
        for name, batches in eval_sets.items():
            total = count = 0.0
            for batch in batches:
                s, c = eval_loss(params, batch)
                total, count = total + float(s), count + float(c)
            out[f"valid/{name}_loss" if name == "sid" else f"{name}_loss"] = total / max(count, 1)
        if hr_rows:
            result = evaluate_model(
                Model(model_config, params), tokenizer, dataset.catalog, hr_rows,
                "nonthinking" if cfg.stage == 1 else "thinking", int(cfg.hr_eval_beam),
                max_reasoning_tokens=int(config.evaluation.max_reasoning_tokens),
                renormalize=bool(config.evaluation.renormalize), tables=hr_tables,
                nonthinking_variant="train", style=style)
            out.update({f"valid/{k}": v for k, v in result.metrics.items()
                        if k.startswith(("hr@", "ndcg@"))})
        return out

    task = Task(init_params=lambda rng: init_params(model_config, rng),
                loss_fn=lambda p, b, r: lm_loss(model_config, task_names, p, b, r),
                partition_rules=PARTITION_RULES, eval_fn=eval_fn, initial_params=model.params)
    trainer = Trainer(run_config, out_dir, task)
    result = trainer.fit(iterator)
    trainer.close()
    with jax.set_mesh(trainer.mesh):
        best = ckpt_lib.load_params(out_dir, ckpt_lib.abstract_with_shardings(
            trainer.abstract_state.params, trainer.shardings.params))
    export(Model(model_config, best), tokenizer, os.path.join(out_dir, EXPORT_DIR))
    summary = {
        "stage": cfg.stage, "wall_s": time.time() - start, "steps": int(result.state.step),
        "num_steps": run_config.train.num_steps, "batches_per_epoch": iterator.batches_per_epoch,
        "examples": len(train), "examples_per_task": per_task,
        "best_step": result.best_step, "eval_metric": run_config.eval.metric,
        "best_value": result.best_value,
        "final_eval": result.eval_metrics, "stopped_early": result.stopped_early,
        "final_train": result.last_metrics, "steps_per_sec": result.steps_per_sec,
        "params": model_config.num_params(), "dropout": model_config.dropout,
    }
    with distributed.main_writes("sft-summary") as writer:
        if writer:
            with open(summary_path, "w") as f:
                json.dump(summary, f, indent=1)
    logging.info("Stage %d done in %.0fs: best %s %.4f at step %s (of %d).",
                 cfg.stage, summary["wall_s"], run_config.eval.metric,
                 result.best_value or math.nan, result.best_step, summary["steps"])
    return summary


def _sum_count(model_config, params, batch):
    loss_sum, (count, _) = lm_loss(model_config, (), params, batch)
    return loss_sum, count
