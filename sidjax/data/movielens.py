"""MovieLens readers (ml-100k, ml-1m, RecBole atomic files) into the method's protocol.

Item text is the title plus year and genres ("Toy Story (1995). Genres: Animation,
Children's, Comedy"), which is what SIDs and prompts are built from. Ratings are
implicit feedback: every rating is one interaction, as in the sequential protocol.
"""

from __future__ import annotations

import os
import re

from sidjax.data.protocol import Interaction, build_dataset
from sidjax.data.types import DataError, Dataset, Item

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _item_factory(movies: dict[str, dict]):
    def make_item(item_id: int, key: str) -> Item:
        m = movies[key]
        genres = ", ".join(m["genres"])
        year = m.get("year") or ""
        return Item(id=item_id, title=m["title"], description=f"Genres: {genres}." if genres
                    else "", categories=genres,
                    attributes={"source_id": key, "year": year, "genres": list(m["genres"])})

    return make_item


def _lines(path: str, encoding: str = "latin-1"):
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    with open(path, encoding=encoding) as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                yield n, line.rstrip("\n")


def read_ml100k(directory: str, k: int = 5, history_cap: int = 10) -> tuple[Dataset, dict]:
    """ml-100k: `u.data` (user, item, rating, time; tab-separated) + `u.item` ('|'-separated)."""
    movies = {}
    path = os.path.join(directory, "u.item")
    for n, line in _lines(path):
        parts = line.split("|")
        if len(parts) != 5 + len(ML100K_GENRES):
            raise DataError(path, f"expected {5 + len(ML100K_GENRES)} '|' fields, got "
                            f"{len(parts)}", line=n)
        flags = parts[5:]
        year = _YEAR.search(parts[1])
        movies[parts[0]] = {"title": parts[1], "year": year.group(1) if year else "",
                            "genres": [g for g, f in zip(ML100K_GENRES, flags) if f == "1"]}
    interactions = []
    path = os.path.join(directory, "u.data")
    for n, line in _lines(path):
        parts = line.split("\t")
        if len(parts) != 4 or parts[1] not in movies:
            raise DataError(path, "expected 'user<TAB>item<TAB>rating<TAB>time' with a known item",
                            line=n)
        interactions.append(Interaction(parts[0], parts[1], int(parts[3])))
    return build_dataset("ml-100k", interactions, _item_factory(movies), k, k, history_cap,
                         "movies")


def read_ml1m(directory: str, k: int = 5, history_cap: int = 10) -> tuple[Dataset, dict]:
    """ml-1m: `ratings.dat` (UserID::MovieID::Rating::Timestamp) + `movies.dat`."""
    movies = {}
    path = os.path.join(directory, "movies.dat")
    for n, line in _lines(path):
        parts = line.split("::")
        if len(parts) != 3:
            raise DataError(path, "expected 'MovieID::Title::Genres'", line=n)
        year = _YEAR.search(parts[1])
        movies[parts[0]] = {"title": parts[1], "year": year.group(1) if year else "",
                            "genres": [g for g in parts[2].split("|") if g]}
    interactions = []
    path = os.path.join(directory, "ratings.dat")
    for n, line in _lines(path):
        parts = line.split("::")
        if len(parts) != 4 or parts[1] not in movies:
            raise DataError(path, "expected 'UserID::MovieID::Rating::Timestamp' with a known "
                            "movie", line=n)
        interactions.append(Interaction(parts[0], parts[1], int(parts[3])))
    return build_dataset("ml-1m", interactions, _item_factory(movies), k, k, history_cap,
                         "movies")


def _atomic(path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    rows = list(_lines(path, encoding="utf-8"))
    if not rows:
        raise DataError(path, "empty file")
    header = [h.split(":")[0] for h in rows[0][1].split("\t")]
    body = []
    for n, line in rows[1:]:
        parts = line.split("\t")
        if len(parts) != len(header):
            raise DataError(path, f"{len(parts)} fields for a {len(header)}-column header",
                            line=n)
        body.append((n, parts))
    return header, body


def read_recbole(directory: str, name: str, k: int = 5,
                 history_cap: int = 10) -> tuple[Dataset, dict]:
    """RecBole atomic files `<name>.inter` (user_id, item_id, timestamp) and `<name>.item`."""
    movies = {}
    path = os.path.join(directory, f"{name}.item")
    header, body = _atomic(path)
    title_col = next((c for c in ("movie_title", "title", "item_title") if c in header), None)
    if "item_id" not in header or title_col is None:
        raise DataError(path, f"needs item_id and a title column; header has {header}")
    for n, parts in body:
        row = dict(zip(header, parts))
        genres = row.get("genre", "").split()
        movies[row["item_id"]] = {"title": row[title_col], "year": row.get("release_year", ""),
                                  "genres": genres}
    interactions = []
    path = os.path.join(directory, f"{name}.inter")
    header, body = _atomic(path)
    for column in ("user_id", "item_id", "timestamp"):
        if column not in header:
            raise DataError(path, f"missing column '{column}'; header has {header}")
    for n, parts in body:
        row = dict(zip(header, parts))
        if row["item_id"] not in movies:
            raise DataError(path, f"unknown item_id {row['item_id']!r}", line=n, field="item_id")
        interactions.append(Interaction(row["user_id"], row["item_id"],
                                        int(float(row["timestamp"]))))
    return build_dataset(name, interactions, _item_factory(movies), k, k, history_cap, "movies")
