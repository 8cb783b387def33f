"""Dense tables of valid SIDs, built once from the catalog and used inside jit.

The catalog's SIDs form a trie (root -> level-1 codes -> level-2 codes -> ...). Each
node gets an id (root = 0); for every node the table holds its allowed next tokens and
the node each leads to, padded to the widest node:

  child_tokens [num_nodes, max_children]  int32, padding -1
  child_nodes  [num_nodes, max_children]  int32, padding -1

so a beam step gathers the log-probs of exactly the allowed tokens of each beam's
node, and the search can never leave the catalog (no empty allowed set, no Python
callback per token). Works for any number of levels (3, or 4 with a disambiguation
level). `end_tokens` (e.g. ids of "\\n" and <|im_end|>) follow every complete SID.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class SidTables:
    child_tokens: np.ndarray  # [num_nodes, max_children] int32, -1 padding
    child_nodes: np.ndarray  # [num_nodes, max_children] int32, -1 padding
    levels: int
    end_tokens: tuple[int, ...]
    leaf_sids: dict  # token-id tuple -> SID string, for rendering results

    @property
    def num_sids(self) -> int:
        return len(self.leaf_sids)


def build_sid_tables(sid_token_ids: Sequence[Sequence[int]], end_tokens: Sequence[int],
                     sid_strings: Sequence[str] | None = None) -> SidTables:
    """From each catalog item's SID as token ids (all of the same length)."""
    if not sid_token_ids:
        raise ValueError("build_sid_tables needs at least one SID.")
    levels = len(sid_token_ids[0])
    if any(len(s) != levels for s in sid_token_ids):
        raise ValueError("All SIDs must have the same number of levels; got lengths "
                         f"{sorted({len(s) for s in sid_token_ids})}.")
    children: list[dict[int, int]] = [{}]
    leaves: dict[tuple[int, ...], str] = {}
    for n, sid in enumerate(sid_token_ids):
        node = 0
        for token in sid:
            token = int(token)
            if token not in children[node]:
                children[node][token] = len(children)
                children.append({})
            node = children[node][token]
        key = tuple(int(t) for t in sid)
        leaves.setdefault(key, sid_strings[n] if sid_strings is not None else str(key))
    width = max(len(c) for c in children) or 1
    tokens = np.full((len(children), width), -1, np.int32)
    nodes = np.full((len(children), width), -1, np.int32)
    for node, kids in enumerate(children):
        for j, (token, child) in enumerate(sorted(kids.items())):
            tokens[node, j] = token
            nodes[node, j] = child
    return SidTables(child_tokens=tokens, child_nodes=nodes, levels=levels,
                     end_tokens=tuple(int(t) for t in end_tokens), leaf_sids=leaves)


def tables_from_catalog(catalog, tokenizer, end_text: Sequence[str] = ("\n",)) -> SidTables:
    """Tables for a catalog with SIDs; end tokens = tokens of end_text + the EOS token.

    The method's evaluation constrains a -> b -> c -> "\\n" -> <|im_end|>.
    """
    sids = catalog.sid_strings()
    ids = []
    for sid in sids:
        token_ids = tokenizer.convert_tokens_to_ids(list(catalog[catalog.ids_for_sid(sid)[0]].sid))
        ids.append(token_ids)
    end = [t for text in end_text for t in tokenizer.encode(text, add_special_tokens=False)]
    end.append(tokenizer.convert_tokens_to_ids(tokenizer.eos_token))
    return build_sid_tables(ids, end, sids)
