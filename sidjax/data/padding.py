"""Left-padded token batches in a few bucket lengths: one shape per bucket, one compile each."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def bucket_length(n: int, smallest: int = 16, largest: int | None = None,
                  midpoints: bool = False) -> int:
    """The next power of two >= n (at least `smallest`, at most `largest`).

    With `midpoints`, 1.5x each power of two is a bucket too (16, 24, 32, 48, ...): twice
    the shapes to compile, at most a third of each row padding instead of half.
    """
    length = smallest
    while length < n:
        if midpoints and length * 3 // 2 >= n and (length * 3) % 2 == 0:
            length = length * 3 // 2
            break
        length *= 2
    return min(length, largest) if largest else length


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, length: int | None = None,
             rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> left-padded ids [rows, length] int32 and validity mask [rows, length].

    length defaults to the bucket of the longest sequence; rows (default len(seqs)) adds
    all-padding rows so batches keep a fixed size.
    """
    length = length or bucket_length(max(len(s) for s in seqs))
    rows = rows or len(seqs)
    tokens = np.full((rows, length), pad_id, np.int32)
    valid = np.zeros((rows, length), bool)
    for row, s in enumerate(seqs):
        if len(s) > length:
            raise ValueError(f"Sequence {row} has {len(s)} tokens, more than the length {length}.")
        if len(s):
            tokens[row, length - len(s):] = s
            valid[row, length - len(s):] = True
    return tokens, valid
