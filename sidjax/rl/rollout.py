"""The GRPO rollout + update loop on the shared trainer.

`RolloutSource` is the trainer's data iterator. For each rollout it
  1. takes `prompts_per_step` prompts (a seeded, resumable schedule),
  2. samples `group_size` responses per prompt with the KV-cache sampler from the
     trainer's current params (unconstrained, temperature 1 by default),
  3. scores them on host with the reward function, computes group advantages,
  4. computes the old log-probs with the current params (VERL recomputes them too; the
     gap to the sampler's log-probs is logged) and the reference log-probs with the frozen
     init params (optionally kept in host memory between uses),
  5. yields the rollout as `updates_per_rollout` mini-batches, one optimiser step each,
     with rows ordered so no group is split across micro-batches.

Per-rollout statistics (reward mean/std, zero-advantage groups, response and reasoning
length, log-prob gap, rollout/reference/update seconds and the compilation seconds inside
them) go to <workdir>/rollouts.jsonl and the log.

Multi-process: each process rolls out its own contiguous share of the step's prompts
(whole groups), samples and scores only those rows, and feeds them to the trainer as its
rows of the global batch; statistics are gathered so every process logs the same numbers.
With one update per rollout, the global batch is the one a single process would build.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from sidjax.data.padding import bucket_length, left_pad
from sidjax.decode.sampler import sample
from sidjax.decode.sid_tables import SidTables
from sidjax.decode.sid_tail import sample_sid_tail
from sidjax.model.config import ModelConfig
from sidjax.model.logprobs import token_logprobs
from sidjax.rl import grpo
from sidjax.train import compilation, distributed
from sidjax.train import mesh as mesh_lib


@dataclasses.dataclass
class SidTail:
    """Constrained SID tail: after `</think>`, force `separator`, sample the SID along catalog
    edges, then force `end` (forced tokens are not trained on)."""

    tables: SidTables
    think_close: int
    separator: Sequence[int]
    end: Sequence[int]


@dataclasses.dataclass
class RolloutSpec:
    """What to roll out: prompts (token ids), their targets, and how to score a response."""

    prompts: Sequence[Sequence[int]]
    targets: Sequence[Any]
    reward_fn: Callable[[list[int], Any], float]  # (response ids up to the stop, target)
    stop_tokens: Sequence[int]
    pad_id: int
    reasoning_length: Callable[[list[int]], int] | None = None  # Tokens of reasoning.
    tail: SidTail | None = None  # Optional constrained SID tail.


def is_on_policy(cfg: ConfigDict) -> bool:
    """One optimiser update per rollout: every update uses the params that sampled."""
    return int(cfg.updates_per_rollout) == 1


# Padding granularity of the GRPO batch's prompt width (41-token prompts: 48, not a
# power-of-two 64).
WIDTH_MULTIPLE = 16


def padded_width(n: int, multiple: int = WIDTH_MULTIPLE) -> int:
    return max(-(-int(n) // multiple) * multiple, multiple)


def response_width(longest: int, max_tokens: int, buckets: int) -> int:
    """The response columns of a rollout's batch: the smallest of `buckets` evenly spaced
    widths up to `max_tokens` (each a multiple of 16) that holds the longest response. Each
    width compiles the log-prob and update steps once, so `buckets` bounds the compilations
    while a rollout of short responses no longer pays for `max_tokens` columns (measured: a
    step's log-prob passes and update 0.89 -> 0.32 s on the synthetic default, with the
    on-policy shortcut). buckets=1: always `max_tokens`."""
    buckets = max(int(buckets), 1)
    for k in range(1, buckets + 1):
        width = padded_width(-(-max_tokens * k // buckets))
        if width >= longest:
            return width
    return padded_width(longest)  # Only a response longer than max_tokens gets here.


def length_parts(lengths: Sequence[int], parts: int) -> list[np.ndarray]:
    """Row indices of `parts` equal slices of the rows ordered by response length (shortest
    first, ties in row order): each slice is padded only to its own longest response."""
    return np.split(np.argsort(np.asarray(lengths), kind="stable"), parts)


def grpo_loss_fn(config: ModelConfig, cfg: ConfigDict, prompt_width: int = 0):
    """The trainer's loss: the policy loss on the batch's response tokens.

    `prompt_width`: the batch's responses start at this column (RolloutSource.prompt_width),
    so the output head skips the prompt positions (token_logprobs' `first`); 0 = anywhere.

    A batch is either one set of arrays ({"tokens": [B, T], ...}) or, with
    config.grpo.length_parts > 1, {"part_0": {...}, "part_1": {...}} whose parts have their
    own widths; the loss sums, weights and metric pairs of the parts add up, so the loss is
    the one of the whole batch (up to float summation order).
    """

    on_policy = is_on_policy(cfg)

    def loss_fn(params, batch, rng):
        if "tokens" not in batch:  # Length parts: each part's sums add up to the batch's.
            outs = [loss_fn(params, batch[name], rng) for name in sorted(batch)]
            return jax.tree.map(lambda *parts: sum(parts), *outs)
        logp = token_logprobs(config, params, batch["tokens"], batch["valid"], cfg.temperature
                              if cfg.temperature > 0 else 1.0, first=prompt_width)
        # One update per rollout: the policy that sampled is the one being updated, so the
        # old log-probs are these, detached (ratio 1, the same gradient), and the rollout
        # skips a forward pass to compute them (as TRL does with num_iterations=1).
        old_logp = jax.lax.stop_gradient(logp) if on_policy else batch["old_logp"]
        return grpo.policy_loss(
            logp, old_logp, batch["ref_logp"], batch["advantages"],
            batch["response_mask"], clip_low=cfg.clip_low, clip_high=cfg.clip_high,
            dual_clip=cfg.dual_clip or None, kl_coef=cfg.kl_coef, kl_estimator=cfg.kl_estimator,
            aggregation=cfg.aggregation, max_len=cfg.max_len_norm)

    return loss_fn


class RolloutSource:
    """Iterator of GRPO mini-batches; reads `trainer.state.params` for each rollout."""

    def __init__(self, spec: RolloutSpec, cfg: ConfigDict, model_config: ModelConfig,
                 ref_params, micro_batches: int, seed: int, log_dir: str,
                 ref_offload: bool = False):
        self.spec, self.cfg, self.model_config = spec, cfg, model_config
        self.group = int(cfg.group_size)
        processes = jax.process_count()
        if int(cfg.prompts_per_step) % processes:
            raise ValueError(f"config.grpo.prompts_per_step={cfg.prompts_per_step} does not "
                             f"split over {processes} processes (each rolls out whole groups); "
                             f"use a multiple of {processes}.")
        self.local_prompts = int(cfg.prompts_per_step) // processes
        self.rows = self.local_prompts * self.group  # This process's rows per rollout.
        self.updates = int(cfg.updates_per_rollout)
        if self.rows % self.updates or (self.rows // self.updates) % self.group:
            raise ValueError(f"A rollout of {self.local_prompts} prompts x {self.group} "
                             f"responses per process ({processes} processes) does not split "
                             f"into {self.updates} mini-batches of whole groups "
                             "(config.grpo.updates_per_rollout).")
        if int(cfg.sample_batch) % processes:
            raise ValueError(f"config.grpo.sample_batch={cfg.sample_batch} does not split over "
                             f"{processes} processes; use a multiple of {processes}.")
        self.mini = self.rows // self.updates
        self.order = grpo.micro_batch_order(self.mini, self.group, micro_batches)
        self.parts_setting = int(cfg.get("length_parts", 1))
        self.parts = None  # Resolved against the mesh at the first rollout.
        self.micro_batches = int(micro_batches)
        if self.parts_setting < 0 or (self.parts_setting and self.mini % (
                self.parts_setting * self.micro_batches)):
            raise ValueError(f"config.grpo.length_parts={self.parts_setting} does not split a "
                             f"mini-batch of {self.mini} rows per process into equal parts of "
                             f"whole micro-batches ({micro_batches} per part); use 0 (auto), "
                             f"1 or a divisor of {self.mini // self.micro_batches}.")
        # A host copy: the trainer donates its params, so the reference never shares buffers
        # with them. On device (placed like the policy by `place_reference`) unless offloaded.
        self.ref_params = jax.device_get(ref_params)
        self.ref_offload = ref_offload
        self.seed = int(seed)
        self.trainer = None  # Set by the stage before fit().
        self.batches_done = 0
        self._pending: list[dict] = []
        self._last_return = None
        self._compile_at_return = 0.0  # compilation.seconds() when the last batch left.
        self.log_path = os.path.join(log_dir, "rollouts.jsonl")
        self.history: list[dict] = []
        self._log_rewound = False
        self.on_policy = is_on_policy(cfg)
        # One prompt width for the whole run (the longest prompt of the set), so the log-prob
        # and update steps compile once per response width only.
        self.prompt_width = padded_width(distributed.global_max(
            max(map(len, spec.prompts), default=1)))
        temperature = cfg.temperature if cfg.temperature > 0 else 1.0
        self._logp = jax.jit(functools.partial(token_logprobs, model_config,
                                               temperature=temperature, first=self.prompt_width))

    def _resolve_parts(self, mesh) -> int:
        """config.grpo.length_parts for this mesh: 0 (auto) is 2 where the halves split into
        micro-batches over the mesh's batch shards, else 1; other values must split."""
        ways = mesh_lib.batch_divisor(mesh)

        def splits(parts):
            rows = self.mini * jax.process_count()  # Global rows of one update batch.
            return (self.mini % (parts * self.micro_batches) == 0
                    and rows // (parts * self.micro_batches) % ways == 0)

        if self.parts_setting == 0:
            return 2 if splits(2) else 1
        if not splits(self.parts_setting):
            rows = self.mini * jax.process_count() // (self.parts_setting * self.micro_batches)
            raise ValueError(f"config.grpo.length_parts={self.parts_setting} leaves "
                             f"micro-batches of {rows} rows per part, which do not divide over "
                             f"the {ways} batch shards of mesh {dict(mesh.shape)}; use 0 (auto) "
                             "or fewer parts.")
        return self.parts_setting

    def place_reference(self, shardings) -> None:
        if not self.ref_offload:
            self.ref_params = jax.device_put(self.ref_params, shardings)

    # -------------------------------------------------------------- schedule
    def prompt_indices(self, rollout: int) -> np.ndarray:
        n = len(self.spec.prompts)
        per = int(self.cfg.prompts_per_step)
        epoch_len = max(n // per, 1)
        epoch, within = divmod(rollout, epoch_len)
        perm = np.random.default_rng([self.seed, epoch]).permutation(n)
        if n < per:
            perm = np.resize(perm, per)
        return perm[within * per:(within + 1) * per]

    # -------------------------------------------------------------- rollout
    def _rewind_log(self, rollout: int) -> None:
        """Keeps only the rows of rollouts before `rollout` in rollouts.jsonl: a run killed
        after its last checkpoint logged rollouts that the resumed run redoes (and a fresh
        run in a workdir left by a killed one starts from an empty log)."""
        self._log_rewound = True
        if not distributed.is_main() or not os.path.exists(self.log_path):
            return
        with open(self.log_path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        kept = [r for r in rows if int(r.get("rollout", 0)) < rollout]
        if len(kept) != len(rows):
            logging.info("GRPO: dropping %d logged rollouts after the restored rollout %d from "
                         "%s.", len(rows) - len(kept), rollout, self.log_path)
            with open(self.log_path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
        self.history = kept

    def _rollout(self, rollout: int) -> list[dict]:
        if not self._log_rewound:
            self._rewind_log(rollout)
        cfg, spec, group = self.cfg, self.spec, self.group
        params = self.trainer.state.params
        t0 = time.time()
        jax.block_until_ready(params)
        update_s = t0 - self._last_return if self._last_return else 0.0
        waited = time.time() - t0
        compiled_at = compilation.seconds()
        update_compile_s = compiled_at - self._compile_at_return if self._last_return else 0.0
        idx = distributed.process_share(self.prompt_indices(rollout))
        prompts = [list(spec.prompts[i]) for i in idx for _ in range(group)]
        targets = [spec.targets[i] for i in idx for _ in range(group)]
        t1 = time.time()
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), rollout)
        tail = spec.tail
        stops = list(spec.stop_tokens) + ([tail.think_close] if tail else [])
        # sample_batch counts rows over all processes, each sampling its share at once.
        chunk = int(cfg.sample_batch) // jax.process_count() or len(prompts)
        responses, sampled_logp = [], []
        for start in range(0, len(prompts), chunk):  # Bounded KV-cache memory.
            out = sample(self.model_config, params, prompts[start:start + chunk],
                         jax.random.fold_in(key, 1000 + start), cfg.max_response_tokens,
                         cfg.temperature, cfg.top_k, cfg.top_p, stops, spec.pad_id,
                         mesh=self.trainer.mesh)
            responses += [row[:int(n)].tolist() for row, n in zip(out.tokens, out.lengths)]
            sampled_logp += [row[:int(n)] for row, n in zip(out.logprobs, out.lengths)]
        trained = [np.ones(len(r), bool) for r in responses]
        if tail is not None:
            self._add_tails(params, prompts, responses, sampled_logp, trained, key)
        limit = cfg.max_response_tokens + (
            len(tail.separator) + tail.tables.levels + len(tail.end) if tail else 0)
        buckets = int(cfg.get("response_buckets", 1))
        lengths = np.asarray([len(r) for r in responses])
        width = response_width(distributed.global_max(int(lengths.max(initial=1))), limit,
                               buckets)
        rewards = np.asarray([spec.reward_fn(r, t) for r, t in zip(responses, targets)])
        rollout_s = time.time() - t1
        advantages = grpo.group_advantages(rewards, group, cfg.estimator, cfg.eps)

        prompt_tokens, prompt_valid = left_pad(prompts, spec.pad_id, self.prompt_width)
        resp_tokens = np.full((len(prompts), width), spec.pad_id, np.int32)
        resp_valid = np.zeros((len(prompts), width), bool)
        resp_train = np.zeros((len(prompts), width), bool)
        resp_logp = np.zeros((len(prompts), width), np.float32)
        for i, (r, lp, m) in enumerate(zip(responses, sampled_logp, trained)):
            resp_tokens[i, :len(r)], resp_valid[i, :len(r)] = r, True
            resp_train[i, :len(r)], resp_logp[i, :len(r)] = m, lp
        rows_all = {
            "tokens": np.concatenate([prompt_tokens, resp_tokens], 1).astype(np.int32),
            "valid": np.concatenate([prompt_valid, resp_valid], 1),
            "response_mask": np.concatenate([np.zeros_like(prompt_valid), resp_train], 1),
        }
        sampler_logp = np.concatenate([np.zeros_like(prompt_tokens, np.float32), resp_logp], 1)
        t2 = time.time()
        mesh = self.trainer.mesh
        if self.parts is None:
            self.parts = self._resolve_parts(mesh)
        minis, gap_sum, gap_count = [], 0.0, 0
        for u in range(self.updates):
            rows = np.arange(u * self.mini, (u + 1) * self.mini)
            if self.parts == 1:
                blocks = [(rows[self.order], width)]
            else:  # Each part as wide as its own longest response (over all processes).
                blocks = []
                for part in length_parts(lengths[rows], self.parts):
                    longest = distributed.global_max(int(lengths[rows[part]].max(initial=1)))
                    blocks.append((rows[part], response_width(longest, limit, buckets)))
            parts = []
            for block_rows, block_width in blocks:
                cols = self.prompt_width + block_width
                part = {k: v[block_rows, :cols] for k, v in rows_all.items()}
                part["advantages"] = advantages[block_rows]
                part["ref_logp"] = distributed.run_on_rows(
                    functools.partial(self._logp, self.ref_params), mesh, part["tokens"],
                    part["valid"]).astype(np.float32)
                if not self.on_policy:
                    part["old_logp"] = distributed.run_on_rows(
                        functools.partial(self._logp, params), mesh, part["tokens"],
                        part["valid"]).astype(np.float32)
                # How far the sampler's log-probs are from a full forward pass of the same
                # params: against the old pass, or (on-policy, no old pass) against the
                # reference at the first rollout, where the two are the same params.
                check = part.get("old_logp", part["ref_logp"] if rollout == 0 else None)
                if check is not None:
                    mask = part["response_mask"]
                    gap_sum += np.abs(sampler_logp[block_rows, :cols] - check)[mask].sum()
                    gap_count += int(mask.sum())
                parts.append(part)
            minis.append(parts[0] if self.parts == 1 else
                         {f"part_{i}": part for i, part in enumerate(parts)})
        ref_s = time.time() - t2
        gap_sum, gap_count = distributed.gather_rows(np.asarray([[gap_sum, gap_count]])).sum(0)
        # Statistics over every process's rows (identical on all processes).
        all_rewards = distributed.gather_rows(rewards)
        all_lengths = distributed.gather_rows(lengths)
        grouped = all_rewards.reshape(-1, group)
        stats = {
            "step": int(self.trainer.state.step) if self.trainer.state is not None else 0,
            "rollout": rollout,
            "reward_mean": float(np.nanmean(all_rewards)),
            "reward_std": float(np.nanstd(all_rewards)),
            "zero_adv_groups": float(np.mean(np.all(grouped == grouped[:, :1], axis=1))),
            "response_len": float(np.mean(all_lengths)),
            "logp_gap": float(gap_sum / gap_count) if gap_count else None,
            "rollout_s": rollout_s, "ref_s": ref_s, "update_s": update_s + waited,
            # Of which compilation (a new batch width, a first call): rollout + ref here, the
            # previous rollout's update in update_compile_s, as update_s.
            "compile_s": compilation.seconds() - compiled_at,
            "update_compile_s": update_compile_s,
        }
        if spec.reasoning_length is not None:
            stats["reasoning_len"] = float(np.mean(distributed.gather_rows(np.asarray(
                [spec.reasoning_length(r) for r in responses]))))
        self.history.append(stats)
        if distributed.is_main():
            with open(self.log_path, "a") as f:
                f.write(json.dumps(stats) + "\n")
        logging.info("GRPO rollout %d: reward %.3f±%.3f, zero-adv groups %.2f, response %.1f "
                     "tokens, rollout %.1fs, ref %.1fs.", rollout, stats["reward_mean"],
                     stats["reward_std"], stats["zero_adv_groups"], stats["response_len"],
                     rollout_s, ref_s)
        return minis

    def _add_tails(self, params, prompts, responses, sampled_logp, trained, key) -> None:
        """Appends separator + sampled SID + end to every response that closed its think block."""
        tail, spec = self.spec.tail, self.spec
        rows = [i for i, r in enumerate(responses) if r and r[-1] == tail.think_close]
        if distributed.global_max(len(rows)) == 0:  # Every process takes the same branch.
            return
        prefixes = [list(prompts[i]) + responses[i] + list(tail.separator) for i in rows]
        longest = distributed.global_max(max(map(len, prefixes), default=1))
        tokens, valid = left_pad(prefixes, spec.pad_id, bucket_length(longest))
        sid, sid_logp = sample_sid_tail(self.model_config, params, tokens, valid, tail.tables,
                                        jax.random.fold_in(key, 1), self.cfg.temperature,
                                        mesh=self.trainer.mesh)
        sep, end = len(tail.separator), len(tail.end)
        for j, i in enumerate(rows):
            responses[i] = responses[i] + list(tail.separator) + sid[j].tolist() + list(tail.end)
            sampled_logp[i] = np.concatenate([sampled_logp[i], np.zeros(sep), sid_logp[j],
                                              np.zeros(end)])
            trained[i] = np.concatenate([trained[i], np.zeros(sep, bool),
                                         np.ones(sid.shape[1], bool), np.zeros(end, bool)])

    # -------------------------------------------------------------- iterator
    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if not self._pending:
            self._pending = self._rollout(self.batches_done // self.updates)
        self.batches_done += 1
        batch = self._pending.pop(0)
        self._compile_at_return = compilation.seconds()
        self._last_return = time.time()
        return batch

    def get_state(self) -> dict:
        return {"batches_done": self.batches_done, "seed": self.seed}

    def set_state(self, state) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(f"Checkpointed GRPO schedule used seed {state['seed']}, this run "
                             f"uses {self.seed}; resume with the same config.seed.")
        # A rollout interrupted between its mini-batches restarts from its first one.
        self.batches_done = int(state["batches_done"]) // self.updates * self.updates
