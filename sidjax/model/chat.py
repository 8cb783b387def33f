"""The Qwen3 chat format, rendered in Python exactly as Qwen3's Jinja template does.

Why not `tokenizer.apply_chat_template`: from-scratch CPU tokenizers have no
template, loss masks need the exact strings, and prompts are built in bulk.
Tests check this renderer against transformers running the published Qwen3
template (shipped in `templates/qwen3_chat_template.jinja`) on the same messages.

Assistant turns after the last user turn render their reasoning as
`<think>\n{reasoning}\n</think>\n\n{content}`; the last assistant turn always
gets a think block (empty if it has no reasoning), earlier ones lose theirs.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EMPTY_THINK = "<think>\n\n</think>\n\n"
TEMPLATE_PATH = os.path.join(os.path.dirname(__file__), "templates", "qwen3_chat_template.jinja")


def qwen3_template() -> str:
    with open(TEMPLATE_PATH, encoding="utf-8") as f:
        return f.read()


def _split_reasoning(message: Mapping[str, str]) -> tuple[str, str]:
    content = message["content"]
    reasoning = message.get("reasoning_content")
    if reasoning is not None:
        return content, reasoning
    if THINK_CLOSE in content:
        reasoning = content.split(THINK_CLOSE)[0].rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n")
        return content.split(THINK_CLOSE)[-1].lstrip("\n"), reasoning
    return content, ""


def render_chat(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False,
                enable_thinking: bool | None = None) -> str:
    """Renders system/user/assistant messages in the Qwen3 format (no tool calls)."""
    if not messages:
        raise ValueError("render_chat needs at least one message.")
    out = []
    if messages[0]["role"] == "system":
        out.append(f"{IM_START}system\n{messages[0]['content']}{IM_END}\n")
    last_query = max((i for i, m in enumerate(messages) if m["role"] == "user"),
                     default=len(messages) - 1)
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "user" or (role == "system" and i > 0):
            out.append(f"{IM_START}{role}\n{message['content']}{IM_END}\n")
        elif role == "assistant":
            content, reasoning = _split_reasoning(message)
            last = i == len(messages) - 1
            if i > last_query and (last or reasoning):
                out.append(f"{IM_START}assistant\n{THINK_OPEN}\n{reasoning.strip(chr(10))}\n"
                           f"{THINK_CLOSE}\n\n{content.lstrip(chr(10))}")
            else:
                out.append(f"{IM_START}assistant\n{content}")
            out.append(f"{IM_END}\n")
        elif role != "system":
            raise ValueError(f"render_chat: message {i} has role '{role}'; supported roles are "
                             "system, user and assistant.")
    if add_generation_prompt:
        out.append(f"{IM_START}assistant\n")
        if enable_thinking is False:
            out.append(EMPTY_THINK)
    return "".join(out)
