"""One whole GRPO step: sidjax's GRPO stage vs TRL's GRPOTrainer, same model, same work, same run.

    python bench/grpo_step.py [--workdir /tmp/sidjax_bench_grpo] [--rounds 3] [--steps 4]

Both sides start from one tiny Qwen3: the tiny pipeline's stage-2 model (`configs/grpo.py:tiny`,
trained here on first use, about 4 minutes), exported by `save_hf_model`, so they hold the same
weights and tokenizer. Same stage-2 prompts (the GRPO stage's teacher-narrative rows of the
synthetic store), 8 prompts x 8 responses per step, temperature 1, at most 128 new tokens, the
method's step-rule reward, k3 KL to a frozen reference with coefficient 0.001, token-mean
loss (TRL's `dapo`), one update per rollout, float32, CPU. TRL runs with transformers
generation (no vLLM), gradient checkpointing and dropout off.

Each side's step is split into rollout (sampling + reward), log-probs (old and reference
passes) and update (loss, backward, optimiser). Rounds alternate the two sides (`--steps`
GRPO steps each, a fresh run per round) so drift in the machine's speed hits both; the first
step of every round (compilation, warm-up) is left out and the medians of the rest compared.

sidjax compiles its log-prob pass and update once per new batch width (JAX, like every XLA
program), and those compilations also fall in later steps: a step whose rollout, log-probs
or update compiled is marked by the GRPO stage's `compile_s` / `update_compile_s`. The
table's "step" row is the median over all steps after the first; "step, no compile" over
sidjax's steps without compilation (the steady state a long run spends its time in) against
all of TRL's (eager PyTorch compiles nothing). sidjax runs with the persistent compilation
cache as `sidjax.main` does (sidjax.train.compilation: `SIDJAX_COMPILE_CACHE`, default
~/.cache/sidjax/xla), so a program compiled in an earlier round or an earlier run of this
benchmark is loaded rather than compiled again, tracing still paid; `SIDJAX_COMPILE_CACHE=off`
measures every round cold.
Needs the `bench` extra: `pip install -e ".[bench]"` (TRL, plus torch).
"""

import argparse
import collections
import json
import os
import shutil
import tempfile
import time

from sidjax.train import compilation, host_memory

# As sidjax.main does, before jax is imported; torch runs in this process too, under the
# same setting.
KEPT_FREED_MEMORY = host_memory.keep_freed_memory_on_cpu()
COMPILE_CACHE = compilation.enable_cache()

import numpy as np  # noqa: E402

from sidjax import stages  # noqa: E402
from sidjax.config_files import load_config  # noqa: E402

PARTS = ("rollout", "logprobs", "update")
# A step that spent more than this compiling (tracing, lowering, XLA) counts as compiling.
COMPILING_S = 0.05
# The fixed work per step.
PROMPTS, GROUP, MAX_NEW, KL, LR = 8, 8, 128, 0.001, 2e-5


def base_workdir(path: str) -> str:
    """A workdir with the tiny pipeline's SIDs, teacher corpora and stage-2 export."""
    if not os.path.isdir(os.path.join(path, "reason", "export")):
        print(f"Training the tiny pipeline's stages 1-2 into {path} (first use only)...")
        config = load_config("grpo.py:tiny", {"pipeline.stages": "sid,sft,reason",
                                              "log.tensorboard": False})
        stages.train_and_evaluate(config, path)
    return path


def grpo_overrides(steps: int) -> dict:
    return {
        "pipeline.stages": "grpo", "grpo.steps": steps, "grpo.prompts_per_step": PROMPTS,
        "grpo.group_size": GROUP, "grpo.max_response_tokens": MAX_NEW,
        "grpo.temperature": 1.0, "grpo.kl_coef": KL, "grpo.kl_estimator": "k3",
        "grpo.aggregation": "token-mean", "grpo.updates_per_rollout": 1,
        "grpo.constrained_tail": False, "grpo.sample_batch": 0,
        "grpo.eval_every": 10 ** 6, "grpo.eval_examples": 8, "optim.lr": LR,
        "model.dtype": "float32", "train.micro_batches": 1,
        "ckpt.every_steps": 10 ** 6, "ckpt.every_minutes": 0.0,
        "log.tensorboard": False, "log.progress": False,
    }


def sidjax_round(workdir: str, steps: int) -> list[dict]:
    """One fresh GRPO stage run; per-step seconds from rollouts.jsonl for `steps` steps after
    the first (which compiles). A step's update is timed at the next rollout, hence + 2."""
    shutil.rmtree(os.path.join(workdir, "grpo"), ignore_errors=True)
    config = load_config("grpo.py:tiny", grpo_overrides(steps + 2))
    stages.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "grpo", "rollouts.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    out = []
    for step, nxt in zip(rows[1:-1], rows[2:]):
        out.append({"rollout": step["rollout_s"], "logprobs": step["ref_s"],
                    "update": nxt["update_s"], "response_len": step["response_len"],
                    "compile": step["compile_s"] + nxt["update_compile_s"]})
    return out


def prompts_and_targets(workdir: str) -> tuple[list[str], list[str], set]:
    """The GRPO stage's prompt texts and targets, and the catalog's SIDs (for the reward)."""
    from sidjax.eval.evaluate import thinking_prompt
    from sidjax.rl.stage import _prompt_rows
    from sidjax.sft.stage import prompt_style
    from sidjax.sid.stage import sid_dataset

    config = load_config("grpo.py:tiny")
    dataset = sid_dataset(config, workdir)
    rows = _prompt_rows(config, dataset, workdir)
    style = prompt_style(config)
    return ([thinking_prompt(h, style) for h, _ in rows], [t for _, t in rows],
            set(dataset.catalog.sid_strings()))


def trl_round(export: str, prompts, targets, valid_sids, steps: int, seed: int) -> list[dict]:
    """One fresh GRPOTrainer run of `steps + 1` steps; per-step seconds by part."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from sidjax.rl.rewards import step_rule_reward

    def step_rule(prompts, completions, target, **_):
        return [step_rule_reward(c, t, valid_sids) for c, t in zip(completions, target)]

    timers = collections.defaultdict(float)
    spans = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, *args, **kwargs):
            timers.clear()
            self.start = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            spans.append((time.perf_counter() - self.start, dict(timers)))

    out_dir = tempfile.mkdtemp(prefix="trl_grpo_")
    args = GRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=PROMPTS * GROUP,
        gradient_accumulation_steps=1, num_generations=GROUP, max_completion_length=MAX_NEW,
        temperature=1.0, top_p=1.0, top_k=0, beta=KL, loss_type="dapo", num_iterations=1,
        epsilon=0.2, learning_rate=LR, lr_scheduler_type="constant", max_steps=steps + 1,
        logging_steps=1, report_to="none", use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=False, disable_dropout=True, save_strategy="no", seed=seed,
        model_init_kwargs={"dtype": torch.float32}, log_completions=False,
        dataloader_num_workers=0)
    tokenizer = AutoTokenizer.from_pretrained(export)
    tokenizer.padding_side = "left"
    trainer = GRPOTrainer(model=export, reward_funcs=[step_rule], args=args,
                          train_dataset=Dataset.from_dict({"prompt": prompts, "target": targets}),
                          processing_class=tokenizer, callbacks=[StepClock()])

    def timed(name, fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[name] += time.perf_counter() - start
        return wrapper

    trainer._generate = timed("generate", trainer._generate)
    trainer._calculate_rewards = timed("rewards", trainer._calculate_rewards)
    trainer._generate_and_score_completions = timed("score",
                                                    trainer._generate_and_score_completions)
    trainer.train()
    shutil.rmtree(out_dir, ignore_errors=True)
    rows = []
    for total, t in spans[1:]:  # The first step warms up.
        rollout = t.get("generate", 0.0) + t.get("rewards", 0.0)
        logprobs = t.get("score", 0.0) - rollout
        rows.append({"rollout": rollout, "logprobs": logprobs,
                     "update": total - t.get("score", 0.0)})
    return rows


def medians(rows: list[dict]) -> dict:
    out = {k: float(np.median([r[k] for r in rows])) for k in PARTS}
    out["step"] = float(np.median([sum(r[k] for k in PARTS) for r in rows]))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="/tmp/sidjax_bench_grpo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round and side")
    args = parser.parse_args()
    workdir = base_workdir(args.workdir)
    export = os.path.join(workdir, "reason", "export")
    prompts, targets, valid_sids = prompts_and_targets(workdir)
    results = {"sidjax": [], "trl": []}
    for round_ in range(args.rounds):
        results["sidjax"] += sidjax_round(workdir, args.steps)
        results["trl"] += trl_round(export, prompts, targets, valid_sids, args.steps, round_)
        print(f"round {round_ + 1}/{args.rounds}: sidjax step "
              f"{medians(results['sidjax'])['step']:.2f}s, TRL step "
              f"{medians(results['trl'])['step']:.2f}s (medians so far)", flush=True)
    table = {side: medians(rows) for side, rows in results.items()}
    steady = [r for r in results["sidjax"] if r["compile"] <= COMPILING_S]
    table["sidjax"]["step_no_compile"] = medians(steady)["step"] if steady else float("nan")
    table["trl"]["step_no_compile"] = table["trl"]["step"]
    compiling = [r["compile"] for r in results["sidjax"] if r["compile"] > COMPILING_S]
    print(f"\nGRPO step, {PROMPTS} prompts x {GROUP} responses, <= {MAX_NEW} new tokens, "
          f"float32 CPU; medians of {len(results['sidjax'])} steps per side "
          f"(sidjax mean response {np.mean([r['response_len'] for r in results['sidjax']]):.0f}"
          f" tokens; {len(compiling)} sidjax steps compiled, {sum(compiling):.1f} s in all; "
          f"compilation cache {COMPILE_CACHE or 'off'})")
    print(f"{'part':<17} {'sidjax s':>9} {'TRL s':>9} {'TRL/sidjax':>11}")
    for part in PARTS + ("step", "step_no_compile"):
        s, t = table["sidjax"][part], table["trl"][part]
        name = "step, no compile" if part == "step_no_compile" else part
        print(f"{name:<17} {s:9.3f} {t:9.3f} {t / max(s, 1e-9):10.2f}x")
    print(json.dumps({"grpo_step_seconds": table,
                      "speedup_whole_step": table["trl"]["step"] / table["sidjax"]["step"],
                      "speedup_steady_step": table["trl"]["step"] / table["sidjax"][
                          "step_no_compile"],
                      "sidjax_compiling_steps": len(compiling),
                      "sidjax_steps": len(results["sidjax"]),
                      "compilation_cache": COMPILE_CACHE,
                      "glibc_keep_freed_memory": KEPT_FREED_MEMORY}))


if __name__ == "__main__":
    main()
