"""Model size x training steps -> valid HR@10 and wall time, for stage 1 (non-thinking).

  python bench/learning_curve.py                                    # synthetic default
  python bench/learning_curve.py --config configs/grpo.py:industrial_cpu \\
      --base workdir/curve_ind -- --config.data.train_path=/tmp/ind/train/...csv

For each `--sizes` entry (hidden:layers) it runs the real stage 1 of `--config` (its
prompts, mixture and schedule) for `--steps` steps, scoring valid HR@10 / NDCG@10 by
beam search every `--every` steps on the first `--valid` valid rows, and prints one
Markdown table: size, params, step, wall seconds at that step, HR@10, NDCG@10. The SID
stage runs once and is shared by all sizes; each size gets its own workdir under
`--base`, and a finished size is read back instead of rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys


def run_size(config: str, base: str, hidden: int, layers: int, args, extra) -> list[dict]:
    workdir = os.path.join(base, f"h{hidden}_l{layers}")
    metrics_path = os.path.join(workdir, "sft", "metrics.jsonl")
    if not os.path.exists(os.path.join(workdir, "sft", "summary.json")):
        shared = os.path.join(base, "shared")
        for part in ("sid", "embeddings"):
            if os.path.isdir(os.path.join(shared, part)) and not os.path.isdir(
                    os.path.join(workdir, part)):
                shutil.copytree(os.path.join(shared, part), os.path.join(workdir, part))
        cmd = [sys.executable, "-m", "sidjax.main", f"--config={config}",
               f"--workdir={workdir}", "--config.pipeline.stages=sid,sft",
               f"--config.model.hidden_size={hidden}",
               f"--config.model.intermediate_size={3 * hidden}",
               f"--config.model.num_layers={layers}",
               f"--config.pipeline.stage1.train.num_steps={args.steps}",
               f"--config.pipeline.stage1.eval.every_steps={args.every}",
               "--config.pipeline.stage1.eval.patience=0",
               f"--config.sft.hr_eval_examples={args.valid}", *extra]
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "curve_run.log"), "w") as log:
            code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            raise SystemExit(f"Size h{hidden}_l{layers} failed (exit {code}); see "
                             f"{workdir}/curve_run.log.")
        if not os.path.isdir(os.path.join(shared, "sid")):
            for part in ("sid", "embeddings"):
                if os.path.isdir(os.path.join(workdir, part)):
                    shutil.copytree(os.path.join(workdir, part), os.path.join(shared, part))
    with open(os.path.join(workdir, "sft", "summary.json")) as f:
        summary = json.load(f)
    rows = [json.loads(line) for line in open(metrics_path)]
    start = min(r["time"] for r in rows) if rows and "time" in rows[0] else None
    out = []
    for r in rows:
        if "eval/valid/hr@10" not in r:
            continue
        wall = (r["time"] - start) if start is not None else float("nan")
        out.append({"size": f"h{hidden}_l{layers}", "params": summary["params"],
                    "step": r["step"], "wall_s": wall, "hr@10": r["eval/valid/hr@10"],
                    "ndcg@10": r["eval/valid/ndcg@10"]})
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/grpo.py")
    parser.add_argument("--sizes", default="64:2,128:2,256:2")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--valid", type=int, default=500)
    parser.add_argument("--base", default="workdir/learning_curve")
    parser.add_argument("extra", nargs="*", help="more --config.* overrides, after --")
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes.split(","):
        hidden, layers = (int(x) for x in size.split(":"))
        rows += run_size(args.config, args.base, hidden, layers, args, args.extra)
    lines = ["| size | params | step | wall s | valid HR@10 | valid NDCG@10 |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['params'] / 1e6:.2f}M | {r['step']} | {r['wall_s']:.0f} | "
              f"{r['hr@10']:.4f} | {r['ndcg@10']:.4f} |" for r in rows]
    table = "\n".join(lines)
    print(f"\n{args.config} stage 1, first {args.valid} valid rows:\n\n{table}")
    with open(os.path.join(args.base, "learning_curve.json"), "w") as f:
        json.dump({"config": args.config, "extra": args.extra, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
