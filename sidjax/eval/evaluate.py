"""Evaluate a SID recommender the method's way: constrained beam search, HR/NDCG@K.

Two modes (sidreasoner_method.md section 9):

- `nonthinking`: the EvalSidDataset prompt, the generation prompt, then
  `<think>\\n</think>\\n\\n`; beam search over the SID right after it.
- `thinking`: the stage-2/RL prompt ending at `<|im_start|>assistant\\n`; greedy reasoning
  (at most `max_reasoning_tokens`), cut at the first `</think>` (without one, the last
  character is dropped, as the method's `find` = -1 does), stripped, `\\n</think>\\n\\n`
  re-appended, re-tokenised, then beam search over the SID only.

Targets are matched by SID string (collided items count as hits). The same scoring
runs the popularity and random baselines, by SID string too.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Sequence

import jax
import numpy as np

from sidjax.data.padding import left_pad
from sidjax.data.types import Catalog, Sample
from sidjax.decode.beam import sid_beam_search
from sidjax.decode.sampler import sample
from sidjax.decode.sid_tables import SidTables, tables_from_catalog
from sidjax.eval import baselines
from sidjax.eval.metrics import KS, rank_of, ranking_metrics
from sidjax.model.chat import THINK_CLOSE, render_chat
from sidjax.model.model import Model
from sidjax.tasks import prompts
from sidjax.train import distributed

MODES = ("nonthinking", "thinking")


@dataclasses.dataclass
class EvalOutput:
    metrics: dict  # hr@k, ndcg@k, invalid_rate, mean_reasoning_tokens, examples, seconds
    predictions: list[dict]  # per example, see `_prediction_record`


NONTHINKING_PROMPTS = ("eval", "train")


def nonthinking_prompt(history_sids: Sequence[str], variant: str = "eval",
                       style: str = "method") -> str:
    """`eval`: the method's EvalSidDataset prompt and `<think>\n</think>\n\n` (as published);
    `train`: the stage-1 training prompt and empty think block (no train/eval mismatch).
    The compact style has one prompt, the training one, whatever `variant` says."""
    if style == "compact":
        variant = "train"
    if variant == "eval":
        return (render_chat(prompts.eval_messages(history_sids), add_generation_prompt=True)
                + prompts.EVAL_THINK_PREFIX)
    if variant == "train":
        messages = prompts.sid_next_messages(history_sids, style)
        return render_chat(messages, add_generation_prompt=True, enable_thinking=False)
    raise ValueError(f"Non-thinking prompt '{variant}' is not one of {NONTHINKING_PROMPTS}.")


def thinking_prompt(history_sids: Sequence[str], style: str = "method") -> str:
    return render_chat(prompts.reasoning_messages(history_sids, style),
                       add_generation_prompt=True)


def cut_reasoning(text: str) -> str:
    """Generated text -> the reasoning kept for the SID pass (the method's quirks kept)."""
    end = text.find(THINK_CLOSE)
    return text[:end].strip()  # end == -1 drops the last character, as in the method.


def render_sid(catalog: Catalog, sid: str | None) -> str:
    if sid is None:
        return "(no valid SID)"
    ids = catalog.ids_for_sid(sid)
    return f"{sid} " + " | ".join(f'"{catalog.title(i)}"' for i in ids) if ids else sid


SID_IN_TEXT = re.compile(r"<a_\d+><b_\d+><c_\d+>(?:<d_\d+>)?")


def render_sids_in_text(catalog: Catalog, text: str) -> str:
    """Every whole SID in `text` followed by its item's title in brackets, for reading
    reasoning traces: '<a_1><b_2><c_3>' -> '<a_1><b_2><c_3> [Nitrile Gloves ...]'. A SID no
    item has is marked '[no such item]'."""

    def title(match: re.Match) -> str:
        ids = catalog.ids_for_sid(match.group(0))
        names = " | ".join(catalog.title(i) for i in ids) if ids else "no such item"
        return f"{match.group(0)} [{names}]"

    return SID_IN_TEXT.sub(title, text)


def _generate_reasoning(model: Model, tokenizer, prompt_ids: list[list[int]],
                        max_tokens: int) -> tuple[list[str], list[int]]:
    stops = [tokenizer.convert_tokens_to_ids(THINK_CLOSE), tokenizer.eos_token_id]
    out = sample(model.config, model.params, prompt_ids, jax.random.PRNGKey(0), max_tokens,
                 temperature=0.0, stop_tokens=stops, pad_id=int(tokenizer.pad_token_id))
    texts, lengths = [], []
    for row, n in zip(out.tokens, out.lengths):
        generated = row[:int(n)].tolist()
        text = tokenizer.decode(generated, skip_special_tokens=True)
        texts.append(cut_reasoning(text))
        lengths.append(int(n) - int(bool(generated) and generated[-1] in stops))
    return texts, lengths


def evaluate_model(model: Model, tokenizer, catalog: Catalog, samples: Sequence[Sample],
                   mode: str = "nonthinking", beam: int = 10, batch_size: int = 16,
                   max_reasoning_tokens: int = 1024, renormalize: bool = False,
                   tables: SidTables | None = None, ks: Sequence[int] = KS,
                   nonthinking_variant: str = "eval", style: str = "method") -> EvalOutput:
    """Beam-searches every sample's next SID; returns metrics and per-example records.

    In a multi-process run every process calls it with the same samples: each evaluates
    its contiguous share on its own devices (the model must be process-local, as
    `load_export` without a mesh gives), and the records are gathered in sample order, so
    every process returns the same result.
    """
    if mode not in MODES:
        raise ValueError(f"Evaluation mode '{mode}' is not one of {MODES}.")
    tables = tables or tables_from_catalog(catalog, tokenizer)
    start = time.time()
    records, reasoning_lengths = [], []
    pad_id = int(tokenizer.pad_token_id)
    samples = distributed.process_share(list(samples))
    for first in range(0, len(samples), batch_size):
        chunk = list(samples[first:first + batch_size])
        histories = [[catalog.sid_string(i) for i in s.history] for s in chunk]
        reasoning = [""] * len(chunk)
        if mode == "nonthinking":
            texts = [nonthinking_prompt(h, nonthinking_variant, style) for h in histories]
        else:
            base = [thinking_prompt(h, style) for h in histories]
            ids = tokenizer(base, add_special_tokens=False)["input_ids"]
            reasoning, lengths = _generate_reasoning(model, tokenizer, ids, max_reasoning_tokens)
            reasoning_lengths += lengths
            texts = [b + r + prompts.THINK_SEPARATOR for b, r in zip(base, reasoning)]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        tokens, valid = left_pad(ids, pad_id, rows=batch_size)
        result = sid_beam_search(model.config, model.params, tokens, tables, beam, valid,
                                 renormalize=renormalize)
        sids = result.sid_strings(tables)
        for n, s in enumerate(chunk):
            records.append(_prediction_record(catalog, s, sids[n], result.scores[n], reasoning[n]))
    records = distributed.gather_objects(records)
    reasoning_lengths = distributed.gather_objects(reasoning_lengths)
    if reasoning_lengths:
        for record, length in zip(records, reasoning_lengths):
            record["reasoning_tokens"] = int(length)
    metrics = metrics_from_records(records, ks)
    metrics["seconds"] = time.time() - start
    return EvalOutput(metrics, records)


def metrics_from_records(records: Sequence[dict], ks: Sequence[int] = KS) -> dict:
    """HR@K / NDCG@K, the invalid-beam rate and the mean reasoning length of per-example
    records (so an evaluation done in chunks scores exactly as one done at once)."""
    predictions = [r["top_sids"] for r in records]
    targets = [r["target_sid"] for r in records]
    metrics = ranking_metrics(predictions, targets, ks)
    beams = sum(len(p) for p in predictions)
    metrics["invalid_rate"] = sum(p is None for row in predictions for p in row) / max(beams, 1)
    lengths = [r["reasoning_tokens"] for r in records if "reasoning_tokens" in r]
    metrics["mean_reasoning_tokens"] = float(np.mean(lengths)) if lengths else 0.0
    metrics["examples"] = len(records)
    return metrics


def _prediction_record(catalog: Catalog, s: Sample, sids: list, scores, reasoning: str) -> dict:
    target = catalog.sid_string(s.target)
    rank = rank_of(sids, target)
    return {
        "user": s.user,
        "history_titles": [catalog.title(i) for i in s.history],
        "history_sids": [catalog.sid_string(i) for i in s.history],
        "target_sid": target, "target_title": catalog.title(s.target),
        "reasoning": reasoning,
        "top_sids": sids,
        "top_rendered": [render_sid(catalog, sid) for sid in sids],
        "scores": [float(x) for x in scores],
        "hit_rank": rank,
    }


BASELINES = ("popularity", "random", "transition", "last_item")


def baseline_sid_predictions(kind: str, catalog: Catalog, train: Sequence[Sample],
                             samples: Sequence[Sample], k: int = 10, seed: int = 0
                             ) -> list[list[str]]:
    """Baseline predictions as distinct SID strings, k per example (the count tables rank 4k
    items so that colliding items still leave k SIDs)."""
    n = len(catalog)
    if kind == "popularity":
        ranked = [baselines.popularity_ranking(train, n)] * len(samples)
    elif kind == "random":
        rng = np.random.default_rng(seed)
        ranked = [rng.permutation(n).tolist() for _ in samples]
    elif kind == "transition":
        ranked = baselines.transition_counter_predictions(train, samples, n, 4 * k)
    elif kind == "last_item":
        ranked = baselines.last_item_predictions(train, samples, n, 4 * k)
    else:
        raise ValueError(f"Unknown baseline '{kind}'; use one of {BASELINES}.")
    return items_to_sids(catalog, ranked, k)


def items_to_sids(catalog: Catalog, ranked: Sequence[Sequence[int]], k: int
                  ) -> list[list[str]]:
    """Item rankings -> the first k distinct SID strings of each (collided items merge)."""
    out = []
    for order in ranked:
        seen: list[str] = []
        for item in order:
            sid = catalog.sid_string(item)
            if sid not in seen:
                seen.append(sid)
            if len(seen) == k:
                break
        out.append(seen)
    return out


def baseline_metrics(catalog: Catalog, train, samples, k: int = 10, seed: int = 0,
                     ks: Sequence[int] = KS) -> dict[str, dict]:
    targets = [catalog.sid_string(s.target) for s in samples]
    return {kind: ranking_metrics(baseline_sid_predictions(kind, catalog, train, samples, k, seed),
                                  targets, ks)
            for kind in BASELINES}
