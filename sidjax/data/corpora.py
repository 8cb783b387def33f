"""The method's teacher-corpus and general-chat file formats (read and write).

  <Cat>.item_enhanced_v2.json     {"<item_id>": {"llm_stage2": text, ...}}   (stage-1 task 6)
  <Cat>.integrated_narrative.csv  columns user_id, history_item_sid, item_sid,
                                  history_item_title, item_title, integrated_narrative,
                                  reasoning_path                       (task 7 and stage 2)
  general chats (JSON Lines)      {"messages": "<python-literal list of {role, content}>"}
                                  (task 8; the method reads `sampled_data.arrow` this way)

Released SIDReasoner corpora load with the same readers.
"""

from __future__ import annotations

import csv
import json
import os
import random
from typing import Iterable, Mapping

from sidjax.data.literals import parse_list
from sidjax.data.types import DataError

NARRATIVE_COLUMNS = ("user_id", "history_item_sid", "item_sid", "history_item_title",
                     "item_title", "integrated_narrative", "reasoning_path")


def item_enhanced_path(directory: str, category: str) -> str:
    return os.path.join(directory, f"{category}.item_enhanced_v2.json")


def narrative_path(directory: str, category: str) -> str:
    return os.path.join(directory, f"{category}.integrated_narrative.csv")


def write_item_enhanced(path: str, texts: Mapping[int, str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump({str(k): {"llm_stage2": v} for k, v in texts.items()}, f, ensure_ascii=False,
                  indent=1)


def read_item_enhanced(path: str) -> dict[int, str]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    out = {}
    for key, meta in data.items():
        if not isinstance(meta, dict) or "llm_stage2" not in meta:
            raise DataError(path, "entry has no 'llm_stage2' text", field=str(key))
        out[int(key)] = str(meta["llm_stage2"])
    return out


def write_narratives(path: str, rows: Iterable[Mapping]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=NARRATIVE_COLUMNS)
        writer.writeheader()
        for row in rows:
            out = dict(row)
            for key in ("history_item_sid", "history_item_title"):
                out[key] = str(list(out[key]))
            writer.writerow({k: out.get(k, "") for k in NARRATIVE_COLUMNS})


def read_narratives(path: str) -> list[dict]:
    """Rows with history_item_sid / history_item_title parsed into lists."""
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"history_item_sid", "item_sid"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(path, f"missing columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                row["history_item_sid"] = [str(s) for s in parse_list(row["history_item_sid"])]
                if row.get("history_item_title"):
                    row["history_item_title"] = [str(t) for t in
                                                 parse_list(row["history_item_title"])]
            except ValueError as e:
                raise DataError(path, str(e), line=line, field="history_item_sid") from e
            rows.append(row)
    return rows


def read_general_chats(path: str, limit: int = 60000, seed: int = 42) -> list[list[dict]]:
    """JSON Lines of {"messages": python-literal list}; `limit` drawn with random.sample."""
    chats = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                messages = json.loads(line)["messages"]
                if isinstance(messages, str):
                    messages = parse_list(messages)
            except (ValueError, KeyError) as e:
                raise DataError(path, f"not a {{'messages': [...]}} record ({e})", line=line_no,
                                field="messages") from e
            chats.append(list(messages))
    if limit and len(chats) > limit:
        chats = random.Random(seed).sample(chats, limit)
    return chats


def write_general_chats(path: str, chats: Iterable[list[dict]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for chat in chats:
            f.write(json.dumps({"messages": repr(list(chat))}, ensure_ascii=False) + "\n")
