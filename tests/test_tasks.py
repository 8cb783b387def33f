"""Stage-1/2 task builders: rendered text and loss masks, token by token, against the method."""

import numpy as np
from absl.testing import absltest

from sidjax.data.types import Catalog, Dataset, Item, Sample
from sidjax.model.tokenizer import add_sid_tokens, train_tokenizer
from sidjax.tasks import examples as tasks, prompts

SYS_PRE = ("Below is an instruction that describes a task, paired with an input that provides "
           "further context. Write a response that appropriately completes the request.")
SIDS = [("<a_1>", "<b_2>", "<c_3>"), ("<a_1>", "<b_2>", "<c_4>"), ("<a_10>", "<b_0>", "<c_3>")]
TITLES = ["Nitrile Gloves", "Safety Goggles", "Lab Tape"]


def _dataset():
    catalog = Catalog([Item(i, TITLES[i], sid=SIDS[i]) for i in range(3)])
    train = [Sample("u1", [0, 1], 2), Sample("u2", [2], 0)]
    return Dataset("Toy", catalog, {"train": train, "valid": train[:1], "test": train[:1]},
                   category_noun="industrial and scientific items")


def _tokenizer():
    corpus = [SYS_PRE, *TITLES, "The user has interacted with items in chronological order."] * 20
    tokenizer = train_tokenizer(corpus, 400)
    tokenizer.add_tokens(sorted({t for sid in SIDS for t in sid}))
    return tokenizer


def head(system: str, user: str) -> str:
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


class TaskTextTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.data = _dataset()
        self.cat = self.data.catalog

    def test_sid_next_exact_text(self):
        [e, _] = tasks.sid_next(self.cat, self.data.split("train"))
        user = ("The user has interacted with items <a_1><b_2><c_3>, <a_1><b_2><c_4> in "
                "chronological order. Can you predict the next possible item that the user may "
                "expect?")
        system = SYS_PRE + " Can you predict the next possible item that the user may expect?"
        self.assertEqual(e.prefix, head(system, user) + "<think>\n\n</think>\n\n")
        self.assertEqual(e.target, "<a_10><b_0><c_3>")
        self.assertEqual(e.suffix, "<|im_end|>\n")
        self.assertFalse(e.supervise_suffix)

    def test_item_feature_tasks_dedup_like_a_dict(self):
        cat = Catalog([Item(0, "Tape", sid=SIDS[0]), Item(1, "Tape", sid=SIDS[1]),
                       Item(2, "Glue", sid=SIDS[1])])
        t2s = tasks.title2sid(cat)
        s2t = tasks.sid2title(cat)
        self.assertEqual([e.target for e in t2s], ["<a_1><b_2><c_4>", "<a_1><b_2><c_4>"])
        self.assertIn("Which item has the title: Tape?<|im_end|>", t2s[0].prefix)
        self.assertEqual([e.target for e in s2t], ["Tape", "Glue"])
        self.assertIn('What is the title of item "<a_1><b_2><c_3>"?', s2t[0].prefix)
        self.assertIn(SYS_PRE + " \nAnswer the question about item identification.\n<|im_end|>",
                      s2t[0].prefix)

    def test_title_tasks(self):
        samples = self.data.split("train")
        [e, _] = tasks.title_history2title(self.cat, samples, "industrial and scientific items")
        self.assertIn('The user has palyed the following industrial and scientific itemss '
                      'before: "Nitrile Gloves",\t"Safety Goggles"<|im_end|>', e.prefix)
        self.assertEqual(e.target, '"Lab Tape"\n')
        self.assertTrue(any(i.format(category="industrial and scientific items") in e.prefix
                            for i in prompts.BIGREC_INSTRUCTIONS))
        [e, _] = tasks.title_history2sid(self.cat, samples, "industrial and scientific items")
        self.assertIn('following industrial and scientific items items in chronological order: '
                      '"Nitrile Gloves", "Safety Goggles". Can you predict', e.prefix)
        self.assertEqual(e.target, "<a_10><b_0><c_3>")
        [e, _] = tasks.sid_history2title(self.cat, samples)
        self.assertIn("items <a_1><b_2><c_3>, <a_1><b_2><c_4>. Can you recommend the next item "
                      "for him? Tell me the title of the item?", e.prefix)
        self.assertEqual(e.target, "Lab Tape")

    def test_reasoning_activation(self):
        [e] = tasks.reasoning_activation([
            {"history_item_sid": ["<a_1><b_2><c_3>"], "item_sid": "<a_1><b_2><c_4>",
             "reasoning_path": "  Gloves need goggles.  "},
            {"history_item_sid": ["<a_1><b_2><c_3>"], "item_sid": "<a_1><b_2><c_4>",
             "reasoning_path": "<think>unclosed"},
            {"history_item_sid": ["<a_1><b_2><c_3>"], "item_sid": "<a_1><b_2><c_4>",
             "reasoning_path": ""}])
        user = ("The user has sequentially interacted with items <a_1><b_2><c_3>. Can you "
                "recommend the next item for him? Let's think step by step before making "
                "recommendation. Directly output the item SID after thinking.")
        system = SYS_PRE + ("\nCan you recommend the next item for the user based on their "
                            "interaction history?\n")
        self.assertEqual(e.prefix, head(system, user))
        self.assertEqual(e.target, "<think>\nGloves need goggles.\n</think>\n\n<a_1><b_2><c_4>")
        self.assertEqual(e.suffix, "<|im_end|>\n")
        self.assertTrue(e.supervise_suffix)
        self.assertEqual(tasks.reasoning_rows_clean("<think>x</think> kept "), "kept")

    def test_raw_and_general(self):
        [e] = tasks.item_enriched(["<think>draft</think>\n <a_1><b_2><c_3> is gloves. "])
        self.assertEqual((e.prefix, e.target, e.suffix), ("", "<a_1><b_2><c_3> is gloves.", ""))
        [g] = tasks.general_reasoning([[
            {"role": "system", "content": [{"text": "sys as list"}]},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"}]])
        self.assertEqual(g.prefix, "<|im_start|>user\nsys as list<|im_end|>\n<|im_start|>user\n"
                                   "2+2?<|im_end|>\n<|im_start|>assistant\n")
        self.assertEqual(g.target, "<think>\nadd\n</think>\n\n4<|im_end|>")

    def test_sid_recent_windows(self):
        samples = [Sample("u1", [0, 1, 2], 1), Sample("u2", [2], 0)]
        got = tasks.sid_recent(self.cat, samples, style="compact")
        # Windows of 1 and 2 items, only where shorter than the history; u2 (one item) is
        # sid_next's already.
        want = [tasks.sid_next(self.cat, [Sample("u1", h, 1)], "compact")[0]
                for h in ([2], [1, 2])]
        self.assertEqual([(e.prefix, e.target) for e in got],
                         [(e.prefix, e.target) for e in want])
        self.assertEqual({e.task for e in got}, {"sid_recent"})
        self.assertIn("<a_10><b_0><c_3>", got[0].prefix)
        self.assertNotIn("<a_1><b_2><c_4>", got[0].prefix)
        self.assertIn("<a_1><b_2><c_4><a_10><b_0><c_3>", got[1].prefix)
        self.assertEqual(got[0].target, "<a_1><b_2><c_4>")


class EncodeMaskTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tok = _tokenizer()
        cls.data = _dataset()

    def supervised_text(self, example, max_len=4096):
        [ids], [mask] = tasks.encode(self.tok, [example], max_len)
        self.assertEqual(self.tok.decode(ids), example.text[-len(self.tok.decode(ids)):])
        return self.tok.decode(ids[mask]), ids, mask

    def test_stage1_mask_excludes_end_token(self):
        e = tasks.sid_next(self.data.catalog, self.data.split("train"))[0]
        text, ids, mask = self.supervised_text(e)
        self.assertEqual(text, "<a_10><b_0><c_3>")
        self.assertEqual(mask.sum(), 3)  # One token per SID level, nothing else.
        self.assertEqual(self.tok.decode(ids[~mask][-2:]), "<|im_end|>\n")

    def test_stage2_mask_covers_end_token(self):
        [e] = tasks.reasoning_activation([{"history_item_sid": ["<a_1><b_2><c_3>"],
                                           "item_sid": "<a_1><b_2><c_4>",
                                           "reasoning_path": "Gloves need goggles."}])
        text, ids, mask = self.supervised_text(e)
        self.assertEqual(text, "<think>\nGloves need goggles.\n</think>\n\n<a_1><b_2><c_4>"
                               "<|im_end|>\n")
        self.assertTrue(mask[-1])
        self.assertFalse(mask[:-1][~mask[:-1]].any())

    def test_raw_text_supervises_everything_and_general_its_answer(self):
        text, _, mask = self.supervised_text(tasks.raw_text("narrative", "Lab Tape <a_1><b_2>"))
        self.assertTrue(mask.all())
        g = tasks.chat_general("general_reasoning", [{"role": "user", "content": "hi"}],
                               "<think>\nx\n</think>\n\nyo")
        text, _, _ = self.supervised_text(g)
        self.assertEqual(text, "<think>\nx\n</think>\n\nyo<|im_end|>")

    def test_truncation_keeps_the_last_tokens(self):
        e = tasks.sid_next(self.data.catalog, self.data.split("train"))[0]
        [full], [full_mask] = tasks.encode(self.tok, [e], 4096)
        [cut], [cut_mask] = tasks.encode(self.tok, [e], 10)
        np.testing.assert_array_equal(cut, full[-10:])
        np.testing.assert_array_equal(cut_mask, full_mask[-10:])


class MixTest(absltest.TestCase):

    def test_weights(self):
        examples = {"a": [tasks.raw_text("a", str(i)) for i in range(10)],
                    "b": [tasks.raw_text("b", str(i)) for i in range(10)]}
        counts = lambda m: {k: sum(e.task == k for e in m) for k in "ab"}  # noqa: E731
        self.assertEqual(counts(tasks.mix(examples)), {"a": 10, "b": 10})
        self.assertEqual(counts(tasks.mix(examples, {"a": 0.5, "b": 2})), {"a": 5, "b": 20})
        self.assertEqual(counts(tasks.mix(examples, {"a": 0})), {"a": 0, "b": 10})
        with self.assertRaisesRegex(ValueError, "task 'a'"):
            tasks.mix(examples, {"a": -1})

    def test_item_fact_share(self):
        # 300 sequence examples (200 sid_next at weight 1 + 50 sid_sequence at weight 2) and
        # 40 item-fact examples (20 sid2title at weight 1 + 10 item_enriched at weight 2).
        # Share 0.25: scale = 0.25 * 300 / (0.75 * 40) = 2.5.
        def make(name, n):
            return [tasks.raw_text(name, str(i)) for i in range(n)]

        examples = {"sid_next": make("sid_next", 200), "sid_sequence": make("sid_sequence", 50),
                    "sid2title": make("sid2title", 20), "item_enriched": make("item_enriched", 10)}
        weights = {"sid_sequence": 2.0, "item_enriched": 2.0}
        got = tasks.item_fact_weights(examples, weights, 0.25)
        self.assertEqual(got, {"sid_next": 1.0, "sid_sequence": 2.0, "sid2title": 2.5,
                               "item_enriched": 5.0})
        mixed = tasks.mix(examples, got)
        facts = sum(e.task in tasks.ITEM_FACT_TASKS for e in mixed)
        self.assertEqual((facts, len(mixed)), (100, 400))
        self.assertEqual(tasks.item_fact_weights(examples, weights, 0.0)["sid2title"], 1.0)
        with self.assertRaisesRegex(ValueError, "item_fact_share=1.0"):
            tasks.item_fact_weights(examples, weights, 1.0)

    def test_replay_share(self):
        # Stage 2: 60 reasoning rows stay once; the replayed tasks (200 sid_next at weight 1
        # + 50 sid_sequence at weight 2 = 300) scale to a 0.25 share:
        # scale = 0.25 * 60 / (0.75 * 300) = 1 / 15.
        def make(name, n):
            return [tasks.raw_text(name, str(i)) for i in range(n)]

        examples = {"reasoning": make("reasoning", 60), "sid_next": make("sid_next", 200),
                    "sid_sequence": make("sid_sequence", 50)}
        got = tasks.replay_weights(examples, {"sid_sequence": 2.0}, 0.25)
        self.assertEqual(got["reasoning"], 1.0)
        self.assertAlmostEqual(got["sid_next"], 1 / 15)
        self.assertAlmostEqual(got["sid_sequence"], 2 / 15)
        mixed = tasks.mix(examples, got)
        self.assertEqual((sum(e.task == "reasoning" for e in mixed), len(mixed)), (60, 80))
        self.assertEqual(tasks.replay_weights(examples, {}, 0.0),
                         {"reasoning": 1.0, "sid_next": 0.0, "sid_sequence": 0.0})
        with self.assertRaisesRegex(ValueError, "replay_share=1.0"):
            tasks.replay_weights(examples, {}, 1.0)


class SidTokensOneIdTest(absltest.TestCase):

    def test_sid_tokens_encode_as_single_ids(self):
        from sidjax.model.config import get_preset
        from sidjax.model.model import Model, init_params
        import jax

        tok = train_tokenizer([SYS_PRE] * 10, 300)
        config = get_preset("tiny", vocab_size=320)
        model = Model(config, init_params(config, jax.random.PRNGKey(0)))
        tok, model, ids = add_sid_tokens(tok, model, ["<a_1>", "<b_2>", "<c_3>"])
        self.assertEqual(tok("<a_1><b_2><c_3>", add_special_tokens=False)["input_ids"], ids)


if __name__ == "__main__":
    absltest.main()
