"""Teacher corpora: template back end, file formats, and the chat-completions client against a
local stub server (concurrency, retries, malformed replies, resume without duplicates)."""

import http.server
import json
import os
import re
import threading
import time

from absl.testing import absltest
from ml_collections import ConfigDict

from sidjax.data import corpora, teacher
from sidjax.data.synthetic import SyntheticConfig, generate
from sidjax.tasks import examples as tasks


def _dataset_with_sids(users=40):
    dataset, _ = generate(SyntheticConfig(num_users=users))
    n = len(dataset.catalog)
    dataset.catalog = dataset.catalog.with_sids(
        [(f"<a_{i % 4}>", f"<b_{i % 7}>", f"<c_{i}>") for i in range(n)])
    return dataset


class StubServer:
    """Speaks /v1/chat/completions; fails on demand; records every request."""

    def __init__(self, fail_first=(), malformed_first=0, delay=0.0):
        self.requests, self.lock = [], threading.Lock()
        self.fail_first, self.malformed_left, self.delay = list(fail_first), malformed_first, delay
        self.active = self.max_active = 0
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append(body)
                    stub.active += 1
                    stub.max_active = max(stub.max_active, stub.active)
                    fail = stub.fail_first.pop(0) if stub.fail_first else None
                    malformed = fail is None and stub.malformed_left > 0
                    stub.malformed_left -= int(malformed)
                time.sleep(stub.delay)
                with stub.lock:
                    stub.active -= 1
                if fail:
                    self.send_response(fail)
                    self.end_headers()
                    return
                user = body["messages"][-1]["content"]
                if malformed:
                    reply = {"choices": []}
                elif "JSON object" in user:
                    content = json.dumps({"integrated_narrative": "story " + user[:20],
                                          "reasoning_path": "because " + user[-30:]})
                    reply = {"choices": [{"message": {"content": content}}]}
                else:
                    reply = {"choices": [{"message": {"content": "<think>x</think>item " +
                                                      user[:30]}}]}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _openai_cfg(url, **kw):
    cfg = teacher.default_teacher_config()
    cfg.update(backend="openai", base_url=url, model="stub", max_narratives=12, backoff_s=0.01,
               concurrency=4, **kw)
    return cfg


class TemplateTeacherTest(absltest.TestCase):

    def test_writes_the_method_formats_grounded_in_metadata(self):
        dataset = _dataset_with_sids()
        out = self.create_tempdir().full_path
        cfg = teacher.default_teacher_config()
        cfg.max_narratives = 30
        paths = teacher.synthesize_corpora(dataset, out, cfg)
        self.assertEqual(os.path.basename(paths["item_enriched"]),
                         "Synthetic_Store.item_enhanced_v2.json")
        texts = corpora.read_item_enhanced(paths["item_enriched"])
        self.assertLen(texts, len(dataset.catalog))
        item = dataset.catalog[5]
        self.assertIn(item.sid_string, texts[5])
        self.assertIn(item.title, texts[5])
        self.assertIn(item.brand, texts[5])
        rows = corpora.read_narratives(paths["narrative"])
        self.assertLen(rows, 30)
        row = rows[0]
        self.assertIsInstance(row["history_item_sid"], list)
        # The template's reasoning states what the history shows, never the next item.
        last = dataset.catalog.ids_for_sid(row["history_item_sid"][-1])[0]
        self.assertTrue(row["reasoning_path"].endswith(
            "Recent items: " + "".join(row["history_item_sid"][-3:]) + "."), row["reasoning_path"])
        self.assertIn(dataset.catalog[last].brand, row["reasoning_path"])
        named = re.findall(r"<a_\d+><b_\d+><c_\d+>", row["reasoning_path"])
        self.assertEqual(named, row["history_item_sid"][-3:])
        for sid in row["history_item_sid"]:
            self.assertIn(sid, row["integrated_narrative"])
        examples = tasks.reasoning_activation(rows)
        self.assertLen(examples, 30)

    def test_general_chats_round_trip(self):
        path = os.path.join(self.create_tempdir().full_path, "general.jsonl")
        chats = teacher.template_general_chats(5)
        corpora.write_general_chats(path, chats)
        self.assertEqual(corpora.read_general_chats(path), chats)
        self.assertLen(corpora.read_general_chats(path, limit=2), 2)


class OpenAITeacherTest(absltest.TestCase):

    def test_concurrency_retries_and_formats(self):
        stub = StubServer(fail_first=[429, 500], malformed_first=1, delay=0.05)
        self.addCleanup(stub.close)
        dataset = _dataset_with_sids()
        out = self.create_tempdir().full_path
        paths = teacher.synthesize_corpora(dataset, out, _openai_cfg(stub.url))
        distinct = len({teacher.request_key(r) for r in stub.requests})
        self.assertGreater(distinct, len(dataset.catalog))  # Items, then distinct narratives.
        # Two HTTP errors and one malformed reply were retried; nothing else repeated.
        self.assertEqual(len(stub.requests), distinct + 3)
        self.assertGreater(stub.max_active, 1)
        self.assertLessEqual(stub.max_active, 4)
        texts = corpora.read_item_enhanced(paths["item_enriched"])
        self.assertTrue(all(t.startswith("item ") for t in texts.values()))  # </think> stripped.
        rows = corpora.read_narratives(paths["narrative"])
        self.assertTrue(all(r["reasoning_path"].startswith("because") for r in rows))

    def test_resume_after_a_kill_requests_nothing_twice(self):
        stub = StubServer()
        self.addCleanup(stub.close)
        dataset = _dataset_with_sids()
        out = self.create_tempdir().full_path
        cfg = _openai_cfg(stub.url)
        cache_path = os.path.join(out, "teacher_cache_v1.jsonl")
        teacher.synthesize_corpora(dataset, out, cfg)
        total = len(stub.requests)
        with open(cache_path) as f:
            lines = f.readlines()
        keep = lines[:10]
        keep.append(lines[10][:15])  # A record cut mid-write by the kill.
        with open(cache_path, "w") as f:
            f.writelines(keep)
        stub.requests.clear()
        teacher.synthesize_corpora(dataset, out, cfg)
        self.assertEqual(len(stub.requests), total - 10)
        keys = [teacher.request_key(r) for r in stub.requests]
        self.assertLen(set(keys), len(keys))
        teacher.synthesize_corpora(dataset, out, cfg)
        self.assertEqual(len(stub.requests), total - 10)  # Everything cached now.

    def test_failing_server_trips_the_circuit_breaker_keeping_finished_records(self):
        stub = StubServer(fail_first=[None] * 6 + [500] * 10000)  # Six answers, then 500s.
        self.addCleanup(stub.close)
        dataset = _dataset_with_sids()
        out = self.create_tempdir().full_path
        cfg = _openai_cfg(stub.url, max_consecutive_failures=5, max_retries=5)
        start = time.time()
        with self.assertLogs(level="WARNING") as logs:
            with self.assertRaisesRegex(teacher.TeacherUnavailable,
                                        "5 failed attempts in a row .*rerun to continue"):
                teacher.synthesize_corpora(dataset, out, cfg)
        self.assertLess(time.time() - start, 30)
        # The breaker, not every queued request's retries: at most a few attempts per worker.
        self.assertLess(len(stub.requests), 6 + 5 + 4 * 2)
        self.assertIn("attempt 1 failed", "".join(logs.output))
        with open(os.path.join(out, "teacher_cache_v1.jsonl")) as f:
            self.assertLen(f.readlines(), 6)  # The finished records are kept.

    def test_hanging_server_gives_up_at_the_deadline(self):
        stub = StubServer(delay=5.0)
        self.addCleanup(stub.close)
        client = teacher.ChatClient(stub.url, "stub", timeout_s=60.0, max_retries=5,
                                    backoff_s=0.01, deadline_s=1.0)
        start = time.time()
        with self.assertRaisesRegex(teacher.TeacherUnavailable, "1s deadline"):
            client.complete(client.payload([{"role": "user", "content": "hi"}], 0.0, 8))
        self.assertLess(time.time() - start, 4.0)

    def test_gives_up_with_a_clear_error_and_rejects_bad_config(self):
        stub = StubServer(fail_first=[503] * 10)
        self.addCleanup(stub.close)
        client = teacher.ChatClient(stub.url, "stub", max_retries=2, backoff_s=0.01)
        with self.assertRaisesRegex(RuntimeError, "gave up after 3 attempts"):
            client.complete(client.payload([{"role": "user", "content": "hi"}], 0.0, 8))
        with self.assertRaisesRegex(ValueError, "base_url"):
            teacher.ChatClient("", "m")
        with self.assertRaises(teacher.MalformedReply):
            teacher.parse_narrative_reply('{"integrated_narrative": "x"}')
        cfg = ConfigDict(teacher.default_teacher_config().to_dict())
        cfg.backend = "gpt"
        with self.assertRaisesRegex(ValueError, "backend='gpt'"):
            teacher.synthesize_corpora(_dataset_with_sids(), self.create_tempdir().full_path, cfg)


if __name__ == "__main__":
    absltest.main()
