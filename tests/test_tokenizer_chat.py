"""Tokenizer training/loading, SID vocabulary extension, and the Qwen3 chat renderer."""

import os

import jax
import numpy as np
from absl.testing import absltest, parameterized

from sidjax.model import chat
from sidjax.model import hf as hf_lib
from sidjax.model.config import get_preset
from sidjax.model.model import Model, init_params
from sidjax.model.tokenizer import add_sid_tokens, load_tokenizer, sid_tokens, train_tokenizer

CORPUS = [
    "The user has interacted with items in chronological order. Can you predict the next item?",
    "Nitrile gloves, safety goggles, lab tape and a digital caliper for the workshop.",
    "Below is an instruction that describes a task, paired with an input.",
] * 40

SYS = "Below is an instruction that describes a task."
CONVERSATIONS = {
    "generation_prompt": ([{"role": "system", "content": SYS},
                           {"role": "user", "content": "Which item has the title: Tape?"}],
                          True, None),
    "non_thinking_prompt": ([{"role": "system", "content": SYS},
                             {"role": "user", "content": "Predict the next item."}], True, False),
    "answer_without_reasoning": ([{"role": "user", "content": "q"},
                                  {"role": "assistant", "content": "<a_1><b_2><c_3>"}],
                                 False, None),
    "answer_with_think_in_content": ([{"role": "system", "content": SYS},
                                      {"role": "user", "content": "q"},
                                      {"role": "assistant",
                                       "content": "<think>\nGloves go with goggles.\n</think>\n\n"
                                                  "<a_1><b_2><c_3>"}], False, None),
    "answer_with_reasoning_field": ([{"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "A",
                                      "reasoning_content": "\nstep one\n"}], False, None),
    "multi_turn_drops_old_reasoning": ([{"role": "user", "content": "q1"},
                                        {"role": "assistant", "content": "<think>old</think>a1"},
                                        {"role": "user", "content": "q2"},
                                        {"role": "assistant", "content": "a2"},
                                        {"role": "system", "content": "late system"}],
                                       True, True),
}


class ChatTemplateTest(parameterized.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tokenizer = train_tokenizer(CORPUS, 320)

    @parameterized.named_parameters(*[(k, *v) for k, v in CONVERSATIONS.items()])
    def test_matches_transformers_with_qwen3_template(self, messages, gen_prompt, thinking):
        kwargs = {} if thinking is None else {"enable_thinking": thinking}
        expected = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=gen_prompt, **kwargs)
        self.assertEqual(chat.render_chat(messages, gen_prompt, thinking), expected)

    def test_method_strings(self):
        # The exact strings the method's loss masks depend on (sidreasoner_method.md section 5).
        self.assertEqual(
            chat.render_chat([{"role": "user", "content": "u"}, {"role": "assistant",
                                                                 "content": "S"}]),
            "<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nS"
            "<|im_end|>\n")
        self.assertEqual(chat.render_chat([{"role": "user", "content": "u"}], True),
                         "<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n")

    def test_unsupported_role_is_named(self):
        with self.assertRaisesRegex(ValueError, "role 'tool'"):
            chat.render_chat([{"role": "user", "content": "u"}, {"role": "tool", "content": "x"}])


class TokenizerTest(absltest.TestCase):

    def test_trained_tokenizer_round_trips_through_a_directory(self):
        path = self.create_tempdir().full_path
        train_tokenizer(CORPUS, 320, path)
        tokenizer = load_tokenizer(path)
        self.assertEqual((tokenizer.eos_token, tokenizer.pad_token, tokenizer.padding_side),
                         ("<|im_end|>", "<|endoftext|>", "left"))
        for special in ("<|im_start|>", "<|im_end|>", "<think>", "</think>"):
            self.assertLen(tokenizer.encode(special), 1, special)
        text = chat.render_chat([{"role": "user", "content": CORPUS[1]}], True, False)
        self.assertEqual(tokenizer.decode(tokenizer.encode(text)), text)

    def test_sid_tokens_in_string_order(self):
        # Python string order, as the method's sorted(): '0' < '>' puts <a_10> before <a_1>.
        self.assertEqual(sid_tokens(["<a_10><b_2><c_3>", "<a_2><b_2><c_1>", ["<a_1>", "<b_0>"]]),
                         ["<a_10>", "<a_1>", "<a_2>", "<b_0>", "<b_2>", "<c_1>", "<c_3>"])


class SentencePieceTest(absltest.TestCase):
    """sentencepiece's two jobs: from-scratch unigram tokenizers, and reading the
    `tokenizer.model` files Llama-2 / Gemma-era checkpoints ship."""

    def _processor(self, model_file):
        import sentencepiece

        return sentencepiece.SentencePieceProcessor(model_file=model_file)

    def test_trained_model_tokenises_as_sentencepiece_does_and_round_trips(self):
        path = self.create_tempdir().full_path
        train_tokenizer(CORPUS, 400, path, kind="sentencepiece")
        tokenizer = load_tokenizer(path)
        self.assertEqual((tokenizer.eos_token, tokenizer.pad_token, tokenizer.padding_side),
                         ("<|im_end|>", "<|endoftext|>", "left"))
        for special in ("<|im_start|>", "<|im_end|>", "<think>", "</think>"):
            self.assertLen(tokenizer.encode(special, add_special_tokens=False), 1, special)
        # Unseen characters (another category's titles) go through byte fallback, never <unk>;
        # double spaces and newlines survive.
        text = chat.render_chat([{"role": "user", "content": CORPUS[1] + "  Ünïcode ✓ 2024"},
                                 {"role": "assistant", "content": "<think>\nwhy\n</think>\n\nA"}])
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        self.assertEqual(ids, self._processor(f"{path}/tokenizer.model").encode(text))
        self.assertNotIn(tokenizer.unk_token_id, ids)
        self.assertEqual(tokenizer.decode(ids), text)
        self.assertEqual(tokenizer.apply_chat_template(
            [{"role": "user", "content": "u"}], tokenize=False, add_generation_prompt=True),
            chat.render_chat([{"role": "user", "content": "u"}], True))

    def test_sid_tokens_and_loss_mask_prefixes(self):
        tokenizer = train_tokenizer(CORPUS, 400, kind="sentencepiece")
        config = get_preset("tiny", vocab_size=len(tokenizer))
        model = Model(config, init_params(config, jax.random.PRNGKey(0)))
        tokenizer, grown, ids = add_sid_tokens(tokenizer, model, ["<a_12>", "<b_7>", "<c_200>"])
        self.assertEqual(tokenizer.encode("<a_12><b_7><c_200>", add_special_tokens=False), ids)
        self.assertGreaterEqual(grown.config.vocab_size, len(tokenizer))
        # The SFT mask supervises from the prefix's length on: the prefix's ids must be a
        # prefix of the full text's.
        prefix = chat.render_chat([{"role": "user", "content": CORPUS[0]}], True, False)
        full = prefix + "<a_12><b_7><c_200>" + chat.IM_END + "\n"
        prefix_ids = tokenizer.encode(prefix, add_special_tokens=False)
        full_ids = tokenizer.encode(full, add_special_tokens=False)
        self.assertEqual(full_ids[:len(prefix_ids)], prefix_ids)
        self.assertEqual(full_ids[len(prefix_ids):len(prefix_ids) + 3], ids)

    def _random_texts(self, count=100):
        rng = np.random.default_rng(0)
        words = " ".join(CORPUS[:3]).split() + ["Ünïcode", "✓", "2024", "<|im_end|>", "<think>"]
        gaps = [" ", "  ", "\n", "", " \n "]
        return ["".join(rng.choice(words) + rng.choice(gaps) for _ in range(12))
                for _ in range(count)] + ["", " leading", "trailing  "]

    def _bare_model(self, **settings):
        import io

        import sentencepiece

        proto = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(CORPUS), model_writer=proto, vocab_size=400,
            byte_fallback=True, hard_vocab_limit=False, minloglevel=2, **settings)
        directory = self.create_tempdir().full_path
        with open(f"{directory}/tokenizer.model", "wb") as f:
            f.write(proto.getvalue())
        return directory

    def test_bare_llama2_style_model_file(self):
        # Meta's Llama-2 release: only tokenizer.model, a BPE model with a dummy word-boundary
        # prefix, no normalisation, split digits, <unk> / <s> / </s> at ids 0 / 1 / 2 and byte
        # fallback.
        directory = self._bare_model(model_type="bpe", normalization_rule_name="identity",
                                     remove_extra_whitespaces=False, split_digits=True)
        processor = self._processor(f"{directory}/tokenizer.model")
        for source in (directory, f"{directory}/tokenizer.model"):
            tokenizer = load_tokenizer(source)
            self.assertEqual((tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token),
                             ("<s>", "</s>", "<unk>"))
            self.assertEqual((tokenizer.bos_token_id, tokenizer.eos_token_id), (1, 2))
            self.assertEqual(tokenizer.pad_token, "</s>")  # pad = eos when there is none.
            for text in self._random_texts():
                ids = tokenizer.encode(text, add_special_tokens=False)
                self.assertEqual(ids, processor.encode(text), repr(text))
                self.assertEqual(tokenizer.decode(ids), processor.decode(ids), repr(text))

    def test_bare_unigram_model_with_default_normalisation(self):
        # SentencePiece's defaults (unigram, NFKC, extra whitespace removed): the normaliser is
        # the model's own, so full-width letters and runs of spaces fold as SentencePiece folds
        # them.
        directory = self._bare_model()
        processor = self._processor(f"{directory}/tokenizer.model")
        tokenizer = load_tokenizer(directory)
        for text in ["Ｎｉｔｒｉｌｅ  gloves", "  safety   goggles "] + self._random_texts(30):
            self.assertEqual(tokenizer.encode(text, add_special_tokens=False),
                             processor.encode(text), repr(text))

    def test_bad_kind_and_small_vocabulary_are_named(self):
        with self.assertRaisesRegex(ValueError, "tokenizer_kind='wordpiece'"):
            train_tokenizer(CORPUS, 400, kind="wordpiece")
        with self.assertRaisesRegex(ValueError, "tokenizer_vocab=100 is too small"):
            train_tokenizer(CORPUS, 100, kind="sentencepiece")
        with self.assertRaisesRegex(FileNotFoundError, "neither a directory"):
            load_tokenizer(f"{self.create_tempdir().full_path}/missing")

    def test_from_scratch_llm_with_a_sentencepiece_tokenizer(self):
        from sidjax.model.setup import build_llm, default_model_config

        cfg = default_model_config()
        cfg.tokenizer_kind, cfg.tokenizer_vocab = "sentencepiece", 400
        path = self.create_tempdir().full_path
        model, tokenizer = build_llm(cfg, ["<a_1>", "<b_2>"], CORPUS, tokenizer_dir=path)
        self.assertIn("tokenizer.model", os.listdir(path))
        self.assertEqual(tokenizer.encode("<a_1><b_2>", add_special_tokens=False),
                         tokenizer.convert_tokens_to_ids(["<a_1>", "<b_2>"]))
        self.assertGreaterEqual(model.config.vocab_size, len(tokenizer))
        self.assertEqual(model.config.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>"))


class SidVocabularyTest(parameterized.TestCase):

    def _model(self, tokenizer, tie, spare_rows=0):
        config = get_preset("tiny", vocab_size=len(tokenizer) + spare_rows, tie_word_embeddings=tie)
        return Model(config, init_params(config, jax.random.PRNGKey(0)))

    @parameterized.parameters((True, 0), (False, 0), (True, 5), (False, 5))
    def test_extension(self, tie, spare_rows):
        tokenizer = train_tokenizer(CORPUS, 320)
        old_len = len(tokenizer)
        model = self._model(tokenizer, tie, spare_rows)
        new_tokens = sid_tokens(["<a_3><b_7><c_1>", "<a_12><b_7><c_200>", "<a_3><b_0><c_9>"])
        tokenizer, grown, ids = add_sid_tokens(tokenizer, model, new_tokens, seed=1)

        # Ids: consecutive after the old tokenizer, in sid_tokens order, one id per token.
        self.assertEqual(ids, list(range(old_len, old_len + len(new_tokens))))
        sid = "<a_12><b_7><c_200>"
        encoded = tokenizer.encode(sid)
        self.assertEqual(encoded, tokenizer.convert_tokens_to_ids(
            ["<a_12>", "<b_7>", "<c_200>"]))
        self.assertEqual(tokenizer.decode(encoded, skip_special_tokens=True), sid)

        # Shapes: grown to a multiple of 64 covering every id; head follows when untied.
        vocab = grown.config.vocab_size
        self.assertEqual(vocab % 64, 0)
        self.assertGreaterEqual(vocab, len(tokenizer))
        old_emb = np.asarray(model.params["embed"]["embedding"])
        new_emb = np.asarray(grown.params["embed"]["embedding"])
        self.assertEqual(new_emb.shape, (vocab, old_emb.shape[1]))
        np.testing.assert_array_equal(new_emb[:old_len], old_emb[:old_len])

        # Every new row (including ones landing on old spare rows) is mean + small noise.
        ref = old_emb[:old_len]
        rows = new_emb[ids]
        for i in ids[:spare_rows]:
            self.assertFalse(np.allclose(new_emb[i], old_emb[i]), "left on an untrained row")
        np.testing.assert_allclose(rows.mean(0), ref.mean(0), atol=0.1 * ref.std(0).max())
        self.assertLess(np.abs(rows - ref.mean(0)).max(), 0.1 * ref.std(0).max() * 6)
        self.assertEqual(len({r.tobytes() for r in rows}), len(ids))
        if not tie:
            head = np.asarray(grown.params["lm_head"])
            self.assertEqual(head.shape, (old_emb.shape[1], vocab))
            np.testing.assert_array_equal(head[:, :old_len],
                                          np.asarray(model.params["lm_head"])[:, :old_len])

        # Existing-token logits are unchanged.
        tokens = np.asarray([tokenizer.encode(CORPUS[0])[:20]])
        before, after = np.asarray(model(tokens)), np.asarray(grown(tokens))
        np.testing.assert_allclose(after[..., :old_len], before[..., :old_len], atol=1e-6)

    def test_round_trip_through_save_and_load(self):
        tokenizer = train_tokenizer(CORPUS, 320)
        model = self._model(tokenizer, tie=False)
        tokenizer, grown, ids = add_sid_tokens(tokenizer, model, ["<a_0>", "<b_1>", "<c_2>"])
        path = self.create_tempdir().full_path
        tokenizer.save_pretrained(path)
        hf_lib.save_hf_model(grown, path)
        tokenizer2, model2 = load_tokenizer(path), hf_lib.load_hf_model(path)
        self.assertEqual(tokenizer2.encode("<a_0><b_1><c_2>"), ids)
        tokens = np.asarray([ids + tokenizer.encode("gloves")])
        np.testing.assert_allclose(np.asarray(model2(tokens)), np.asarray(grown(tokens)),
                                   atol=1e-6)

    def test_rejects_non_sid_tokens(self):
        tokenizer = train_tokenizer(CORPUS, 320)
        with self.assertRaisesRegex(ValueError, "Not SID tokens"):
            add_sid_tokens(tokenizer, self._model(tokenizer, True), ["<a_1>", "hello"])


if __name__ == "__main__":
    absltest.main()
