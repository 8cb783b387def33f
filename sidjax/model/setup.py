"""The LLM a training stage starts from: a local HF checkpoint, or a from-scratch CPU model.

Either way the result has the catalog's SID tokens in its vocabulary (added with
`add_sid_tokens`, which skips tokens a checkpoint already has, e.g. a stage-1 export).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Iterable, Mapping, Sequence

import jax
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from sidjax.model import sid_init
from sidjax.model.config import get_preset
from sidjax.model.model import Model, init_params, place_params
from sidjax.model.tokenizer import add_sid_tokens, load_tokenizer, train_tokenizer
from sidjax.train import distributed


def default_model_config() -> ConfigDict:
    return ConfigDict({
        # A local HF model directory (config.json + *.safetensors + tokenizer files), e.g.
        # Qwen3-1.7B. Empty: a from-scratch `preset` model with a tokenizer trained on the
        # stage's texts.
        "hf_path": "",
        "preset": "tiny",
        # From-scratch size overrides of the preset (0 = the preset's value).
        "num_layers": 0, "hidden_size": 0, "intermediate_size": 0,
        "tokenizer_vocab": 1024,
        # From-scratch tokenizer: 'bpe' (byte-level BPE) or 'sentencepiece' (unigram with byte
        # fallback; needs tokenizer_vocab >= 264). Ignored when hf_path is set.
        "tokenizer_kind": "bpe",
        "dtype": "float32",  # Param and compute dtype ('bfloat16' on accelerators).
        "remat": "none",
        # New SID rows = mean + scale * std * N(0, 1) of the existing rows. 0 = auto: 0.1 for
        # a checkpoint (HF mean-resizing), 1.0 from scratch, where the existing rows are
        # random too and 0.1 would start every SID row nearly identical (measured: valid
        # HR@10 0.36 -> 0.46 after 1,500 stage-1 steps on the synthetic default).
        "sid_noise_scale": 0.0,
        # Where new SID rows start: 'noise' (above) or 'items' (each token from the residual
        # mean of its items' text embeddings, as a codebook would; sidjax/model/sid_init.py).
        "sid_init": "noise",
        # Prompts: 'method' (the paper's strings), 'compact' (short tagged prompts, one for
        # training and evaluation; sidjax/tasks/prompts.py), 'auto' = method for an hf_path
        # checkpoint, compact for a from-scratch model.
        "prompt_style": "auto",
        # Training dropout (embeddings, attention and MLP outputs; ModelConfig.dropout), for
        # from-scratch models, which overfit the train rows without it. 0 = off.
        "dropout": 0.0,
        # Layers unrolled in the layer scan while training (stages 1 and 2): 0 = auto, all of
        # them on a CPU (bench/sft_step.py: the CPU recipe's SFT step 0.354 -> 0.290 s), 1 (a
        # rolled scan, fastest to compile) on accelerators. GRPO has its own grpo.scan_unroll.
        "scan_unroll": 0,
    })


def resolve_scan_unroll(value: int, num_layers: int) -> int:
    """A `scan_unroll` config value (0 = auto) for this backend: all layers on a CPU, where
    XLA fusing across layers pays (bench/sft_step.py, bench/grpo_step.py), 1 elsewhere."""
    if int(value) < 0:
        raise ValueError(f"scan_unroll={value}; use 0 (auto) or a positive layer count.")
    if int(value) > 0:
        return min(int(value), num_layers)
    return num_layers if jax.default_backend() == "cpu" else 1


def _shared_tokenizer(corpus: Iterable[str], vocab_size: int, path: str | None,
                      kind: str = "bpe"):
    """A tokenizer trained on `corpus`; in a multi-process run process 0 trains it and every
    process loads process 0's files, so all hold the same vocabulary."""
    if jax.process_count() == 1:
        return train_tokenizer(corpus, vocab_size, path, kind)
    files = None
    if distributed.is_main():
        with tempfile.TemporaryDirectory() as tmp:
            train_tokenizer(corpus, vocab_size, tmp, kind)
            files = {name: open(os.path.join(tmp, name), "rb").read() for name in os.listdir(tmp)}
    files = distributed.broadcast(files)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        tokenizer = load_tokenizer(tmp)
    if path and distributed.is_main():
        tokenizer.save_pretrained(path)
    return tokenizer


def sid_noise_scale(cfg: ConfigDict) -> float:
    if float(cfg.sid_noise_scale) > 0:
        return float(cfg.sid_noise_scale)
    return 0.1 if cfg.hf_path else 1.0


def _rows_from_vectors(model: Model, tokenizer, added: Sequence[int],
                       vectors: Mapping[str, np.ndarray], seed: int) -> Model:
    """The added SID tokens' embedding rows from `vectors`, projected to the model width and
    scaled to the added rows' mean norm (the size the noise init gave them)."""
    names = [t for t in tokenizer.convert_ids_to_tokens(list(added)) if t in vectors]
    if not names:
        return model
    params = dict(model.params)
    embedding = np.asarray(jax.device_get(params["embed"]["embedding"]))  # [V, D]
    norm = float(np.linalg.norm(embedding[list(added)], axis=1).mean())
    rows = sid_init.projected_rows({t: vectors[t] for t in names}, embedding.shape[1], norm,
                                   seed)
    ids = dict(zip(names, tokenizer.convert_tokens_to_ids(names)))
    params["embed"] = {"embedding": sid_init.set_rows(embedding, ids, rows)}
    params = place_params(model.config, params, model.mesh)
    logging.info("%d SID rows start from their items' text embeddings (model.sid_init).",
                 len(rows))
    return dataclasses.replace(model, params=params)


def build_llm(cfg: ConfigDict, sid_tokens: Sequence[str], corpus: Iterable[str], seed: int = 0,
              mesh=None, tokenizer_dir: str | None = None,
              sid_vectors: Mapping[str, np.ndarray] | None = None) -> tuple[Model, object]:
    """-> (Model with SID rows, tokenizer with SID tokens). `sid_vectors` ({SID token:
    vector}, any width; `sid_init.residual_token_vectors`) replace the new SID rows' noise
    when given."""
    if cfg.hf_path:
        from sidjax.model.hf import load_hf_model

        if not os.path.isdir(cfg.hf_path):
            raise FileNotFoundError(f"config.model.hf_path='{cfg.hf_path}' is not a directory; "
                                    "point it at a local HF checkpoint (config.json, "
                                    "*.safetensors and tokenizer files).")
        model = load_hf_model(cfg.hf_path, dtype=cfg.dtype, mesh=mesh, remat=cfg.remat)
        model = dataclasses.replace(model, config=model.config.replace(
            dropout=float(cfg.dropout)))
        tokenizer = load_tokenizer(cfg.hf_path)
        logging.info("Loaded %s (%d params).", cfg.hf_path, model.config.num_params())
    else:
        tokenizer = _shared_tokenizer(corpus, int(cfg.tokenizer_vocab), tokenizer_dir,
                                      cfg.get("tokenizer_kind", "bpe"))
        vocab = -(-len(tokenizer) // 64) * 64
        sizes = {k: int(cfg[k]) for k in ("num_layers", "hidden_size", "intermediate_size")
                 if int(cfg[k])}
        config = get_preset(cfg.preset, vocab_size=vocab, param_dtype=cfg.dtype, dtype=cfg.dtype,
                            remat=cfg.remat, eos_token_id=tokenizer.eos_token_id,
                            dropout=float(cfg.dropout), **sizes)
        params = jax.jit(init_params, static_argnums=0)(config, jax.random.PRNGKey(seed))
        model = Model(config=config, params=params, mesh=None)
        logging.info("From-scratch '%s' model: %d params, tokenizer of %d tokens.", cfg.preset,
                     config.num_params(), len(tokenizer))
    tokenizer, model, added = add_sid_tokens(tokenizer, model, list(sid_tokens), seed=seed,
                                             noise_scale=sid_noise_scale(cfg))
    logging.info("Added %d SID tokens; vocabulary rows %d.", len(added), model.config.vocab_size)
    if sid_vectors:
        model = _rows_from_vectors(model, tokenizer, added, sid_vectors, seed)
    unroll = resolve_scan_unroll(cfg.get("scan_unroll", 0), model.config.num_layers)
    model = dataclasses.replace(model, config=model.config.replace(scan_unroll=unroll))
    return model, tokenizer
