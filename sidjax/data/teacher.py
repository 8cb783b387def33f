"""The teacher corpus synthesiser: item-level enriched texts and sequence-level narratives.

It writes the method's two corpora (`<Cat>.item_enhanced_v2.json`,
`<Cat>.integrated_narrative.csv`, see `sidjax.data.corpora`) from a dataset with SIDs.
Two back ends:

- `template` (default, offline, used in tests and the CPU pipeline): grounded texts
  composed from item metadata (title, brand, category path, description sentences)
  and from what links a history to its next item (shared brand, category, type);
- `openai`: any OpenAI-compatible chat-completions endpoint (`base_url`, `model`, key
  from the environment variable `api_key_env`), with a concurrency limit, retries with
  exponential backoff on 429/5xx and malformed replies, and a resumable append-only
  cache (JSON Lines keyed by a hash of the request), so a crash loses no finished record
  and nothing is requested twice. Prompts come from a versioned template file.

The teacher sees the true next item (as the method's teacher did), and the narratives
explain why it fits. The template's reasoning paths, though, state only what the history
shows (the areas the user shops in, the latest item's kind and brand and what it pairs
with, the latest SID): at evaluation the model writes its reasoning greedily before the SID
beam, and a path that names the next item's kind commits all ten beams to one guess (with the
target-aware paths of the first wave, stage 2 lowered HR@10 below stage 1). Facts a model
can read off the history are what it can reproduce, and they carry the signal the next
item depends on. Corpora are training data only, never used at evaluation.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from typing import Callable, Mapping, Sequence

from absl import logging
from ml_collections import ConfigDict

from sidjax.data import corpora
from sidjax.data.types import Catalog, Dataset, Item, Sample, clean_description

PROMPTS_PATH = os.path.join(os.path.dirname(__file__), "templates", "teacher_prompts_v1.json")
BACKENDS = ("template", "openai")


def default_teacher_config() -> ConfigDict:
    return ConfigDict({
        "backend": "template",
        "max_narratives": 4000,  # Training samples that get a narrative (0 = all).
        "seed": 0,
        "prompts": PROMPTS_PATH,
        "base_url": "", "model": "", "api_key_env": "OPENAI_API_KEY",
        "concurrency": 8, "max_retries": 5, "backoff_s": 1.0, "timeout_s": 120.0,
        # Give up on the server after this many failed attempts in a row, across all
        # requests (a circuit breaker), or after this many seconds in all; finished records
        # stay in the cache, so a rerun continues where this one stopped.
        "max_consecutive_failures": 20, "deadline_s": 3600.0,
        "temperature": 0.7, "max_tokens": 1024,
    })


# ------------------------------------------------------------ item facts
def _kind(item: Item) -> str:
    path = [p.strip() for p in item.categories.split(">") if p.strip()]
    return path[-1] if path else "item"


def _area(item: Item) -> str:
    path = [p.strip() for p in item.categories.split(">") if p.strip()]
    return path[-2] if len(path) >= 2 else (path[0] if path else "")


def _a(noun: str) -> str:
    """'a' or 'an' + the lower-cased noun."""
    noun = noun.lower()
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _sentences(text: str, n: int) -> str:
    parts = re.split(r"(?<=[.!?])\s+", clean_description(text))
    return " ".join(p for p in parts[:n] if p)


def template_item_text(item: Item) -> str:
    """An SID-interleaved description grounded in the item's own metadata."""
    sid, kind, area = item.sid_string, _kind(item), _area(item)
    text = f"{sid} is \"{item.title}\""
    if item.brand:
        text += f", made by {item.brand}"
    text += f". It is {_a(kind)}" + (f" in the {area.lower()} range" if area else "") + "."
    details = _sentences(item.description, 3)
    if details:
        text += f" {details}"
    text += (f" Items whose SIDs start with {''.join(item.sid[:1])} are related to {sid}; "
             f"those sharing {''.join(item.sid[:2])} are its closest neighbours.")
    return text


def _link(prev: Item, nxt: Item) -> str:
    """Why `nxt` plausibly follows `prev`, from their shared metadata."""
    reasons = []
    if prev.brand and prev.brand == nxt.brand:
        reasons.append(f"stays with the brand {prev.brand}")
    if _kind(prev) == _kind(nxt):
        reasons.append(f"is another {_kind(nxt).lower()}, a re-order or an upgrade")
    elif _area(prev) and _area(prev) == _area(nxt):
        reasons.append(f"completes the {_area(nxt).lower()} setup")
    if _kind(nxt).lower() in prev.description.lower():
        reasons.append(f"is listed as a companion of the {_kind(prev).lower()}")
    return ", ".join(reasons) if reasons else "broadens what the user is building"


_COMPANIONS = re.compile(r"(?:pairs well with|compatible with|works with|for use with)[:\s]+"
                         r"([^.;]+)", re.IGNORECASE)


def _companions(item: Item) -> str:
    """What the item's description says it goes with ('' when it says nothing)."""
    match = _COMPANIONS.search(clean_description(item.description))
    return match.group(1).strip() if match else ""


def template_reasoning(history: Sequence[Item], recent: int = 1) -> str:
    """A reasoning path from the history alone (see the module docstring for why).

    It names the areas the user shops in, the latest item's kind and brand and what it
    pairs with, and ends by restating the last `recent` SIDs: the answer then follows the
    latest items as closely as in the stage-1 prompt, so stage 2 keeps what stage 1 learnt
    about the sequence (valid HR@10 after 400 stage-2 steps: 0.40 ending on the facts, 0.455
    ending on the SIDs; README)."""
    last = history[-1]
    areas = sorted({_area(it).lower() for it in history if _area(it)})
    parts = [f"Recent interest: {', '.join(areas)}." if areas else ""]
    latest = f"Latest: {_a(_kind(last))}" + (f" by {last.brand}" if last.brand else "")
    companions = _companions(last)
    parts.append(latest + (f", which pairs with {companions.lower()}." if companions else "."))
    parts.append("Recent items: " + "".join(it.sid_string for it in history[-recent:]) + ".")
    return " ".join(p for p in parts if p)


def template_narrative(catalog: Catalog, sample: Sample) -> dict:
    """A narrative and a reasoning path for one (history, next item) sample."""
    history = [catalog[i] for i in sample.history]
    target = catalog[sample.target]
    steps = [f"{it.sid_string} (\"{it.title}\", {_a(_kind(it))})" for it in history]
    narrative = ("The user's journey: " + "; then ".join(steps) +
                 f". Next they chose {target.sid_string}, \"{target.title}\", which "
                 f"{_link(history[-1], target)}.")
    return {"integrated_narrative": narrative, "reasoning_path": template_reasoning(history)}


def template_general_chats(n: int, seed: int = 0) -> list[list[dict]]:
    """Small arithmetic word problems answered in the thinking format (offline stand-in for
    the method's 60k general reasoning chats)."""
    rng = random.Random(seed)
    chats = []
    for _ in range(n):
        a, b, price = rng.randint(2, 9), rng.randint(2, 9), rng.randint(3, 20)
        total = (a + b) * price
        question = (f"A lab orders {a} boxes of gloves on Monday and {b} boxes on Tuesday. Each "
                    f"box costs {price} dollars. How much did the lab spend?")
        reasoning = (f"Boxes in total: {a} + {b} = {a + b}. Cost: {a + b} x {price} = {total}.")
        chats.append([{"role": "user", "content": question},
                      {"role": "assistant",
                       "content": f"<think>\n{reasoning}\n</think>\n\nThe lab spent {total} "
                                  "dollars."}])
    return chats


# ------------------------------------------------------------ remote teacher
class MalformedReply(ValueError):
    """The endpoint answered, but not with a usable chat completion."""


class ResumableCache:
    """Append-only JSON Lines: {"key", "value"} per finished request; safe across crashes."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self.values: dict[str, object] = {}
        if os.path.exists(path):
            damaged = False
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        damaged = True  # A line cut by a crash: that request runs again.
                        continue
                    self.values[record["key"]] = record["value"]
            if damaged:  # Rewrite without the cut line, so appends start on a fresh line.
                tmp = path + ".tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    for key, value in self.values.items():
                        f.write(json.dumps({"key": key, "value": value}, ensure_ascii=False)
                                + "\n")
                os.replace(tmp, path)

    def put(self, key: str, value) -> None:
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.values[key] = value


def request_key(payload: Mapping) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class TeacherUnavailable(RuntimeError):
    """The teacher server keeps failing (circuit breaker) or the deadline passed."""


class ChatClient:
    """Minimal OpenAI-compatible chat-completions client (stdlib only).

    Every failed attempt is logged as it happens. Failures in a row are counted across all
    requests (any success resets the count): at `max_consecutive_failures` the client stops
    every request at once, and at `deadline_s` after its creation it stops too, so a server
    that answers 500 or hangs costs minutes, not hours of retries per queued request.
    """

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout_s: float = 120.0,
                 max_retries: int = 5, backoff_s: float = 1.0,
                 max_consecutive_failures: int = 20, deadline_s: float = 3600.0):
        if not base_url or not model:
            raise ValueError("The openai teacher needs config.teacher.base_url and "
                             "config.teacher.model (e.g. http://localhost:8000/v1 and a model "
                             "name the endpoint serves).")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout_s = model, api_key, timeout_s
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self.max_consecutive_failures, self.deadline_s = max_consecutive_failures, deadline_s
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.consecutive_failures = 0
        self.broken: str | None = None  # Why the client stopped, once it has.

    def payload(self, messages: list[dict], temperature: float, max_tokens: int) -> dict:
        return {"model": self.model, "messages": messages, "temperature": temperature,
                "max_tokens": max_tokens}

    def _post(self, payload: dict) -> str:
        request = urllib.request.Request(
            self.url, data=json.dumps(payload).encode(), method="POST",
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})})
        timeout = max(0.01, min(self.timeout_s, self._time_left()))
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        try:
            content = json.loads(body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise MalformedReply(f"no choices[0].message.content in reply: {body[:200]!r}") from e
        if not isinstance(content, str) or not content.strip():
            raise MalformedReply(f"empty or non-text content: {body[:200]!r}")
        return content

    def _time_left(self) -> float:
        return self.deadline_s - (time.monotonic() - self.started)

    def _check_open(self) -> None:
        with self._lock:
            if self.broken is None and self._time_left() <= 0:
                self.broken = (f"the {self.deadline_s:.0f}s deadline "
                               "(config.teacher.deadline_s) passed")
            if self.broken:
                raise TeacherUnavailable(f"{self.url}: stopped, {self.broken}. Finished "
                                         "records are cached; rerun to continue.")

    def _failed(self, error: Exception, attempt: int) -> None:
        with self._lock:
            self.consecutive_failures += 1
            logging.warning("Teacher %s: attempt %d failed (%s); %d failures in a row.",
                            self.url, attempt + 1, error, self.consecutive_failures)
            if (self.broken is None
                    and self.consecutive_failures >= self.max_consecutive_failures):
                self.broken = (f"{self.consecutive_failures} failed attempts in a row "
                               f"(config.teacher.max_consecutive_failures), last: {error}")

    def complete(self, payload: dict, parse: Callable[[str], object] = lambda s: s):
        """POSTs with retries on 429/5xx, network errors and replies `parse` rejects."""
        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            self._check_open()
            try:
                result = parse(self._post(payload))
                with self._lock:
                    self.consecutive_failures = 0
                return result
            except urllib.error.HTTPError as e:
                if e.code != 429 and e.code < 500:
                    raise RuntimeError(f"{self.url} refused the request: HTTP {e.code} "
                                       f"{e.read()[:200]!r}") from e
                last_error = e
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError,
                    MalformedReply) as e:
                last_error = e
            self._failed(last_error, attempt)
            self._check_open()
            time.sleep(max(0.0, min(self.backoff_s * 2 ** attempt, self._time_left())))
        raise RuntimeError(f"{self.url}: gave up after {self.max_retries + 1} attempts; last "
                           f"error: {last_error}")


def run_cached(client: ChatClient, cache: ResumableCache, payloads: Sequence[dict],
               parse: Callable[[str], object], concurrency: int) -> list:
    """Results for every payload: cached ones reused, the rest requested concurrently."""
    keys = [request_key(p) for p in payloads]
    todo = {k: p for k, p in zip(keys, payloads) if k not in cache.values}

    def work(item):
        key, payload = item
        cache.put(key, client.complete(payload, parse))

    with concurrent.futures.ThreadPoolExecutor(max(1, concurrency)) as pool:
        for future in concurrent.futures.as_completed(
                [pool.submit(work, item) for item in todo.items()]):
            future.result()
    return [cache.values[k] for k in keys]


def parse_narrative_reply(text: str) -> dict:
    """The narrative reply must be a JSON object with the two text fields."""
    match = re.search(r"\{.*\}", text.split("</think>")[-1], re.DOTALL)
    try:
        record = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or not all(
            isinstance(record.get(k), str) and record[k].strip()
            for k in ("integrated_narrative", "reasoning_path")):
        raise MalformedReply(f"expected a JSON object with integrated_narrative and "
                             f"reasoning_path; got {text[:200]!r}")
    return {k: record[k] for k in ("integrated_narrative", "reasoning_path")}


def _remote_corpora(dataset: Dataset, samples: Sequence[Sample], cfg: ConfigDict, out_dir: str):
    with open(cfg.prompts, encoding="utf-8") as f:
        templates = json.load(f)
    client = ChatClient(cfg.base_url, cfg.model, os.environ.get(cfg.api_key_env, ""),
                        cfg.timeout_s, cfg.max_retries, cfg.backoff_s,
                        cfg.max_consecutive_failures, cfg.deadline_s)
    cache = ResumableCache(os.path.join(out_dir, f"teacher_cache_v{templates['version']}.jsonl"))
    catalog = dataset.catalog

    def payload(kind, **fields):
        t = templates[kind]
        return client.payload([{"role": "system", "content": t["system"]},
                               {"role": "user", "content": t["user"].format(**fields)}],
                              cfg.temperature, cfg.max_tokens)

    items = [payload("item", sid=it.sid_string, title=it.title, brand=it.brand or "unknown",
                     categories=it.categories or "unknown",
                     description=_sentences(it.description, 6) or "none")
             for it in catalog.items]
    texts = run_cached(client, cache, items, lambda s: s.split("</think>")[-1].strip(),
                       cfg.concurrency)
    narrative_payloads = [payload("narrative", history="\n".join(
        f"{catalog[i].sid_string} \"{catalog[i].title}\"" for i in s.history),
        target_sid=catalog.sid_string(s.target), target_title=catalog.title(s.target))
        for s in samples]
    records = run_cached(client, cache, narrative_payloads, parse_narrative_reply,
                         cfg.concurrency)
    return dict(enumerate(texts)), records


def synthesize_corpora(dataset: Dataset, out_dir: str, cfg: ConfigDict) -> dict[str, str]:
    """Writes both corpora for `dataset` (with SIDs) into out_dir; returns their paths.

    Narratives cover a seeded random subset of the training samples (`max_narratives`).
    """
    if cfg.backend not in BACKENDS:
        raise ValueError(f"config.teacher.backend='{cfg.backend}' is not one of {BACKENDS}.")
    if not dataset.catalog.has_sids:
        raise ValueError("The teacher needs a catalog with SIDs; run the sid stage first.")
    os.makedirs(out_dir, exist_ok=True)
    samples = list(dataset.split("train"))
    if cfg.max_narratives and len(samples) > cfg.max_narratives:
        samples = random.Random(cfg.seed).sample(samples, int(cfg.max_narratives))
    catalog = dataset.catalog
    if cfg.backend == "template":
        texts = {it.id: template_item_text(it) for it in catalog.items}
        records = [template_narrative(catalog, s) for s in samples]
    else:
        texts, records = _remote_corpora(dataset, samples, cfg, out_dir)
    paths = {"item_enriched": corpora.item_enhanced_path(out_dir, dataset.name),
             "narrative": corpora.narrative_path(out_dir, dataset.name)}
    corpora.write_item_enhanced(paths["item_enriched"], texts)
    corpora.write_narratives(paths["narrative"], (
        {"user_id": s.user, "history_item_sid": [catalog.sid_string(i) for i in s.history],
         "item_sid": catalog.sid_string(s.target),
         "history_item_title": [catalog.title(i) for i in s.history],
         "item_title": catalog.title(s.target), **record}
        for s, record in zip(samples, records)))
    return paths
