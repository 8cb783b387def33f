"""Tokenizers and the Semantic-ID vocabulary.

- `load_tokenizer(path)`: any local Hugging Face tokenizer directory, offline, including
  SentencePiece ones (Llama-2 / Gemma ship `tokenizer.model`; transformers reads it through
  the `sentencepiece` package), and a bare SentencePiece `tokenizer.model` (a directory with
  only that file, or the file itself), as Meta's original Llama-2 release ships it.
- `train_tokenizer(texts, vocab_size, path, kind)`: a small tokenizer for from-scratch CPU
  models, saved as an HF tokenizer directory with the Qwen3 chat tokens and template:
  `kind='bpe'`, a byte-level BPE (the default), or `kind='sentencepiece'`, a SentencePiece
  unigram model with byte fallback (the standard from-scratch choice; its `tokenizer.model`
  is saved beside the HF files, so SentencePiece tooling reads it too).
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

import io
import os
import re
import tempfile
from typing import Iterable, Sequence

import jax
import numpy as np

from sidjax.model import chat
from sidjax.model.model import Model, place_params

SID_TOKEN = re.compile(r"<[a-z]_\d+>")


TOKENIZER_KINDS = ("bpe", "sentencepiece")
SPM_FILE = "tokenizer.model"
# SentencePiece's word-boundary mark.
SPM_SPACE = "\u2581"


def load_tokenizer(path: str):
    """A local tokenizer, left-padded, pad = eos when it has no pad token.

    `path` is an HF tokenizer directory, or a bare SentencePiece model (a `.model` file, or a
    directory holding `tokenizer.model` and no HF tokenizer files)."""
    bare = _bare_sentencepiece_file(path)
    if bare:
        tokenizer = _from_sentencepiece(bare)
    else:
        from transformers import AutoTokenizer

        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"Tokenizer path '{path}' is neither a directory nor a SentencePiece .model "
                "file; point it at a local HF checkpoint or tokenizer directory.")
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _bare_sentencepiece_file(path: str) -> str | None:
    if os.path.isfile(path) and path.endswith(".model"):
        return path
    hf_files = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
    if (os.path.isfile(os.path.join(path, SPM_FILE))
            and not any(os.path.exists(os.path.join(path, f)) for f in hf_files)):
        return os.path.join(path, SPM_FILE)
    return None


# ModelProto.SentencePiece.Type and TrainerSpec.ModelType values.
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _BYTE = 1, 2, 3, 4, 6
_UNIGRAM, _BPE = 1, 2


def _from_sentencepiece(model_file: str):
    """An HF fast tokenizer that tokenises as the SentencePiece model does.

    Built from the model's own settings (its pieces and scores, normaliser, whitespace
    escaping, dummy prefix, byte fallback, user-defined pieces), so a unigram model stays
    unigram and a BPE one (Llama-2, Gemma) BPE; tested against `SentencePieceProcessor` on
    random texts. BOS/EOS/UNK/PAD are the model's control pieces."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    proto = sentencepiece_model_pb2.ModelProto()
    with open(model_file, "rb") as f:
        proto.ParseFromString(f.read())
    trainer, norm = proto.trainer_spec, proto.normalizer_spec
    pieces = list(proto.pieces)
    byte_fallback = bool(trainer.byte_fallback)
    if trainer.model_type == _UNIGRAM:
        core = Tokenizer(models.Unigram([(p.piece, p.score) for p in pieces],
                                        unk_id=trainer.unk_id, byte_fallback=byte_fallback))
    elif trainer.model_type == _BPE:
        vocab = {p.piece: i for i, p in enumerate(pieces)}
        # Merges ranked as SentencePiece applies them: the merged piece's score, best first.
        normal = {p.piece: (p.score, i) for i, p in enumerate(pieces) if p.type == _NORMAL}
        ranked = sorted((-score, i, piece[:cut], piece[cut:])
                        for piece, (score, i) in normal.items() for cut in range(1, len(piece))
                        if piece[:cut] in normal and piece[cut:] in normal)
        core = Tokenizer(models.BPE(vocab=vocab, merges=[(a, b) for _, _, a, b in ranked],
                                    unk_token=pieces[trainer.unk_id].piece, fuse_unk=True,
                                    byte_fallback=byte_fallback))
    else:
        raise ValueError(f"{model_file}: SentencePiece model type {trainer.model_type} is not "
                         "supported (unigram and BPE are; Llama-2, Gemma and sidjax's own are "
                         "one of them).")
    steps = []
    if norm.precompiled_charsmap:
        steps.append(normalizers.Precompiled(norm.precompiled_charsmap))
    if norm.remove_extra_whitespaces:  # Spaces only; SentencePiece leaves newlines alone.
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""),
                  normalizers.Replace(Regex(" {2,}"), " ")]
    if norm.escape_whitespaces:
        steps.append(normalizers.Replace(" ", SPM_SPACE))
    if norm.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPM_SPACE))
    core.normalizer = normalizers.Sequence(steps)
    user_defined = [p.piece for p in pieces if p.type == _USER_DEFINED]
    if user_defined:  # Always emitted whole, never merged with their neighbours.
        pattern = "|".join(re.escape(u) for u in sorted(user_defined, key=len, reverse=True))
        core.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    steps = [decoders.Replace(SPM_SPACE, " ")]
    if byte_fallback:
        steps.append(decoders.ByteFallback())
    steps.append(decoders.Fuse())
    if norm.add_dummy_prefix:
        steps.append(decoders.Strip(content=" ", left=1))
    core.decoder = decoders.Sequence(steps)
    piece = lambda i: pieces[i].piece if 0 <= i < len(pieces) else None
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=piece(trainer.bos_id), eos_token=piece(trainer.eos_id),
        unk_token=piece(trainer.unk_id), pad_token=piece(trainer.pad_id), padding_side="left")


def train_tokenizer(texts: Iterable[str], vocab_size: int, path: str | None = None,
                    kind: str = "bpe"):
    """Trains a tokenizer on `texts`; returns an HF fast tokenizer (saved to `path`).

    Its special tokens follow Qwen3 (`<|endoftext|>` pad, `<|im_start|>`,
    `<|im_end|>` eos) and `<think>`/`</think>` are single tokens, so the
    method's prompts tokenise the same way they do with a real Qwen3 tokenizer.
    """
    if kind == "bpe":
        tokenizer = _train_bpe(texts, vocab_size)
    elif kind == "sentencepiece":
        tokenizer = _train_sentencepiece(texts, vocab_size, path)
    else:
        raise ValueError(f"config.model.tokenizer_kind='{kind}' is not a tokenizer kind; "
                         f"use one of {TOKENIZER_KINDS}.")
    tokenizer.chat_template = chat.qwen3_template()
    if path:
        tokenizer.save_pretrained(path)
    return tokenizer


def _train_bpe(texts: Iterable[str], vocab_size: int):
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
    return tokenizer


# Byte-fallback pieces, meta pieces and a margin for the characters of the texts.
SPM_MIN_VOCAB = 256 + 8


def _train_sentencepiece(texts: Iterable[str], vocab_size: int, path: str | None):
    """A unigram SentencePiece model that keeps text exactly: no normalisation, no collapsed
    or added whitespace, byte fallback for characters it never saw (another category's
    titles), digits split, the chat and think tokens as single user-defined pieces."""
    import sentencepiece

    if vocab_size < SPM_MIN_VOCAB:
        raise ValueError(
            f"config.model.tokenizer_vocab={vocab_size} is too small for a SentencePiece "
            f"model (256 byte-fallback pieces + specials + characters); use at least "
            f"{SPM_MIN_VOCAB}, e.g. --config.model.tokenizer_vocab=1024.")
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts)), model_writer=proto, vocab_size=vocab_size,
        model_type="unigram", hard_vocab_limit=False, byte_fallback=True,
        character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=False, split_digits=True,
        allow_whitespace_only_pieces=True, max_sentence_length=1 << 16,
        user_defined_symbols=[chat.IM_START, chat.IM_END, chat.THINK_OPEN, chat.THINK_CLOSE],
        pad_id=0, pad_piece=chat.ENDOFTEXT, unk_id=1, bos_id=-1, eos_id=-1, minloglevel=2)
    with tempfile.TemporaryDirectory() as tmp:
        model_file = os.path.join(path or tmp, SPM_FILE)
        os.makedirs(os.path.dirname(model_file), exist_ok=True)
        with open(model_file, "wb") as f:
            f.write(proto.getvalue())
        tokenizer = _from_sentencepiece(model_file)
        # A fast tokenizer holds its own copy of the model; the temporary file may go.
    tokenizer.eos_token = chat.IM_END
    tokenizer.pad_token = chat.ENDOFTEXT
    # Special, as in the BPE tokenizer: dropped by decode(skip_special_tokens=True).
    tokenizer.add_special_tokens({"additional_special_tokens": [chat.IM_START]})
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
    params = place_params(config, params, model.mesh)
    return tokenizer, Model(config=config, params=params, mesh=model.mesh), ids.tolist()
