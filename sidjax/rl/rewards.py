"""Outcome rewards on decoded responses (pure functions, a registry by name).

Every reward has the signature `fn(response, target_sid, valid_sids, **context) -> float`,
where `response` is the decoded response (special tokens skipped, so `<|im_end|>` is gone
and `</think>` stays), `target_sid` the ground-truth SID string and `valid_sids` the set of
catalog SID strings. `combine(weights)` sums weighted rewards.

`step_rule_reward` is the method's `rule_base_reward` (sidreasoner_method.md section 8):
only the last 50 characters are read; `</think>` must be followed by at least three
angle-bracket tokens; 0.25 -> 0.5 -> 1.0 hierarchical prefix credit, stopping at the first
mismatching level; +0.1 when the SID is a catalog SID; 0 when unparseable.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Collection, Mapping

TAIL_CHARS = 50
_AFTER_THINK = re.compile(r"</think>\s*(.*)", re.DOTALL)
_TOKEN = re.compile(r"<[^>]+>")


def parse_sid_tokens(response: str, levels: int = 3) -> list[str] | None:
    """The first `levels` angle-bracket tokens after </think> in the last 50 characters."""
    match = _AFTER_THINK.search(response[-TAIL_CHARS:])
    if match is None:
        return None
    tokens = _TOKEN.findall(match.group(1))[:levels]
    return tokens if len(tokens) == levels else None


def _levels(target_sid: str) -> int:
    return len(_TOKEN.findall(target_sid))


def step_rule_reward(response: str, target_sid: str, valid_sids: Collection[str],
                     **context) -> float:
    levels = _levels(target_sid)
    tokens = parse_sid_tokens(response, levels)
    if tokens is None:
        return 0.0
    target = _TOKEN.findall(target_sid)
    matched = 0
    for got, want in zip(tokens, target):
        if got != want:
            break
        matched += 1
    credit = 2.0 ** (matched - levels) if matched else 0.0  # 3 levels: 0.25, 0.5, 1.0
    return credit + (0.1 if "".join(tokens) in valid_sids else 0.0)


def exact_match_reward(response: str, target_sid: str, valid_sids: Collection[str],
                       **context) -> float:
    tokens = parse_sid_tokens(response, _levels(target_sid))
    return 1.0 if tokens is not None and "".join(tokens) == target_sid else 0.0


def format_reward(response: str, target_sid: str, valid_sids: Collection[str],
                  **context) -> float:
    """1 when the response has a think block and a parseable SID after it."""
    has_think = "<think>" in response and "</think>" in response
    return 1.0 if has_think and parse_sid_tokens(response, _levels(target_sid)) else 0.0


def rank_aware_reward(response: str, target_sid: str, valid_sids: Collection[str],
                      rank: int | None = None, group_size: int | None = None,
                      **context) -> float:
    """For beam rollouts (MiniOneRec style): the hit gets 1; a miss at beam rank r gets
    -(1/log2(r+2)) / sum_{j<G} 1/log2(j+2), so confident wrong beams cost the most and the
    misses of a group sum to at most -1. Without a rank it is the exact-match reward."""
    if exact_match_reward(response, target_sid, valid_sids):
        return 1.0
    if rank is None or not group_size:
        return 0.0
    norm = sum(1.0 / math.log2(j + 2) for j in range(group_size))
    return -(1.0 / math.log2(rank + 2)) / norm


def overlong_reward(response: str, target_sid: str, valid_sids: Collection[str],
                    truncated: bool = False, **context) -> float:
    """-1 for a response cut at `max_response_tokens` before it finished, else 0.

    DAPO's overlong punishment (hard form): with a weight it discourages reasoning that
    runs past the budget, whose SID would otherwise just be missing. `truncated` comes
    from the rollout (no stop token at the end of the sampled ids).
    """
    return -1.0 if truncated else 0.0


REWARDS: dict[str, Callable[..., float]] = {
    "step_rule": step_rule_reward,
    "exact_match": exact_match_reward,
    "format": format_reward,
    "rank_aware": rank_aware_reward,
    "overlong": overlong_reward,
}


def combine(weights: Mapping[str, float]) -> Callable[..., float]:
    """A reward that sums `weight * REWARDS[name]` over the mapping."""
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        raise ValueError(f"Unknown rewards {unknown} in config.grpo.rewards; known: "
                         f"{sorted(REWARDS)}.")
    items = [(REWARDS[name], float(w)) for name, w in weights.items() if float(w) != 0.0]

    def reward(response: str, target_sid: str, valid_sids: Collection[str], **context) -> float:
        return sum(w * fn(response, target_sid, valid_sids, **context) for fn, w in items)

    return reward
