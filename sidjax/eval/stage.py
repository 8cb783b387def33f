"""The `eval` stage: every trained model of the workdir (or given ones) and the baselines.

Writes workdir/eval/:
  results.json                 one entry per evaluated model and baseline
  results.md                   the same as a Markdown table
  predictions_<label>.jsonl    per example: history titles, reasoning, top-K SIDs with
                               titles, scores, hit rank

Which models: `config.evaluation.models` as 'label=path[:mode],...', or by default each
stage export present in the workdir, in its natural mode (sft: non-thinking; reason
and grpo: thinking). An entry already in results.json is reused only when everything that
changes its numbers matches (`eval_settings`: the model files, mode, split, example count,
prompt, beam, scoring, reasoning budget, dtype); otherwise the model is evaluated again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from absl import logging
from ml_collections import ConfigDict

from sidjax.eval.evaluate import (MODES, EvalOutput, baseline_metrics, evaluate_model,
                                  metrics_from_records)
from sidjax.eval.metrics import KS
from sidjax.sasrec import stage as sasrec_stage
from sidjax.train import distributed
from sidjax.train.trainer import Preempted, SigtermFlag


class EvaluationInterrupted(Preempted):
    """SIGTERM during evaluation: finished chunks are saved; rerun to continue."""

    def __init__(self, label: str, done: int, total: int, path: str):
        RuntimeError.__init__(
            self, f"Evaluation of {label} interrupted (SIGTERM) after {done} of {total} rows; "
            f"progress saved in {path}. Rerun the same command to continue.")
        self.step = done

STAGE_MODELS = (("stage1", "sft", "nonthinking"), ("stage2", "reason", "thinking"),
                ("stage3", "grpo", "thinking"))


def default_eval_config() -> ConfigDict:
    return ConfigDict({
        "models": "",  # 'label=path[:mode],...'; '' = the workdir's stage exports.
        "split": "test",
        "max_examples": 0,  # 0 = the whole split (as the method scores it).
        "beam": 10,
        "batch_size": 16,
        "max_reasoning_tokens": 1024,
        # True: normalise over the allowed tokens at each SID level (the forced end tokens then
        # add 0); False: the method's HF scoring (sidjax/decode/beam.py). Also used by the SFT
        # stages' valid HR evaluation.
        "renormalize": False,
        # Non-thinking prompt: 'eval' = the method's evaluation prompt (differs from training,
        # as published); 'train' = the stage-1 training prompt.
        "nonthinking_prompt": "eval",
        "dtype": "float32",
        "seed": 0,
        # Rows per saved chunk: progress goes to eval/partial_<label>.jsonl after each, so a
        # SIGTERM (or a kill) loses at most one chunk and a rerun continues from there.
        "chunk_rows": 512,
    })


def _read_partial(path: str, settings: dict) -> list[dict]:
    """Records of an interrupted evaluation with the same settings (else none)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        lines = f.readlines()
    if not lines or json.loads(lines[0]).get("settings") != settings:
        return []
    for line in lines[1:]:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # A line cut by a kill: that chunk is redone.
            break
    return records


def _partial_path(out_dir: str, label: str) -> str:
    return os.path.join(out_dir, f"partial_{label}.jsonl")


def _evaluate_in_chunks(label: str, settings: dict, out_dir: str, evaluate, samples: list,
                        chunk_rows: int):
    """`evaluate(rows)` over `samples` in chunks of `chunk_rows`, each appended to
    eval/partial_<label>.jsonl; resumes from that file; on SIGTERM stops after the current
    chunk (EvaluationInterrupted). Returns an EvalOutput over all rows."""
    path, total = _partial_path(out_dir, label), len(samples)
    records = _read_partial(path, settings)
    done = len(records) // chunk_rows * chunk_rows  # Whole chunks only.
    records = records[:done]
    if done:
        logging.info("eval: %s resumes after %d of %d rows (%s).", label, done, total, path)
    if distributed.is_main():
        os.makedirs(out_dir, exist_ok=True)
        with open(path, "w") as f:
            f.write(json.dumps({"settings": settings}) + "\n")
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    start = time.time()
    with SigtermFlag("SIGTERM received: finishing this evaluation chunk and stopping.") as flag:
        for first in range(done, total, chunk_rows):
            out = evaluate(samples[first:first + chunk_rows])
            records += out.predictions
            if distributed.is_main():
                with open(path, "a") as f:
                    f.writelines(json.dumps(r, ensure_ascii=False) + "\n"
                                 for r in out.predictions)
            stop = distributed.global_max(int(flag.received)) > 0  # Every process agrees.
            if stop and first + chunk_rows < total:
                raise EvaluationInterrupted(label, len(records), total, path)
    metrics = metrics_from_records(records)
    metrics["seconds"] = time.time() - start
    return EvalOutput(metrics, records)


def _models(config: ConfigDict, workdir: str) -> list[tuple[str, str, str]]:
    spec = config.evaluation.models
    if not spec:
        return [(label, os.path.join(workdir, d, "export"), mode) for label, d, mode in
                STAGE_MODELS if os.path.isdir(os.path.join(workdir, d, "export"))]
    out = []
    for entry in spec.split(","):
        label, _, rest = entry.partition("=")
        path, _, mode = rest.rpartition(":") if rest.endswith(MODES) else (rest, "", "")
        mode = mode or "nonthinking"
        if not label or not path:
            raise ValueError(f"config.evaluation.models entry '{entry}': use label=path[:mode].")
        out.append((label.strip(), path.strip(), mode))
    return out


def model_fingerprint(path: str) -> str:
    """A digest of the export directory's file names, sizes and modification times: a
    re-exported model (a rerun stage, a different checkpoint) gets a new fingerprint."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            info = os.stat(os.path.join(path, name))
            h.update(f"{name}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def eval_settings(cfg: ConfigDict, path: str, mode: str, split: str, examples: int,
                  prompt: str) -> dict:
    """Everything that changes an entry's numbers: the cache key of results.json."""
    return {"model": model_fingerprint(path), "path": path, "mode": mode, "split": split,
            "examples": int(examples), "prompt": prompt, "beam": int(cfg.beam),
            "renormalize": bool(cfg.renormalize),
            "max_reasoning_tokens": int(cfg.max_reasoning_tokens), "dtype": str(cfg.dtype)}


def markdown_table(entries: list[dict], ks=KS) -> str:
    head = ["model", "mode"] + [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks] + [
        "invalid", "reasoning tokens"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in entries:
        m = e["metrics"]
        cells = [e["label"], e.get("mode", "-")] + [f"{m[f'hr@{k}']:.4f}" for k in ks] + [
            f"{m[f'ndcg@{k}']:.4f}" for k in ks] + [
            f"{m['invalid_rate']:.3f}" if "invalid_rate" in m else "-",
            f"{m['mean_reasoning_tokens']:.1f}" if m.get("mean_reasoning_tokens") else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    from sidjax.sft.stage import load_export, prompt_style
    from sidjax.sid.stage import sid_dataset

    cfg = config.evaluation
    out_dir = os.path.join(workdir, "eval")
    results_path = os.path.join(out_dir, "results.json")
    entries = []
    if distributed.exists(results_path):
        with open(results_path) as f:
            entries = json.load(f)["entries"]
    dataset = sid_dataset(config, workdir)
    samples = list(dataset.split(cfg.split))
    if cfg.max_examples and len(samples) > cfg.max_examples:
        samples = samples[:cfg.max_examples]
    catalog, train = dataset.catalog, dataset.split("train")
    done = {e["label"]: e.get("settings") for e in entries}
    by_label = {e["label"]: e for e in entries}
    for kind, metrics in baseline_metrics(catalog, train, samples, cfg.beam, cfg.seed).items():
        metrics["examples"] = len(samples)
        by_label[kind] = {"label": kind, "split": cfg.split, "mode": "-", "metrics": metrics}
    sasrec = sasrec_stage.load_best(config, workdir, len(catalog))
    if sasrec is not None:
        metrics = sasrec_stage.sid_metrics(*sasrec, catalog, samples, cfg.beam)
        metrics["examples"] = len(samples)
        by_label["sasrec"] = {"label": "sasrec", "split": cfg.split, "mode": "-",
                              "metrics": metrics}
    for label, path, mode in _models(config, workdir):
        style = prompt_style(config)
        prompt = cfg.nonthinking_prompt if mode == "nonthinking" else "reasoning"
        prompt = prompt if style == "method" else f"{style}:{mode}"
        settings = eval_settings(cfg, path, mode, cfg.split, len(samples), prompt)
        if done.get(label) == settings:
            logging.info("eval: %s (%s) already in %s with the same settings.", label, mode,
                         results_path)
            continue
        model, tokenizer = load_export(path, dtype=cfg.dtype)
        result = _evaluate_in_chunks(
            label, settings, out_dir,
            lambda rows: evaluate_model(
                model, tokenizer, catalog, rows, mode, cfg.beam, cfg.batch_size,
                cfg.max_reasoning_tokens, cfg.renormalize,
                nonthinking_variant=cfg.nonthinking_prompt, style=style),
            samples, int(cfg.get("chunk_rows", 0) or len(samples) or 1))
        logging.info("eval: %s (%s) on %d %s examples: HR@10 %.4f NDCG@10 %.4f in %.0fs.",
                     label, mode, len(samples), cfg.split, result.metrics.get("hr@10", 0.0),
                     result.metrics.get("ndcg@10", 0.0), result.metrics["seconds"])
        if distributed.is_main():
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, f"predictions_{label}.jsonl"), "w") as f:
                for record in result.predictions:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
        by_label[label] = {"label": label, "path": path, "mode": mode, "split": cfg.split,
                           "prompt": prompt, "settings": settings, "metrics": result.metrics}
        partial = _partial_path(out_dir, label)
        if distributed.is_main() and os.path.exists(partial):
            os.remove(partial)
    order = ["popularity", "random", "transition", "last_item", "sasrec"] + [
        m[0] for m in STAGE_MODELS]
    entries = sorted(by_label.values(), key=lambda e: (order.index(e["label"])
                                                       if e["label"] in order else 99,
                                                       e["label"]))
    table = markdown_table(entries)
    with distributed.main_writes("eval-results") as writer:
        if writer:
            os.makedirs(out_dir, exist_ok=True)
            with open(results_path, "w") as f:
                json.dump({"entries": entries}, f, indent=1)
            with open(os.path.join(out_dir, "results.md"), "w") as f:
                f.write(table)
    if config.stage == "eval":  # In the pipeline, the pipeline prints the table once.
        logging.info("Results (%s split, %d examples):\n%s", cfg.split, len(samples), table)
    else:
        logging.info("Results (%s split, %d examples) in %s.", cfg.split, len(samples),
                     os.path.join(out_dir, "results.md"))
    return {"entries": entries, "table": table}
