"""The MiniOneRec / SIDReasoner file format: read it exactly, write it back the same way.

Layout under a data directory, for a category `Cat` and a file stem
(default `Cat_5_2016-10-2018-11`):

  train|valid|test/<stem>.csv   user_id, history_item_title, item_title, history_item_id,
                                item_id, history_item_sid, item_sid  (list columns are
                                Python list literals, oldest first)
  info/<stem>.txt               SID \\t title \\t item_id, one line per item
  index/<Cat>.index.json        {"<item_id>": ["<a_x>", "<b_y>", "<c_z>"]}
  index/<Cat>.item.json         {"<item_id>": {"title", "description", "brand", "categories"}}

Files written here load in the original PyTorch code and vice versa: CSVs use
the same column order, minimal quoting and '\\n' line ends, list cells are
Python reprs.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re

from absl import logging

from sidjax.data.literals import parse_list
from sidjax.data.types import SPLITS, Catalog, DataError, Dataset, Item, Sample

COLUMNS = ("user_id", "history_item_title", "item_title", "history_item_id", "item_id",
           "history_item_sid", "item_sid")
DEFAULT_WINDOW = "_5_2016-10-2018-11"
# Prompt nouns the method uses per category.
CATEGORY_NOUNS = {
    "Industrial_and_Scientific": "industrial and scientific items",
    "Office_Products": "office products",
    "Video_Games": "video games",
}


def _stem(data_dir: str, category: str, stem: str | None) -> str:
    if stem:
        return stem
    if os.path.exists(os.path.join(data_dir, "info", f"{category}{DEFAULT_WINDOW}.txt")):
        return category + DEFAULT_WINDOW
    found = sorted(glob.glob(os.path.join(data_dir, "info", f"{category}*.txt")))
    if len(found) == 1:
        return os.path.splitext(os.path.basename(found[0]))[0]
    return category + DEFAULT_WINDOW


# The method's SIDs: three levels (<a_i><b_j><c_k>), a fourth (<d_n>) where collisions
# were resolved by an extra level. Level L's token starts with the L-th letter.
SID_LEVELS = (3, 4)
_SID_TOKEN = re.compile(r"<([a-z])_(\d+)>")


def read_text(path: str) -> str:
    """The file as UTF-8 text; undecodable bytes raise a DataError naming the line."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(path, f"bytes {raw[e.start:e.end]!r} at offset {e.start} are not "
                        "UTF-8; re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
                        line=line) from None


def _check_sid_levels(sid: list, item: int, path: str, levels: int | None) -> int:
    """The SID's level count (one of SID_LEVELS, the same for every item) and its tokens'
    level letters (a, b, c, d in order)."""
    if len(sid) not in SID_LEVELS:
        raise DataError(path, f"item {item}: SID {sid!r} has {len(sid)} levels; the method's "
                        f"SIDs have {' or '.join(map(str, SID_LEVELS))} (<a_i><b_j><c_k>"
                        "[<d_n>]); regenerate the index with --config.sid.method=rqvae",
                        field=str(item))
    if levels is not None and len(sid) != levels:
        raise DataError(path, f"item {item}: SID {sid!r} has {len(sid)} levels, earlier "
                        f"items have {levels}; every SID needs the same number of levels",
                        field=str(item))
    for level, token in enumerate(sid):
        match = _SID_TOKEN.fullmatch(token)
        if not match or match.group(1) != "abcd"[level]:
            raise DataError(path, f"item {item}: SID token {token!r} at level {level + 1} "
                            f"must look like '<{'abcd'[level]}_n>'", field=str(item))
    return len(sid)


def _load_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e.msg}", line=e.lineno) from None


def read_catalog(data_dir: str, category: str) -> Catalog:
    """Items from index/<Cat>.item.json, with SIDs from index/<Cat>.index.json if present."""
    item_path = os.path.join(data_dir, "index", f"{category}.item.json")
    index_path = os.path.join(data_dir, "index", f"{category}.index.json")
    meta = _load_json(item_path)
    try:
        ids = sorted(int(k) for k in meta)
    except ValueError:
        raise DataError(item_path, "item ids must be integers as strings") from None
    if ids != list(range(len(ids))):
        raise DataError(item_path, f"item ids must be 0..{len(ids) - 1} without gaps")
    sids = _load_json(index_path) if os.path.exists(index_path) else {}
    if sids and set(sids) != set(meta):
        extra = sorted(set(sids) ^ set(meta), key=int)[:5]
        raise DataError(index_path, f"item ids differ from {os.path.basename(item_path)}: "
                        f"{extra}")
    items, levels = [], None
    for i in ids:
        m = meta[str(i)]
        if not isinstance(m, dict) or "title" not in m:
            raise DataError(item_path, f"item {i} has no 'title'", field="title")
        sid = sids.get(str(i))
        if sid is not None and (not isinstance(sid, list) or not all(
                isinstance(t, str) and t.startswith("<") and t.endswith(">") for t in sid)):
            raise DataError(index_path, f"item {i}: SID must be a list of '<x_n>' tokens, got "
                            f"{sid!r}", field=str(i))
        if sid is not None:
            levels = _check_sid_levels(sid, i, index_path, levels)
        items.append(Item(id=i, title=m["title"], description=m.get("description") or "",
                          brand=m.get("brand") or "", categories=m.get("categories") or "",
                          sid=tuple(sid) if sid is not None else None))
    return Catalog(items)


def _read_split(path: str, catalog: Catalog) -> list[Sample]:
    samples = []
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("user_id", "history_item_id", "item_id")
                   if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, f"missing columns {missing}; found {reader.fieldnames}")
        has_sids = "item_sid" in reader.fieldnames and catalog.has_sids
        for line, row in enumerate(reader, start=2):  # Line 1 is the header.
            short = [c for c in COLUMNS if c in reader.fieldnames and row.get(c) is None]
            if short:
                raise DataError(path, f"the row has {len(reader.fieldnames) - len(short)} of "
                                f"the header's {len(reader.fieldnames)} columns (no "
                                f"{', '.join(short)}); complete or remove it", line=line,
                                field=short[0])
            try:
                history = [int(x) for x in parse_list(row["history_item_id"])]
            except (ValueError, TypeError) as e:
                raise DataError(path, str(e), line=line, field="history_item_id") from None
            try:
                target = int(row["item_id"])
            except (ValueError, TypeError):
                raise DataError(path, f"not an integer: {row['item_id']!r}", line=line,
                                field="item_id") from None
            if not history:
                raise DataError(path, "empty history", line=line, field="history_item_id")
            for item_id, field in [(i, "history_item_id") for i in history] + [
                    (target, "item_id")]:
                if not 0 <= item_id < len(catalog):
                    raise DataError(path, f"unknown item id {item_id} (catalog has "
                                    f"{len(catalog)} items)", line=line, field=field)
            if has_sids:
                if row["item_sid"] != catalog.sid_string(target):
                    raise DataError(path, f"item_sid {row['item_sid']!r} is not item {target}'s "
                                    f"SID {catalog.sid_string(target)!r} in index.json",
                                    line=line, field="item_sid")
                if row.get("history_item_sid"):
                    try:
                        history_sids = parse_list(row["history_item_sid"])
                    except ValueError as e:
                        raise DataError(path, str(e), line=line,
                                        field="history_item_sid") from None
                    expected = [catalog.sid_string(i) for i in history]
                    if history_sids != expected:
                        raise DataError(path, "history_item_sid does not match the history "
                                        "ids' SIDs in index.json", line=line,
                                        field="history_item_sid")
            samples.append(Sample(user=row["user_id"], history=history, target=target))
    if not samples:
        raise DataError(path, "no rows after the header; a split needs at least one sample "
                        "(remove the file to skip the split)")
    return samples


def read_minionerec(data_dir: str, category: str, stem: str | None = None,
                    splits=SPLITS, split_paths: dict[str, str] | None = None) -> Dataset:
    """Reads a MiniOneRec-format dataset; split files that do not exist are skipped (logged).

    split_paths overrides where a split's CSV is read from, e.g. {'train': 'derived.csv'}.
    """
    stem = _stem(data_dir, category, stem)
    catalog = read_catalog(data_dir, category)
    info = os.path.join(data_dir, "info", f"{stem}.txt")
    if os.path.exists(info) and catalog.has_sids:
        _check_info(info, catalog)
    loaded = {}
    for split in splits:
        path = (split_paths or {}).get(split) or os.path.join(data_dir, split, f"{stem}.csv")
        if split_paths and split_paths.get(split) and not os.path.exists(path):
            raise DataError(path, f"file not found (given for the {split} split)")
        if os.path.exists(path):
            loaded[split] = _read_split(path, catalog)
        else:
            logging.info("No %s split at %s.", split, path)
    if not loaded:
        raise DataError(os.path.join(data_dir, "{train,valid,test}", f"{stem}.csv"),
                        "no split files found")
    return Dataset(name=category, catalog=catalog, splits=loaded,
                   category_noun=CATEGORY_NOUNS.get(category, "items"))


def _check_info(path: str, catalog: Catalog) -> None:
    with io.StringIO(read_text(path)) as f:
        for line, text in enumerate(f, start=1):
            parts = text.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise DataError(path, f"expected 'SID<TAB>title<TAB>item_id', got {len(parts)} "
                                "fields", line=line)
            sid, _, item_id = parts
            if not item_id.isdigit() or int(item_id) >= len(catalog):
                raise DataError(path, f"unknown item id {item_id!r}", line=line, field="item_id")
            if sid != catalog.sid_string(int(item_id)):
                raise DataError(path, f"SID {sid} differs from index.json's "
                                f"{catalog.sid_string(int(item_id))} for item {item_id}",
                                line=line, field="sid")


def write_minionerec(dataset: Dataset, data_dir: str, stem: str | None = None) -> None:
    """Writes catalog, SIDs (if assigned) and splits in the MiniOneRec layout."""
    category, catalog = dataset.name, dataset.catalog
    stem = stem or category + DEFAULT_WINDOW
    os.makedirs(os.path.join(data_dir, "index"), exist_ok=True)
    meta = {str(item.id): {"title": item.title, "description": item.description,
                           "brand": item.brand, "categories": item.categories}
            for item in catalog.items}
    with open(os.path.join(data_dir, "index", f"{category}.item.json"), "w",
              encoding="utf-8") as f:
        json.dump(meta, f, indent=4)
    if catalog.has_sids:
        write_sid_index(catalog, data_dir, category, stem)
    for split, samples in dataset.splits.items():
        os.makedirs(os.path.join(data_dir, split), exist_ok=True)
        with open(os.path.join(data_dir, split, f"{stem}.csv"), "w", newline="",
                  encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            for s in samples:
                sids = catalog.has_sids
                writer.writerow([
                    s.user, repr([catalog.title(i) for i in s.history]), catalog.title(s.target),
                    repr(list(s.history)), s.target,
                    repr([catalog.sid_string(i) for i in s.history]) if sids else "",
                    catalog.sid_string(s.target) if sids else "",
                ])


def write_sid_index(catalog: Catalog, data_dir: str, category: str, stem: str | None = None):
    """index/<Cat>.index.json and info/<stem>.txt for a catalog with SIDs."""
    stem = stem or category + DEFAULT_WINDOW
    os.makedirs(os.path.join(data_dir, "index"), exist_ok=True)
    os.makedirs(os.path.join(data_dir, "info"), exist_ok=True)
    with open(os.path.join(data_dir, "index", f"{category}.index.json"), "w",
              encoding="utf-8") as f:
        json.dump({str(item.id): list(item.sid) for item in catalog.items}, f)
    with open(os.path.join(data_dir, "info", f"{stem}.txt"), "w", encoding="utf-8") as f:
        for item in catalog.items:
            f.write(f"{item.sid_string}\t{item.title}\t{item.id}\n")
