"""Every prompt string of the method, in one place (sidreasoner_method.md sections 6, 7, 9).

The strings are reproduced exactly, typos included ("palyed", "recetenly"), because
the published numbers were produced with them. `category` is the dataset's prompt
noun (e.g. "industrial and scientific items"); the method pastes it in as is, so
"{category}s" really reads "...itemss" for Amazon categories.

Two prompt styles (`config.model.prompt_style`):
- `method`: these strings, the default whenever a pretrained checkpoint is loaded;
- `compact`: one short tagged user turn per task, no system turn, SIDs concatenated
  without separators (`COMPACT_USER`). For from-scratch models: the method's prompts are
  70-100 tokens of boilerplate around a 30-token history, which a from-scratch model must
  learn to ignore and a CPU must pay for on every step; and the non-thinking evaluation
  prompt, which differs from the training prompt as published, is a prompt a
  from-scratch model has never seen (measured in the README's diagnosis). Compact style
  uses one prompt for training and evaluation.
"""

from __future__ import annotations

from typing import Sequence

SYS_PRE = ("Below is an instruction that describes a task, paired with an input that provides "
           "further context. Write a response that appropriately completes the request.")

# Stage 1, task 1 (SidSFTDataset): SID history -> next SID.
SID_NEXT_SYSTEM = SYS_PRE + " Can you predict the next possible item that the user may expect?"
SID_NEXT_USER = ("The user has interacted with items {history} in chronological order. Can you "
                 "predict the next possible item that the user may expect?")

# Stage 1, task 2 (SidItemFeatDataset): title <-> SID.
ITEM_FEAT_SYSTEM = SYS_PRE + " \nAnswer the question about item identification.\n"
TITLE2SID_USER = "Which item has the title: {title}?"
SID2TITLE_USER = 'What is the title of item "{sid}"?'

# Stage 1, task 3 (FusionSeqRecDataset) and stage 2 / RL / thinking eval share this system.
RECOMMEND_SYSTEM = (SYS_PRE + "\nCan you recommend the next item for the user based on their "
                    "interaction history?\n")
SID_HISTORY2TITLE_USER = ("The user has sequentially interacted with items {history}. Can you "
                          "recommend the next item for him? Tell me the title of the item?")

# Stage 1, task 4 (SFTData, BIGRec style): title history -> title, one of 11 instructions.
BIGREC_INSTRUCTIONS = (
    "Given a list of {category} the user recetenly enjoy, please write a new {category} that "
    "the user may bought",
    "Considering the {category} that has recently captured the user's interest, kindly create a "
    "compilation of other {category} that the user might have played prior to this.",
    "Based on the user's current gaming preference, please draft a list of potential {category} "
    "they may have experienced beforehand.",
    "Reflecting on the {category} the user has taken pleasure in recently, we request that you "
    "formulate a list of {category} that may have preceded the user's current enjoyment.",
    "In light of the recent gaming enjoyment expressed by the user, please assemble a list of "
    "{category} that could potentially include past titles the user has engaged with.",
    "Taking into account the {category} that has lately provided enjoyment to the user, please "
    "put together an inventory of {category} the user might have explored previously.",
    "Given the user's newfound enjoyment of a particular {category}, would you kindly generate a "
    "roster of other {category} that might resonate with their past gaming experiences?",
    "In response to the user's recent fondness for a specific {category}, we seek your "
    "assistance in listing possible {category} the user may have delighted in earlier.",
    "With respect to the {category} currently enjoyed by the user, please compile a suggestive "
    "list of {category} they may have played in the past.",
    "Bearing in mind the {category} that the user has recently been enthralled by, please "
    "construct a catalog of other {category} that the user potentially partook in beforehand.",
    "In relation to the user's recent entertainment with a given {category}, it would be "
    "appreciated if you could curate a list of {category} that might form part of the user's "
    "previous gaming history.",
)
TITLE_HISTORY2TITLE_USER = "The user has palyed the following {category}s before: {history}"

# Stage 1, task 5 (TitleHistory2SidSFTDataset): title history -> SID.
TITLE_HISTORY2SID_SYSTEM = (SYS_PRE + " \nBased on the user's historical interaction with item "
                            "titles, predict the semantic ID of the next item they may expect.\n")
TITLE_HISTORY2SID_USER = ("The user has interacted with the following {category} items in "
                          "chronological order: {history}. Can you predict the next item the "
                          "user may expect?")

# Stage 2, RL and thinking-mode evaluation.
REASONING_USER = ("The user has sequentially interacted with items {history}. Can you recommend "
                  "the next item for him? Let's think step by step before making recommendation. "
                  "Directly output the item SID after thinking.")

# Non-thinking evaluation (EvalSidDataset): differs from the stage-1 training prompt.
EVAL_SYSTEM = SYS_PRE + " \nCan you predict the next possible item that the user may expect?\n"
EVAL_USER = ("Can you predict the next possible item the user may expect, given the following "
             "chronological interaction history: {history}")
EVAL_THINK_PREFIX = "<think>\n</think>\n\n"  # Appended after the generation prompt.
THINK_SEPARATOR = "\n</think>\n\n"  # Re-appended after cut reasoning in thinking mode.


def sid_history(sids: Sequence[str]) -> str:
    """SID histories are joined with ', ' (method section 4)."""
    return ", ".join(sids)


def quoted_titles(titles: Sequence[str], separator: str) -> str:
    return separator.join(f'"{t}"' for t in titles)


def system_user(system: str, user: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def reasoning_messages(history_sids: Sequence[str], style: str = "method") -> list[dict]:
    """The stage-2 / RL / thinking-eval prompt messages for one history."""
    if style == "compact":
        return compact_messages("reasoning", history=history_sids)
    return system_user(RECOMMEND_SYSTEM, REASONING_USER.format(history=sid_history(history_sids)))


def eval_messages(history_sids: Sequence[str]) -> list[dict]:
    """The non-thinking evaluation prompt messages (EvalSidDataset)."""
    return system_user(EVAL_SYSTEM, EVAL_USER.format(history=sid_history(history_sids)))


PROMPT_STYLES = ("method", "compact")
# Compact style: the user turn per task. Histories are SID strings joined with nothing (each
# SID is three added tokens) or titles joined with "; ".
COMPACT_USER = {
    "sid_next": "next: {history}",
    # The same user turn as sid_next: thinking and non-thinking answers differ only in the
    # assistant turn (reasoning inside <think>, or an empty think block), so the SID after
    # the reasoning is predicted from the context stage 1 trained (measured in the README).
    "reasoning": "next: {history}",
    "title2sid": "sid of: {title}",
    "sid2title": "title of: {sid}",
    "sid_history2title": "next title: {history}",
    "title_history2title": "titles, next title: {history}",
    "title_history2sid": "titles, next: {history}",
}


def resolve_style(style: str, hf_path: str = "") -> str:
    """'auto' -> 'method' for a pretrained checkpoint (`hf_path` set), else 'compact'."""
    if style == "auto":
        return "method" if hf_path else "compact"
    if style not in PROMPT_STYLES:
        raise ValueError(f"config.model.prompt_style='{style}' is not one of "
                         f"{('auto',) + PROMPT_STYLES}.")
    return style


def compact_messages(task: str, **fields) -> list[dict]:
    """The compact-style user turn of `task` (history SIDs joined with nothing)."""
    if isinstance(fields.get("history"), (list, tuple)):
        fields["history"] = "".join(fields["history"])
    return [{"role": "user", "content": COMPACT_USER[task].format(**fields)}]


def sid_next_messages(history_sids: Sequence[str], style: str = "method") -> list[dict]:
    """Stage-1 task 1 (and the non-thinking prompt in compact style)."""
    if style == "compact":
        return compact_messages("sid_next", history=history_sids)
    return system_user(SID_NEXT_SYSTEM, SID_NEXT_USER.format(history=sid_history(history_sids)))
