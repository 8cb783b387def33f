"""Synthetic store, TFDS storage + iterator, and item text embeddings."""

import os

import numpy as np
import torch
from absl import logging
from absl.testing import absltest
from transformers import AutoModel

from sidjax.data.iterator import BatchIterator
from sidjax.data.sources import default_data_config, load_dataset
from sidjax.data.synthetic import SyntheticConfig, generate
from sidjax.data.tfds_store import load_tfds, prepare_tfds, record_to_sample
from sidjax.embed.encoders import default_embed_config, embed_catalog
from sidjax.embed.llm import llm_embeddings
from sidjax.eval import baselines
from sidjax.eval.metrics import ranking_metrics
from sidjax.model.tokenizer import train_tokenizer
from tests.hf_fixtures import make_hf_model


class SyntheticTest(absltest.TestCase):

    def test_deterministic_and_sized(self):
        a, stats = generate(SyntheticConfig(seed=3))
        b, _ = generate(SyntheticConfig(seed=3))
        self.assertEqual(a.splits, b.splits)
        self.assertEqual([i.title for i in a.catalog.items], [i.title for i in b.catalog.items])
        c, _ = generate(SyntheticConfig(seed=4))
        self.assertNotEqual(a.splits["test"][:50], c.splits["test"][:50])
        self.assertBetween(stats["items"], 200, 600)
        self.assertBetween(stats["users"], 1000, 5000)

    def test_semantics_beat_popularity(self):
        d = load_dataset(default_data_config())  # The embedded default.
        train, test = d.splits["train"], d.splits["test"]
        targets = [s.target for s in test]
        n = len(d.catalog)
        pop = ranking_metrics(baselines.popularity_predictions(train, test, n), targets)
        rnd = ranking_metrics(baselines.random_predictions(test, n), targets)
        nxt = ranking_metrics(baselines.transition_counter_predictions(train, test, n), targets)
        print(f"\nSynthetic default test split ({len(test)} rows): HR@10 popularity "
              f"{pop['hr@10']:.4f}, random {rnd['hr@10']:.4f}, last-item transitions "
              f"{nxt['hr@10']:.4f}")
        logging.info("popularity HR@10 %.4f", pop["hr@10"])
        self.assertGreater(pop["hr@10"], rnd["hr@10"])
        self.assertGreater(nxt["hr@10"], 2.5 * pop["hr@10"])

    def test_items_carry_semantics(self):
        d, _ = generate(SyntheticConfig(num_users=300))
        item = d.catalog[0]
        self.assertIn(item.attributes["type"], item.title)
        self.assertIn("Pairs well with", item.description)


class TfdsTest(absltest.TestCase):

    def test_round_trip_and_iterator_over_hosts(self):
        d, _ = generate(SyntheticConfig(num_users=300))
        path = prepare_tfds(d, self.create_tempdir().full_path)
        # A second prepare in the same process (TFDS registers builders by name).
        self.assertTrue(os.path.isdir(prepare_tfds(d, self.create_tempdir().full_path)))
        catalog, sources, meta = load_tfds(path)
        self.assertEqual(meta["name"], d.name)
        self.assertEqual(catalog.items, d.catalog.items)
        for split, samples in d.splits.items():
            self.assertLen(sources[split], len(samples))
            self.assertEqual(record_to_sample(sources[split][7]), samples[7])

        train = sources["train"]
        batch, hosts = 12, 2
        epoch_batches = len(train) // batch
        iters = [BatchIterator(train, batch, seed=5, process_index=p, process_count=hosts)
                 for p in range(hosts)]
        seen = []
        for _ in range(epoch_batches):
            parts = [next(it) for it in iters]
            self.assertEqual(parts[0]["history"].shape, (6, 10))
            seen += [int(t) for p in parts for t in p["timestamp"]]
        # Timestamps identify samples here: each one read once, none twice.
        self.assertLen(set(seen), epoch_batches * batch)

        resumed = BatchIterator(train, batch, seed=5)
        resumed.set_state({"batches_done": 3, "seed": 5})
        full = BatchIterator(train, batch, seed=5)
        for _ in range(3):
            next(full)
        np.testing.assert_array_equal(next(resumed)["target"], next(full)["target"])


class EmbeddingTest(absltest.TestCase):

    def test_tfidf_deterministic_cached_and_semantic(self):
        d, _ = generate(SyntheticConfig(num_users=300))
        cache = self.create_tempdir().full_path
        cfg = default_embed_config()
        cfg.dim = 32
        a = embed_catalog(d.catalog, cfg, cache)
        self.assertEqual(a.shape, (len(d.catalog), 32))
        self.assertLen(os.listdir(cache), 1)
        np.testing.assert_array_equal(a, embed_catalog(d.catalog, cfg, None))
        # Nearest neighbour of an item shares its product type far above chance.
        unit = a / np.linalg.norm(a, axis=1, keepdims=True)
        sims = unit @ unit.T
        np.fill_diagonal(sims, -1)
        same = [d.catalog[i].attributes["type"] == d.catalog[int(j)].attributes["type"]
                for i, j in enumerate(sims.argmax(1))]
        self.assertGreater(np.mean(same), 0.8)

    def test_npy_encoder_checks_shape(self):
        d, _ = generate(SyntheticConfig(num_users=300))
        path = os.path.join(self.create_tempdir().full_path, "e.npy")
        np.save(path, np.ones((3, 4)))
        cfg = default_embed_config()
        cfg.encoder, cfg.path = "npy", path
        with self.assertRaisesRegex(ValueError, r"shape \(3, 4\), expected \[\d+, d\]"):
            embed_catalog(d.catalog, cfg)
        cfg.encoder = "bert"
        with self.assertRaisesRegex(ValueError, "config.embed.encoder='bert'"):
            embed_catalog(d.catalog, cfg)

    def test_llm_encoder_matches_transformers_mean_pooling(self):
        path = self.create_tempdir().full_path
        tokenizer = train_tokenizer(["gloves goggles flask beaker solder wire"] * 20, 96, path)
        with self.assertRaisesRegex(ValueError, "tokenizer has .* tokens but the model"):
            make_hf_model("qwen3", True, path)
            llm_embeddings(["gloves"], path)
        make_hf_model("qwen3", True, path, vocab_size=len(tokenizer))
        texts = ["gloves", "solder wire and flux for the bench", "a beaker", "goggles " * 9]
        ours = llm_embeddings(texts, path, max_len=64, batch_size=3)
        hf = AutoModel.from_pretrained(path).eval()
        self.assertGreater(len(tokenizer.encode(texts[-1])), 64)  # Truncated to the first 64.
        for text, vector in zip(texts, ours):
            ids = torch.tensor([tokenizer.encode(text)[:64]])
            with torch.no_grad():
                hidden = hf(ids).last_hidden_state[0]
            np.testing.assert_allclose(vector, hidden.mean(0).numpy(), atol=1e-4)
        from sidjax.train.mesh import make_mesh
        sharded = llm_embeddings(texts, path, max_len=64, batch_size=3,
                                 mesh=make_mesh({"data": 2, "fsdp": 2, "tensor": 2}))
        np.testing.assert_allclose(sharded, ours, atol=1e-5)


if __name__ == "__main__":
    absltest.main()


class PrepareStageTest(absltest.TestCase):

    def test_prepare_data_stage_writes_everything(self):
        import json

        from sidjax import stages
        from sidjax.config_files import load_config
        from sidjax.data.minionerec import read_minionerec

        repo = os.path.join(os.path.dirname(__file__), os.pardir)
        config = load_config(os.path.join(repo, "configs", "data.py:tiny"))
        workdir = self.create_tempdir().full_path
        stats = stages.train_and_evaluate(config, workdir)
        written = read_minionerec(os.path.join(workdir, "data", "minionerec"), stats["name"])
        self.assertEqual({k: len(v) for k, v in written.splits.items()}, stats["rows"])
        self.assertEqual(json.load(open(os.path.join(workdir, "data", "stats.json")))["items"],
                         stats["items"])
        self.assertLen(os.listdir(os.path.join(workdir, "embeddings")), 1)
        self.assertGreater(stats["baselines_test"]["popularity"]["hr@10"],
                           stats["baselines_test"]["random"]["hr@10"])
