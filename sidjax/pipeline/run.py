"""The `pipeline` stage: every stage in order, each skipped when its outputs exist.

sid (data, embeddings, SIDs) -> sasrec (the ID baseline) -> sft (stage 1) -> reason (stage 2)
-> grpo (stage 3) -> eval (beam search, baselines), then the results table with example reasoning traces
(workdir/results.md, also printed).
"""

from __future__ import annotations

import json
import os
import time

from absl import logging
from ml_collections import ConfigDict

from sidjax.pipeline.defaults import stage_config
from sidjax.train import distributed

ORDER = ("sid", "sasrec", "sft", "reason", "grpo", "eval")


def _traces(workdir: str, n: int = 3) -> str:
    path = os.path.join(workdir, "eval", "predictions_stage3.jsonl")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        records = [json.loads(line) for line in f]
    # The first test rows, hit or miss: typical traces, not the best ones.
    out = ["", f"## Example reasoning traces (after stage 3, the first {n} test rows)", ""]
    for r in records[:n]:
        history = "; ".join(f'{s} "{t}"' for s, t in zip(r["history_sids"], r["history_titles"]))
        out += [f"- **History**: {history}",
                f"  - **Reasoning**: {r['reasoning']}",
                "  - **Top 3**: " + " / ".join(r["top_rendered"][:3]),
                f"  - **Target**: {r['target_sid']} \"{r['target_title']}\" "
                f"(rank {r['hit_rank'] if r['hit_rank'] is not None else 'miss'})", ""]
    return "\n".join(out)


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    from sidjax.eval import stage as eval_stage
    from sidjax.rl import stage as grpo_stage
    from sidjax.sasrec import stage as sasrec_stage
    from sidjax.sft import stage as sft_stage
    from sidjax.sid.stage import sid_dataset

    stages = [s.strip() for s in config.pipeline.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(ORDER))
    if unknown:
        raise ValueError(f"config.pipeline.stages has unknown stages {unknown}; use {ORDER}.")
    timings = {}
    for name in ORDER:
        if name not in stages:
            continue
        start = time.time()
        logging.info("=== pipeline: %s ===", name)
        if name == "sid":
            sid_dataset(config, workdir)
        elif name == "sasrec":
            sasrec_stage.train_and_evaluate(config, workdir)
        elif name == "sft":
            sft_stage.train_and_evaluate(stage_config(config, 1), workdir)
        elif name == "reason":
            sft_stage.train_and_evaluate(stage_config(config, 2), workdir)
        elif name == "grpo":
            grpo_stage.train_and_evaluate(config, workdir)
        else:
            result = eval_stage.train_and_evaluate(config, workdir)
        timings[name] = time.time() - start
    report = ""
    if "eval" in stages:
        labels = {"transition": "transition counter", "last_item": "last-item table",
                  "stage1": "after stage 1 (non-thinking)", "stage2": "after stage 2 (thinking)",
                  "stage3": "after stage 3 / GRPO (thinking)"}
        table = result["table"]
        for key, text in labels.items():
            table = table.replace(f"| {key} |", f"| {text} |")
        report = (f"# sidjax pipeline results ({config.evaluation.split} split)\n\n{table}"
                  + _traces(workdir))
        grpo_summary = os.path.join(workdir, "grpo", "summary.json")
        if os.path.exists(grpo_summary):
            with open(grpo_summary) as f:
                g = json.load(f)
            report += (f"\n## GRPO\n\nTrain reward (mean of first/last 5 rollouts): "
                       f"{g['reward_first5']:.3f} -> {g['reward_last5']:.3f}; validation "
                       f"reward {g['val_before']['val/reward']:.3f} -> "
                       f"{g['val_after'].get('val/reward', float('nan')):.3f}; reasoning "
                       f"tokens {g['reasoning_len_first5']:.1f} -> "
                       f"{g['reasoning_len_last5']:.1f}. Plot: grpo/grpo_curves.png\n")
        if distributed.is_main():
            with open(os.path.join(workdir, "results.md"), "w") as f:
                f.write(report)
            print(report)
    logging.info("Pipeline stage seconds (this invocation): %s", timings)
    return {"timings": timings, "report": report}
