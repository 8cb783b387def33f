"""Tokenizers and the Semantic-ID vocabulary.

- `load_tokenizer(path)`: any local Hugging Face tokenizer directory, offline.
- `train_tokenizer(texts, vocab_size, path)`: a small byte-level BPE for from-scratch
  CPU models, saved as an HF tokenizer directory with the Qwen3 chat tokens and template.
- `add_sid_tokens(tokenizer, model, tokens)`: adds SID tokens (`<a_12>`, ...) as
  ordinary tokens (one id each, kept by `skip_special_tokens=True`, as the method
  does), and grows the embedding and the output head.

Initialising the new rows: every SID row (and every padding row added to reach a
multiple of `pad_to_multiple_of`) is set to mean + noise_scale * std * N(0, 1),
with mean and per-dimension std taken over the rows of the tokens that existed
before (never over a checkpoint's untrained padding rows). Unlike the HF resize
for Qwen3 (whose matrix has spare rows), no SID token is left on an untrained
padding row: every new id is initialised the same way, wherever it lands.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import jax
import numpy as np

from sidjax.model import chat
from sidjax.model.model import Model, param_shardings

SID_TOKEN = re.compile(r"<[a-z]_\d+>")


def load_tokenizer(path: str):
    """A local HF tokenizer directory, left-padded, pad = eos when it has no pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int, path: str | None = None):
    """Trains a byte-level BPE on `texts`; returns an HF fast tokenizer (saved to `path`).

    Its special tokens follow Qwen3 (`<|endoftext|>` pad, `<|im_start|>`,
    `<|im_end|>` eos) and `<think>`/`</think>` are single added tokens, so the
    method's prompts tokenise the same way they do with a real Qwen3 tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [chat.ENDOFTEXT, chat.IM_START, chat.IM_END]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=chat.IM_END,
                                        pad_token=chat.ENDOFTEXT, padding_side="left")
    tokenizer.add_special_tokens({"additional_special_tokens": [chat.IM_START]})
    tokenizer.add_tokens([chat.THINK_OPEN, chat.THINK_CLOSE])
    tokenizer.chat_template = chat.qwen3_template()
    if path:
        tokenizer.save_pretrained(path)
    return tokenizer


def sid_tokens(sids: Iterable[str | Sequence[str]]) -> list[str]:
    """Every distinct SID token in `sids`, sorted as strings (the method's add order)."""
    found = set()
    for sid in sids:
        found.update(SID_TOKEN.findall(sid) if isinstance(sid, str) else sid)
    return sorted(found)


def _grow(matrix: np.ndarray, rows: int, new_ids: np.ndarray, reference_rows: int,
          rng: np.random.Generator, noise_scale: float) -> np.ndarray:
    """matrix [V, D] -> [rows, D]; rows at new_ids and appended rows get mean + noise."""
    reference = matrix[:reference_rows].astype(np.float64)
    mean, std = reference.mean(0), reference.std(0)
    grown = np.zeros((rows, matrix.shape[1]), matrix.dtype)
    grown[:matrix.shape[0]] = matrix
    fresh = np.union1d(new_ids, np.arange(matrix.shape[0], rows))
    noise = rng.standard_normal((len(fresh), matrix.shape[1]))
    grown[fresh] = (mean + noise_scale * std * noise).astype(matrix.dtype)
    return grown


def add_sid_tokens(tokenizer, model: Model, tokens: Sequence[str], seed: int = 0,
                   noise_scale: float = 0.1, pad_to_multiple_of: int = 64):
    """Adds `tokens` to the tokenizer and grows the model's vocabulary; returns both.

    Tokens the tokenizer already has keep their ids and rows. Returns
    (tokenizer, new Model, ids of the added tokens).
    """
    bad = [t for t in tokens if not SID_TOKEN.fullmatch(t)]
    if bad:
        raise ValueError(f"Not SID tokens (expected '<letter_number>'): {bad[:5]}")
    reference_rows = len(tokenizer)  # Rows of real tokens; beyond are untrained padding.
    vocab = tokenizer.get_vocab()
    new = [t for t in sorted(set(tokens)) if t not in vocab]
    tokenizer.add_tokens(new)
    ids = np.asarray(tokenizer.convert_tokens_to_ids(new), np.int64)
    config = model.config
    needed = max(config.vocab_size, len(tokenizer))
    rows = -(-needed // pad_to_multiple_of) * pad_to_multiple_of
    rng = np.random.default_rng(seed)
    params = dict(model.params)
    reference_rows = min(reference_rows, config.vocab_size)
    embedding = np.asarray(jax.device_get(params["embed"]["embedding"]))  # [V, D]
    params["embed"] = {"embedding": _grow(embedding, rows, ids, reference_rows, rng, noise_scale)}
    if not config.tie_word_embeddings:
        head = np.asarray(jax.device_get(params["lm_head"]))  # [D, V]
        params["lm_head"] = _grow(head.T, rows, ids, reference_rows, rng, noise_scale).T.copy()
    config = config.replace(vocab_size=rows)
    if model.mesh is not None:
        params = jax.device_put(params, param_shardings(config, model.mesh))
    else:
        params = jax.tree.map(jax.numpy.asarray, params)
    return tokenizer, Model(config=config, params=params, mesh=model.mesh), ids.tolist()
