"""Raw Amazon Reviews (2018 and 2023) -> the method's samples and splits.

2018 (`<Cat>_5.json(.gz)` + `meta_<Cat>.json(.gz)`), as MiniOneRec's preprocessing:
  - items whose title is missing, contains '<span id', or is longer than 20 words are dropped;
  - interactions are kept inside [start month, end month] (both whole months);
  - iterative 5-core inside the window; while fewer than `min_items` items remain, the start
    year moves back one and everything is redone;
  - then the shared protocol (sidjax.data.protocol): sliding window (history <= 10) and a
    global chronological 8:1:1 split.
2023 (`<Cat>.jsonl(.gz)` + `meta_<Cat>.jsonl(.gz)`): the same, keyed by parent_asin, with
timestamps in milliseconds.
Every drop is counted and logged; malformed lines fail naming file and line.
"""

from __future__ import annotations

import ast
import calendar
import datetime
import gzip
import json
from typing import Iterator

from absl import logging

from sidjax.data.minionerec import CATEGORY_NOUNS
from sidjax.data.protocol import Interaction, build_dataset, k_core
from sidjax.data.types import DataError, Dataset, Item


def _open(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(
        path, encoding="utf-8")


def _records(path: str) -> Iterator[tuple[int, dict]]:
    """JSON lines; older Amazon dumps are Python dict literals, read with literal_eval."""
    with _open(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError:
                try:
                    value = ast.literal_eval(line)
                except (ValueError, SyntaxError):
                    raise DataError(path, "neither JSON nor a Python dict literal",
                                    line=line_no) from None
                if not isinstance(value, dict):
                    raise DataError(path, "record is not an object", line=line_no) from None
                yield line_no, value


def title_ok(title) -> bool:
    """The method's title filter."""
    return bool(title) and isinstance(title, str) and "<span id" not in title and len(
        title.split()) <= 20


def _month_bounds(start: str, end: str) -> tuple[int, int]:
    """'YYYY-MM' months -> [first second of start, last second of end] as Unix times."""
    sy, sm = (int(x) for x in start.split("-"))
    ey, em = (int(x) for x in end.split("-"))
    lo = calendar.timegm(datetime.datetime(sy, sm, 1).timetuple())
    last_day = calendar.monthrange(ey, em)[1]
    hi = calendar.timegm(datetime.datetime(ey, em, last_day, 23, 59, 59).timetuple())
    return lo, hi


def _meta_items(meta: dict[str, dict], description_key: str = "description",
                brand_key: str = "brand", category_key: str = "category"):
    def make_item(item_id: int, key: str) -> Item:
        m = meta[key]
        description = m.get(description_key) or ""
        if isinstance(description, list):
            description = repr(description)  # As the released item.json stores it.
        categories = m.get(category_key) or ""
        if isinstance(categories, list):
            categories = ", ".join(str(c) for c in categories)
        return Item(id=item_id, title=m["title"].strip(), description=description,
                    brand=m.get(brand_key) or "", categories=categories,
                    attributes={"source_id": key})

    return make_item


def _filtered_window(interactions, start, end, k, min_items, stats):
    start_year, start_month = (int(x) for x in start.split("-"))
    while True:
        lo, hi = _month_bounds(f"{start_year}-{start_month:02d}", end)
        window = [x for x in interactions if lo <= x.timestamp <= hi]
        items = {x.item for x in k_core(window, k, k)}
        if len(items) >= min_items or start_year <= 1990:
            stats["window_start"] = f"{start_year}-{start_month:02d}"
            stats["dropped_outside_window"] = len(interactions) - len(window)
            return window
        logging.info("%d items in window from %d-%02d (< %d): moving the start year back.",
                     len(items), start_year, start_month, min_items)
        start_year -= 1


def _load(reviews_path: str, meta_path: str, item_key: str, user_key: str, time_key: str,
          time_divisor: int) -> tuple[dict[str, dict], list[Interaction], dict]:
    """Meta records with a valid title, and the reviews of those items as interactions."""
    meta: dict[str, dict] = {}
    bad_titles = 0
    for line_no, record in _records(meta_path):
        key = record.get(item_key)
        if not key:
            raise DataError(meta_path, f"record without '{item_key}'", line=line_no,
                            field=item_key)
        if title_ok(record.get("title")):
            meta[key] = record
        else:
            bad_titles += 1
    interactions, no_meta = [], 0
    for line_no, record in _records(reviews_path):
        for field in (user_key, item_key, time_key):
            if field not in record:
                raise DataError(reviews_path, f"missing '{field}'", line=line_no, field=field)
        if record[item_key] not in meta:
            no_meta += 1
            continue
        interactions.append(Interaction(record[user_key], record[item_key],
                                        int(record[time_key]) // time_divisor))
    return meta, interactions, {"items_dropped_by_title": bad_titles,
                                "reviews_without_valid_meta": no_meta}


def preprocess_amazon2018(reviews_path: str, meta_path: str, category: str,
                          start: str = "2016-10", end: str = "2018-11", k: int = 5,
                          min_items: int = 3000, history_cap: int = 10) -> tuple[Dataset, dict]:
    """Amazon 2018 raw files -> Dataset (MiniOneRec protocol). Returns (dataset, counts)."""
    meta, interactions, stats = _load(reviews_path, meta_path, "asin", "reviewerID",
                                      "unixReviewTime", 1)
    window = _filtered_window(interactions, start, end, k, min_items, stats)
    dataset, counts = build_dataset(category, window, _meta_items(meta), k, k, history_cap,
                                    CATEGORY_NOUNS.get(category, "items"))
    stats.update(counts)
    logging.info("Amazon 2018 %s: %s", category, stats)
    return dataset, stats


def preprocess_amazon2023(reviews_path: str, meta_path: str, category: str,
                          start: str | None = None, end: str | None = None, k: int = 5,
                          min_items: int = 0, history_cap: int = 10) -> tuple[Dataset, dict]:
    """Amazon 2023 `<Cat>.jsonl(.gz)` + `meta_<Cat>.jsonl(.gz)` -> Dataset, same protocol.

    Timestamps there are in milliseconds; items are keyed by parent_asin.
    """
    meta, interactions, stats = _load(reviews_path, meta_path, "parent_asin", "user_id",
                                      "timestamp", 1000)
    if start and end:
        interactions = _filtered_window(interactions, start, end, k, min_items, stats)
    dataset, counts = build_dataset(category, interactions,
                                    _meta_items(meta, brand_key="store",
                                                category_key="categories"),
                                    k, k, history_cap, CATEGORY_NOUNS.get(category, "items"))
    stats.update(counts)
    logging.info("Amazon 2023 %s: %s", category, stats)
    return dataset, stats
