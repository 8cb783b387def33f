"""Items, catalogs, interaction samples and datasets: what every stage reads.

Item ids are dense 0..N-1 (as in the MiniOneRec files). A catalog may carry
SIDs; several items can share one SID (collisions), so lookups from a SID
string return every item that has it, and evaluation matches by SID string.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import re
from typing import Iterable, Sequence

from sidjax.data.literals import parse_list


class DataError(ValueError):
    """A data file is malformed: the message names file, line and field."""

    def __init__(self, path: str, message: str, line: int | None = None, field: str | None = None):
        where = path + (f", line {line}" if line is not None else "") + (
            f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field = path, line, field


@dataclasses.dataclass
class Item:
    id: int
    title: str
    description: str = ""
    brand: str = ""
    categories: str = ""
    sid: tuple[str, ...] | None = None  # ('<a_1>', '<b_2>', '<c_3>')
    attributes: dict = dataclasses.field(default_factory=dict)  # Generator/reader extras.

    @property
    def sid_string(self) -> str | None:
        return None if self.sid is None else "".join(self.sid)


_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


def clean_description(description: str) -> str:
    """Description text as the method embeds it: list reprs joined, HTML removed."""
    text = description or ""
    if text.startswith("[") and text.endswith("]"):
        try:
            text = " ".join(str(x) for x in parse_list(text))
        except ValueError:
            pass
    text = _TAGS.sub(" ", html.unescape(text))
    return _SPACES.sub(" ", text).strip()


class Catalog:
    """All items, indexed by id, with SID and title lookups."""

    def __init__(self, items: Sequence[Item]):
        items = list(items)
        for position, item in enumerate(items):
            if item.id != position:
                raise ValueError(f"Catalog item ids must be 0..N-1 in order; position {position} "
                                 f"holds id {item.id}.")
        self.items = items
        self._by_sid: dict[str, list[int]] = {}
        for item in items:
            if item.sid is not None:
                self._by_sid.setdefault(item.sid_string, []).append(item.id)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item_id: int) -> Item:
        return self.items[item_id]

    @property
    def has_sids(self) -> bool:
        return bool(self.items) and all(item.sid is not None for item in self.items)

    def title(self, item_id: int) -> str:
        return self.items[item_id].title

    def sid_string(self, item_id: int) -> str:
        sid = self.items[item_id].sid_string
        if sid is None:
            raise KeyError(f"Item {item_id} has no SID yet; assign SIDs (the rqvae stage) first.")
        return sid

    def ids_for_sid(self, sid: str) -> list[int]:
        """Every item with this SID string (more than one when SIDs collide)."""
        return list(self._by_sid.get(sid, []))

    def sid_strings(self) -> list[str]:
        """Distinct SID strings, in order of first item."""
        return list(self._by_sid)

    def text(self, item_id: int) -> str:
        """Title + cleaned description: the text SIDs are built from."""
        item = self.items[item_id]
        description = clean_description(item.description)
        return f"{item.title} {description}".strip()

    def with_sids(self, sids: Sequence[Sequence[str]]) -> "Catalog":
        if len(sids) != len(self.items):
            raise ValueError(f"Got {len(sids)} SIDs for {len(self.items)} items.")
        return Catalog([dataclasses.replace(item, sid=tuple(sid))
                        for item, sid in zip(self.items, sids)])

    def content_hash(self) -> str:
        """Hash of the item texts (not SIDs): keys embedding caches."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(json.dumps([item.title, item.description, item.brand,
                                 item.categories]).encode())
        return h.hexdigest()[:16]


@dataclasses.dataclass
class Sample:
    """One user's history (oldest first) and the next item."""

    user: str
    history: list[int]
    target: int
    timestamp: int | None = None  # Target interaction time, where the source has it.


SPLITS = ("train", "valid", "test")


@dataclasses.dataclass
class Dataset:
    name: str  # Category / dataset name, e.g. 'Industrial_and_Scientific'.
    catalog: Catalog
    splits: dict[str, list[Sample]]
    category_noun: str = "items"  # Prompt noun, e.g. 'industrial and scientific items'.

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits:
            raise KeyError(f"Dataset '{self.name}' has no '{name}' split; it has "
                           f"{sorted(self.splits)}.")
        return self.splits[name]


def validate_samples(samples: Iterable[Sample], catalog: Catalog, source: str) -> None:
    """Every history non-empty and every id in the catalog."""
    for n, sample in enumerate(samples):
        if not sample.history:
            raise DataError(source, "empty history", line=n, field="history")
        for item_id in (*sample.history, sample.target):
            if not 0 <= item_id < len(catalog):
                raise DataError(source, f"unknown item id {item_id} (catalog has "
                                f"{len(catalog)} items)", line=n, field="item_id")
