"""Noise you can see: rerun the pipeline with N seeds and report mean +- std per row.

  python bench/seeds.py --seeds 0,1,2                                  # the default command
  python bench/seeds.py --config configs/grpo.py:tiny --seeds 0,1,2 -- --config.x.y=...

Each seed runs `python -m sidjax.main --config=<config> --config.seed=<s>` in its own
workdir (<base>/seed_<s>; a finished seed is skipped, as the pipeline skips finished
stages), exactly as a user would run it, and its eval/results.json is read back. The seed
drives the RQ-VAE, model initialisation, data order, dropout and sampling; the data
(synthetic store or files) is the same for every seed. Prints a Markdown table of HR@K /
NDCG@K mean +- std (sample std, n-1) per row and the per-seed HR@10, and writes
<base>/seeds.json. Baselines that do not depend on the seed show std 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

METRICS = ("hr@1", "hr@3", "hr@5", "hr@10", "ndcg@10")


def run_seed(config: str, seed: int, workdir: str, extra: list[str]) -> float:
    results = os.path.join(workdir, "eval", "results.json")
    if os.path.exists(results):
        return 0.0
    start = time.time()
    cmd = [sys.executable, "-m", "sidjax.main", f"--config={config}", f"--workdir={workdir}",
           f"--config.seed={seed}", *extra]
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "seed_run.log"), "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"Seed {seed} failed (exit {code}); see {workdir}/seed_run.log.")
    return time.time() - start


def summarise(per_seed: dict[int, list[dict]]) -> dict[str, dict]:
    """label -> {metric: (mean, std, values)} over the seeds that have the row."""
    labels: dict[str, dict[str, list[float]]] = {}
    for entries in per_seed.values():
        for e in entries:
            row = labels.setdefault(e["label"], {m: [] for m in METRICS})
            for m in METRICS:
                row[m].append(float(e["metrics"][m]))
    out = {}
    for label, values in labels.items():
        out[label] = {m: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                          v) for m, v in values.items()}
    return out


def markdown(summary: dict[str, dict]) -> str:
    head = ["row"] + [m.upper() for m in METRICS] + [
        "HR@10 per seed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, row in summary.items():
        cells = [label] + [f"{row[m][0]:.4f} +- {row[m][1]:.4f}" for m in METRICS]
        cells.append(", ".join(f"{v:.4f}" for v in row["hr@10"][2]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/grpo.py")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--base", default="workdir/seeds")
    parser.add_argument("extra", nargs="*", help="more --config.* overrides, after --")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    per_seed, wall = {}, {}
    for seed in seeds:
        workdir = os.path.join(args.base, f"seed_{seed}")
        wall[seed] = run_seed(args.config, seed, workdir, args.extra)
        with open(os.path.join(workdir, "eval", "results.json")) as f:
            per_seed[seed] = json.load(f)["entries"]
        print(f"seed {seed}: done ({wall[seed]:.0f} s)", flush=True)
    summary = summarise(per_seed)
    table = markdown(summary)
    print(f"\n{args.config}, seeds {seeds} (mean +- std):\n\n{table}")
    with open(os.path.join(args.base, "seeds.json"), "w") as f:
        json.dump({"config": args.config, "seeds": seeds, "extra": args.extra,
                   "wall_s": wall, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
