"""Training examples for stages 1 and 2: the method's tasks, rendered and loss-masked.

Every task yields `Example`s: text = prefix + target + suffix, with the loss on the
target (and on the suffix when `supervise_suffix`). How each task sets them follows
the method (sidreasoner_method.md sections 5-7):

- stage-1 structured tasks (1-5): Qwen3 chat with the answer after an empty
  `<think>\\n\\n</think>\\n\\n` block; the loss covers the answer only, not
  `<|im_end|>\\n` (mask_eos=True);
- raw-text corpora (6, 7): no template, no EOS, loss on every token;
- general reasoning chats (8): prompt with the generation prompt; the loss covers the
  assistant content (with its think block) and `<|im_end|>`;
- stage 2 (reasoning activation): `<think>\\n{reasoning}\\n</think>\\n\\n{SID}`, loss from
  the response start to the end, `<|im_end|>\\n` included (mask_eos=False).

`encode` tokenises an example and builds its mask the way `mask_assistant_response_only`
does: tokenise the full text and the prefix, supervise from the prefix's length on;
truncation keeps the last `max_len` tokens.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Iterable, Mapping, Sequence

import numpy as np

from sidjax.data.types import Catalog, Dataset, Sample
from sidjax.model.chat import IM_END, render_chat
from sidjax.tasks import prompts

STAGE1_TASKS = ("sid_next", "title2sid", "sid2title", "sid_history2title", "title_history2title",
                "title_history2sid", "item_enriched", "narrative", "general_reasoning",
                "sid_sequence", "sid_recent")
# Not the method's: off (weight 0) unless a config turns it on.
EXTRA_TASKS = ("sid_sequence", "sid_recent")
# sid_recent's history windows: the last 1 and 2 items.
RECENT_LENGTHS = (1, 2)
STAGE2_TASKS = ("reasoning",)
# Stage-1 tasks stage 2 can replay (config.sft.replay_share): the ones that map a SID
# history to the next SID.
REPLAY_TASKS = ("sid_next", "sid_sequence", "sid_recent")
# The tasks that teach what each SID is (its title, brand, kind): one example per item.
ITEM_FACT_TASKS = ("title2sid", "sid2title", "item_enriched")


@dataclasses.dataclass(frozen=True)
class Example:
    task: str
    prefix: str  # Unsupervised context.
    target: str  # Supervised.
    suffix: str = ""  # After the target; supervised iff supervise_suffix.
    supervise_suffix: bool = False

    @property
    def text(self) -> str:
        return self.prefix + self.target + self.suffix


def _split_at_response(task: str, full: str, response: str, supervise_suffix: bool) -> Example:
    start = full.rfind(response)  # The method's rfind of the response string.
    if start < 0:
        raise ValueError(f"Task {task}: the response {response!r} is not in its rendered text.")
    end = start + len(response)
    return Example(task, full[:start], response, full[end:], supervise_suffix)


def chat_answer(task: str, messages: list[dict], answer: str) -> Example:
    """Stage-1 structured answer: empty think block, loss on the answer, not on <|im_end|>."""
    full = render_chat(messages + [{"role": "assistant", "content": answer}])
    return _split_at_response(task, full, answer, supervise_suffix=False)


def chat_reasoning(task: str, messages: list[dict], reasoning: str, answer: str) -> Example:
    """Stage-2 response `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`; loss to the end."""
    response = f"<think>\n{reasoning.strip()}\n</think>\n\n{answer}"
    full = render_chat(messages + [{"role": "assistant", "content": response}])
    return _split_at_response(task, full, response, supervise_suffix=True)


def chat_general(task: str, messages: list[dict], content: str) -> Example:
    """General chat: generation prompt, then the assistant content + <|im_end|> supervised."""
    return Example(task, render_chat(messages, add_generation_prompt=True), content + IM_END)


def raw_text(task: str, text: str) -> Example:
    return Example(task, "", text)


# ------------------------------------------------------------------ the tasks
def sid_next(catalog: Catalog, samples: Sequence[Sample], style: str = "method"
             ) -> list[Example]:
    """Task 1 (SidSFTDataset), also the validation loss."""
    return [chat_answer("sid_next", prompts.sid_next_messages(
        [catalog.sid_string(i) for i in s.history], style), catalog.sid_string(s.target))
        for s in samples]


def title2sid(catalog: Catalog, style: str = "method") -> list[Example]:
    """Task 2a; a title shared by several items keeps the last item's SID (dict dedup)."""
    table = {item.title: item.sid_string for item in catalog.items}
    return [chat_answer("title2sid", prompts.compact_messages("title2sid", title=title)
                        if style == "compact" else prompts.system_user(
        prompts.ITEM_FEAT_SYSTEM, prompts.TITLE2SID_USER.format(title=title)), sid)
        for title, sid in table.items()]


def sid2title(catalog: Catalog, style: str = "method") -> list[Example]:
    """Task 2b; a collided SID keeps the last item's title (dict dedup)."""
    table = {item.sid_string: item.title for item in catalog.items}
    return [chat_answer("sid2title", prompts.compact_messages("sid2title", sid=sid)
                        if style == "compact" else prompts.system_user(
        prompts.ITEM_FEAT_SYSTEM, prompts.SID2TITLE_USER.format(sid=sid)), title)
        for sid, title in table.items()]


def sid_history2title(catalog: Catalog, samples: Sequence[Sample], style: str = "method"
                      ) -> list[Example]:
    """Task 3 (FusionSeqRecDataset)."""
    def messages(sids):
        if style == "compact":
            return prompts.compact_messages("sid_history2title", history=sids)
        return prompts.system_user(prompts.RECOMMEND_SYSTEM, prompts.SID_HISTORY2TITLE_USER
                                   .format(history=prompts.sid_history(sids)))

    return [chat_answer("sid_history2title", messages([catalog.sid_string(i) for i in s.history]),
                        catalog.title(s.target)) for s in samples]


def title_history2title(catalog: Catalog, samples: Sequence[Sample], category: str,
                        seed: int = 42, style: str = "method") -> list[Example]:
    """Task 4 (SFTData, BIGRec): one of 11 instructions drawn per sample."""
    rng = random.Random(seed)
    out = []
    for s in samples:
        if style == "compact":
            out.append(chat_answer("title_history2title", prompts.compact_messages(
                "title_history2title", history="; ".join(catalog.title(i) for i in s.history)),
                catalog.title(s.target)))
            continue
        instruction = rng.choice(prompts.BIGREC_INSTRUCTIONS).format(category=category)
        system = prompts.SYS_PRE + "\n" + instruction + "\n \n"
        user = prompts.TITLE_HISTORY2TITLE_USER.format(category=category, history=(
            prompts.quoted_titles([catalog.title(i) for i in s.history], ",\t")))
        out.append(chat_answer("title_history2title", prompts.system_user(system, user),
                               f'"{catalog.title(s.target)}"\n'))
    return out


def title_history2sid(catalog: Catalog, samples: Sequence[Sample], category: str,
                      style: str = "method") -> list[Example]:
    """Task 5 (TitleHistory2SidSFTDataset)."""
    if style == "compact":
        return [chat_answer("title_history2sid", prompts.compact_messages(
            "title_history2sid", history="; ".join(catalog.title(i) for i in s.history)),
            catalog.sid_string(s.target)) for s in samples]
    return [chat_answer("title_history2sid", prompts.system_user(
        prompts.TITLE_HISTORY2SID_SYSTEM, prompts.TITLE_HISTORY2SID_USER.format(
            category=category,
            history=prompts.quoted_titles([catalog.title(i) for i in s.history], ", "))),
        catalog.sid_string(s.target)) for s in samples]


def sid_sequence(catalog: Catalog, samples: Sequence[Sample]) -> list[Example]:
    """A row's SIDs, history then target, as raw text with the loss on every token: every
    position predicts the next item, not only the target (what SASRec trains on), so each
    row teaches all of its transitions. sidjax's addition for from-scratch models."""
    return [raw_text("sid_sequence", "".join(catalog.sid_string(i)
                                             for i in (*s.history, s.target)))
            for s in samples]


def sid_recent(catalog: Catalog, samples: Sequence[Sample], style: str = "method",
               lengths: Sequence[int] = RECENT_LENGTHS) -> list[Example]:
    """sid_next on the last k items of each history only (k in `lengths`, k shorter than
    the history): the item-to-item transitions on their own. A count table reads those
    off exactly (on Industrial the last-item table alone scores valid HR@1 0.074, HR@10
    0.114); a model that only ever sees full histories has to pick each pair out of ten
    items, seen once or twice. sidjax's addition for from-scratch models."""
    return [chat_answer("sid_recent", prompts.sid_next_messages(
        [catalog.sid_string(i) for i in s.history[-k:]], style), catalog.sid_string(s.target))
        for s in samples for k in lengths if k < len(s.history)]


def strip_think(text: str) -> str:
    """Teacher texts: keep what follows the last </think> (stripped)."""
    return text.split("</think>")[-1].strip()


def item_enriched(texts: Iterable[str]) -> list[Example]:
    """Task 6: item-level SID-interleaved descriptions, raw text."""
    return [raw_text("item_enriched", strip_think(t)) for t in texts if strip_think(t)]


def narrative(texts: Iterable[str]) -> list[Example]:
    """Task 7: sequence-level narratives, raw text."""
    return [raw_text("narrative", strip_think(t)) for t in texts if strip_think(t)]


def general_reasoning(chats: Iterable[Sequence[Mapping]]) -> list[Example]:
    """Task 8: chats whose last message is the assistant's (think block included)."""
    out = []
    for chat in chats:
        messages = [dict(m) for m in chat]
        if not messages or messages[-1]["role"] != "assistant":
            continue
        for m in messages[:-1]:  # The method's quirk: list-content system turns become user.
            if m["role"] == "system" and not isinstance(m["content"], str):
                m["role"] = "user"
            if not isinstance(m["content"], str):
                m["content"] = "".join(part["text"] for part in m["content"])
        content = messages[-1]["content"]
        if not isinstance(content, str):
            content = "".join(part["text"] for part in content)
        out.append(chat_general("general_reasoning", messages[:-1], content))
    return out


def reasoning_rows_clean(reasoning: str | None) -> str | None:
    """Stage-2 reasoning cleaning: drop empty; '<think>...' keeps the text after </think>,
    and without a closing tag the row is dropped."""
    if reasoning is None or not str(reasoning).strip() or str(reasoning) == "nan":
        return None
    reasoning = str(reasoning)
    if reasoning.lstrip().startswith("<think>"):
        if "</think>" not in reasoning:
            return None
        reasoning = reasoning.split("</think>", 1)[1]
    return reasoning.strip() or None


def reasoning_activation(rows: Iterable[Mapping], style: str = "method") -> list[Example]:
    """Stage 2: rows with history_item_sid (list), item_sid and reasoning_path."""
    out = []
    for row in rows:
        reasoning = reasoning_rows_clean(row.get("reasoning_path"))
        if reasoning is None:
            continue
        out.append(chat_reasoning("reasoning",
                                  prompts.reasoning_messages(row["history_item_sid"], style),
                                  reasoning, row["item_sid"]))
    return out


def stage1_examples(dataset: Dataset, split: str, corpora: Mapping[str, list] | None = None,
                    seed: int = 42, style: str = "method") -> dict[str, list[Example]]:
    """All stage-1 tasks for one split; `corpora` holds item_enriched / narrative texts and
    general_reasoning chats (absent keys give empty tasks). `style`: prompts.PROMPT_STYLES."""
    catalog, samples, noun = dataset.catalog, dataset.split(split), dataset.category_noun
    corpora = corpora or {}
    return {
        "sid_next": sid_next(catalog, samples, style),
        "title2sid": title2sid(catalog, style),
        "sid2title": sid2title(catalog, style),
        "sid_history2title": sid_history2title(catalog, samples, style),
        "title_history2title": title_history2title(catalog, samples, noun, seed, style),
        "title_history2sid": title_history2sid(catalog, samples, noun, style),
        "item_enriched": item_enriched(corpora.get("item_enriched", [])),
        "narrative": narrative(corpora.get("narrative", [])),
        "general_reasoning": general_reasoning(corpora.get("general_reasoning", [])),
        "sid_sequence": sid_sequence(catalog, samples),
        "sid_recent": sid_recent(catalog, samples, style),
    }


def mix(tasks: Mapping[str, list[Example]], weights: Mapping[str, float] | None = None,
        seed: int = 42) -> list[Example]:
    """Concatenates tasks (weight 1 = every example once, the method's default; 0 drops a
    task; 0.5 keeps a random half; 2 repeats it twice) and shuffles."""
    rng = np.random.default_rng(seed)
    out: list[Example] = []
    for name, examples in tasks.items():
        weight = float((weights or {}).get(name, 1.0))
        if weight < 0:
            raise ValueError(f"Mixture weight for task '{name}' is {weight}; use a value >= 0.")
        whole, frac = divmod(weight, 1.0)
        out.extend(examples * int(whole))
        if frac > 0 and examples:
            keep = rng.choice(len(examples), int(round(frac * len(examples))), replace=False)
            out.extend(examples[i] for i in sorted(keep))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _scale_to_share(tasks: Mapping[str, Sequence[Example]], weights: dict[str, float],
                    group: Sequence[str], share: float) -> dict[str, float]:
    """`weights` with the tasks in `group` scaled together so they make up `share` (in
    (0, 1)) of the mixed examples; unchanged where the group or the rest is empty."""
    inside = sum(w * len(tasks[n]) for n, w in weights.items() if n in group)
    outside = sum(w * len(tasks[n]) for n, w in weights.items() if n not in group)
    if inside == 0 or outside == 0:
        return weights
    scale = share * outside / ((1.0 - share) * inside)
    return {n: w * scale if n in group else w for n, w in weights.items()}


def _check_share(field: str, share: float) -> None:
    if not 0.0 <= share < 1.0:
        raise ValueError(f"config.sft.{field}={share}; use a value in [0, 1).")


def replay_examples(dataset: Dataset, split: str, style: str = "method"
                    ) -> dict[str, list[Example]]:
    """The REPLAY_TASKS of one split (stage 2's replayed stage-1 rows)."""
    catalog, samples = dataset.catalog, dataset.split(split)
    return {"sid_next": sid_next(catalog, samples, style),
            "sid_sequence": sid_sequence(catalog, samples),
            "sid_recent": sid_recent(catalog, samples, style)}


def replay_weights(tasks: Mapping[str, Sequence[Example]], weights: Mapping[str, float],
                   share: float) -> dict[str, float]:
    """Weights under which the REPLAY_TASKS in `tasks` (in their stage-1 proportions,
    `weights`) make up `share` of stage 2's examples and each reasoning row stays once.

    Stage 2 alone trains only reasoning responses; replaying stage 1's history -> next-SID
    rows guards against forgetting them (measured worse on the CPU recipe: README, "Models
    that learn"). share 0 drops the replayed tasks (the method)."""
    _check_share("replay_share", share)
    out = {n: float(weights.get(n, 1.0)) if n in REPLAY_TASKS else 1.0 for n in tasks}
    if share == 0.0:
        return {n: 0.0 if n in REPLAY_TASKS else w for n, w in out.items()}
    return _scale_to_share(tasks, out, REPLAY_TASKS, share)


def item_fact_weights(tasks: Mapping[str, Sequence[Example]], weights: Mapping[str, float],
                      share: float) -> dict[str, float]:
    """Weights under which the item-fact tasks (ITEM_FACT_TASKS, in their configured
    proportions) make up `share` of the mixed examples.

    The item tasks have one example per item and the sequence tasks one per train row, so
    at weight 1 their balance depends on the dataset (1.4% of the synthetic store's
    mixture, 35% of Industrial's). A model that has seen each SID's facts a few times
    writes wrong kinds and brands in its stage-2 reasoning; a fixed share works on any
    category. share 0 returns `weights` unchanged.
    """
    _check_share("item_fact_share", share)
    out = {name: float(weights.get(name, 1.0)) for name in tasks}
    if share == 0.0:
        return out
    return _scale_to_share(tasks, out, ITEM_FACT_TASKS, share)


def encode(tokenizer, examples: Sequence[Example], max_len: int
           ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """-> per example: token ids [T] int32 and loss mask [T] bool (True = supervised label).

    mask[t] says token t is a label (predicted from tokens < t).
    """
    def lengths(texts):
        return [len(x) for x in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    full = tokenizer([e.text for e in examples], add_special_tokens=False)["input_ids"]
    starts = lengths(e.prefix for e in examples)
    ends = lengths(e.prefix + e.target for e in examples)
    ids_out, masks = [], []
    for e, ids, start, end in zip(examples, full, starts, ends):
        mask = np.zeros(len(ids), bool)
        mask[start:len(ids) if e.supervise_suffix else end] = True
        ids = np.asarray(ids, np.int32)
        ids_out.append(ids[-max_len:])
        masks.append(mask[-max_len:])
    return ids_out, masks
