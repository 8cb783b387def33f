"""Dataset readers: the real Industrial files, raw Amazon and MovieLens fixtures, bad files."""

import filecmp
import gzip
import json
import os
import subprocess
import sys

from absl.testing import absltest

from sidjax.data import amazon, movielens, protocol
from sidjax.data.minionerec import read_minionerec, write_minionerec
from sidjax.data.types import DataError

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "shared",
                                      "data", "amazon18"))
CAT = "Industrial_and_Scientific"
STEM = CAT + "_5_2016-10-2018-11"


class IndustrialTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data = read_minionerec(SHARED, CAT)

    def test_counts_and_sids(self):
        d = self.data
        self.assertLen(d.catalog, 3686)
        self.assertEqual({k: len(v) for k, v in d.splits.items()}, {"valid": 4532, "test": 4533})
        index = json.load(open(os.path.join(SHARED, "index", f"{CAT}.index.json")))
        for split in ("valid", "test"):
            for s in d.splits[split]:
                self.assertEqual(d.catalog.sid_string(s.target), "".join(index[str(s.target)]))
        self.assertLen(d.catalog.sid_strings(), 3670)  # 16 items share an SID.
        self.assertLen({item.sid[0] for item in d.catalog.items}, 48)
        self.assertEqual(d.category_noun, "industrial and scientific items")

    def test_derived_train_split_loads(self):
        out = os.path.join(self.create_tempdir().full_path, "train.csv")
        subprocess.run([sys.executable, os.path.join(SHARED, "derive_train.py"), SHARED, CAT, out],
                       check=True, capture_output=True)
        d = read_minionerec(SHARED, CAT, split_paths={"train": out})
        self.assertLen(d.splits["train"], 10393)
        self.assertTrue(all(s.history for s in d.splits["train"]))

    def test_write_and_reread_reproduces_the_files(self):
        out = self.create_tempdir().full_path
        write_minionerec(self.data, out)
        for rel in (f"valid/{STEM}.csv", f"test/{STEM}.csv", f"info/{STEM}.txt"):
            self.assertTrue(filecmp.cmp(os.path.join(out, rel), os.path.join(SHARED, rel),
                                        shallow=False), rel)
        for name in (f"{CAT}.index.json", f"{CAT}.item.json"):
            self.assertEqual(json.load(open(os.path.join(out, "index", name))),
                             json.load(open(os.path.join(SHARED, "index", name))), name)
        again = read_minionerec(out, CAT)
        self.assertEqual(again.splits["test"], self.data.splits["test"])


def _write_fixture(root, rows, sids=None):
    """A 3-item MiniOneRec fixture; rows are (user, history ids, target) or raw cells."""
    os.makedirs(os.path.join(root, "index"), exist_ok=True)
    os.makedirs(os.path.join(root, "test"), exist_ok=True)
    items = {str(i): {"title": f"T{i}", "description": "", "brand": "", "categories": ""}
             for i in range(3)}
    json.dump(items, open(os.path.join(root, "index", "Cat.item.json"), "w"))
    sids = sids or {str(i): [f"<a_{i}>", "<b_0>", "<c_0>"] for i in range(3)}
    json.dump(sids, open(os.path.join(root, "index", "Cat.index.json"), "w"))
    header = "user_id,history_item_title,item_title,history_item_id,item_id,history_item_sid,item_sid\n"
    with open(os.path.join(root, "test", "Cat_5_2016-10-2018-11.csv"), "w") as f:
        f.write(header)
        for row in rows:
            f.write(row + "\n")


class MalformedMiniOneRecTest(absltest.TestCase):

    def _expect(self, row, message, field, sids=None):
        root = self.create_tempdir().full_path
        _write_fixture(root, [row], sids)
        with self.assertRaisesRegex(DataError, message) as ctx:
            read_minionerec(root, "Cat")
        self.assertEqual((ctx.exception.line, ctx.exception.field), (2, field))
        self.assertIn("Cat_5_2016-10-2018-11.csv", str(ctx.exception))

    def test_malformed_list_cell(self):
        self._expect('u,"[\'T0\']",T1,"[0, 1",1,"[\'<a_0><b_0><c_0>\']",<a_1><b_0><c_0>',
                     "not a Python list literal", "history_item_id")

    def test_unknown_item(self):
        self._expect("u,['T0'],T1,[7],1,['<a_0><b_0><c_0>'],<a_1><b_0><c_0>",
                     "unknown item id 7", "history_item_id")

    def test_empty_history(self):
        self._expect("u,[],T1,[],1,[],<a_1><b_0><c_0>", "empty history", "history_item_id")

    def test_sid_not_in_index(self):
        self._expect("u,['T0'],T1,[0],1,['<a_0><b_0><c_0>'],<a_9><b_0><c_0>",
                     "is not item 1's SID", "item_sid")

    def test_no_eval_of_cells(self):
        self._expect('u,[],T1,"[__import__(\'os\')]",1,[],<a_1><b_0><c_0>',
                     "not a Python list literal", "history_item_id")

    def test_short_row_is_blamed_on_the_row(self):
        self._expect("u,['T0'],T1,[0],1,['<a_0><b_0><c_0>']", "has 6 of the header's 7 "
                     "columns \\(no item_sid\\)", "item_sid")

    def test_non_utf8_bytes_name_file_and_line(self):
        root = self.create_tempdir().full_path
        _write_fixture(root, ["u,['T0'],T1,[0],1,['<a_0><b_0><c_0>'],<a_1><b_0><c_0>"] * 2)
        path = os.path.join(root, "test", "Cat_5_2016-10-2018-11.csv")
        with open(path, "ab") as f:
            f.write(b"u,['Caf\xe9'],T1,[0],1,['<a_0><b_0><c_0>'],<a_1><b_0><c_0>\n")
        with self.assertRaisesRegex(DataError, r"Cat_5_2016-10-2018-11.csv, line 4: bytes "
                                    r"b'\\xe9' .* not UTF-8"):
            read_minionerec(root, "Cat")
        item_json = os.path.join(root, "index", "Cat.item.json")
        with open(item_json, "rb") as f:
            raw = f.read()
        with open(item_json, "wb") as f:
            f.write(raw.replace(b'"T2"', b'"T\xff2"'))
        with self.assertRaisesRegex(DataError, r"Cat.item.json, line 1: .* not UTF-8"):
            read_minionerec(root, "Cat")

    def test_header_only_split(self):
        root = self.create_tempdir().full_path
        _write_fixture(root, [])
        with self.assertRaisesRegex(DataError, "Cat_5_2016-10-2018-11.csv: no rows after the "
                                               "header"):
            read_minionerec(root, "Cat")

    def test_sid_levels_checked_where_read(self):
        root = self.create_tempdir().full_path
        two = {str(i): [f"<a_{i}>", "<b_0>"] for i in range(3)}
        _write_fixture(root, ["u,['T0'],T1,[0],1,['<a_0><b_0>'],<a_1><b_0>"], two)
        with self.assertRaisesRegex(DataError, r"Cat.index.json, field '0': item 0: SID .* has "
                                               "2 levels; the method's SIDs have 3 or 4"):
            read_minionerec(root, "Cat")
        mixed = {"0": ["<a_0>", "<b_0>", "<c_0>"], "1": ["<a_1>", "<b_0>", "<c_0>", "<d_1>"],
                 "2": ["<a_2>", "<b_0>", "<c_0>"]}
        _write_fixture(root, [], mixed)
        with self.assertRaisesRegex(DataError, "item 1: .* has 4 levels, earlier items have 3"):
            read_minionerec(root, "Cat")
        swapped = {str(i): ["<a_0>", "<c_0>", f"<b_{i}>"] for i in range(3)}
        _write_fixture(root, [], swapped)
        with self.assertRaisesRegex(DataError, "'<c_0>' at level 2 must look like '<b_n>'"):
            read_minionerec(root, "Cat")

    def test_missing_column_and_file(self):
        root = self.create_tempdir().full_path
        _write_fixture(root, [])
        path = os.path.join(root, "test", "Cat_5_2016-10-2018-11.csv")
        open(path, "w").write("user_id,item_id\n")
        with self.assertRaisesRegex(DataError, r"missing columns \['history_item_id'\]"):
            read_minionerec(root, "Cat")
        with self.assertRaisesRegex(DataError, "Nope.item.json: file not found"):
            read_minionerec(root, "Nope")


def _ts(date):
    import calendar
    import datetime
    return calendar.timegm(datetime.datetime.strptime(date, "%Y-%m-%d").timetuple())


def _amazon2018_fixture(root):
    meta = [
        {"asin": "B001", "title": "Nitrile Gloves", "description": ["Gloves."], "brand": "X",
         "category": ["Industrial", "Safety"]},
        {"asin": "B002", "title": "Safety Goggles", "brand": "Y"},
        {"asin": "B003", "title": "Lab Coat"},
        {"asin": "B004", "title": "Rare Flask"},
        {"asin": "B005", "title": "Bad <span id='x'> title"},
        {"asin": "B006", "title": " ".join(["word"] * 21)},
        {"asin": "B007"},
        {"asin": "B008", "title": "Old Beaker"},
    ]
    reviews = [  # (user, asin, date)
        ("u1", "B001", "2017-01-05"), ("u1", "B002", "2017-02-01"), ("u1", "B003", "2017-03-01"),
        ("u1", "B005", "2017-03-02"), ("u1", "B001", "2017-04-01"),
        ("u2", "B002", "2017-01-10"), ("u2", "B001", "2017-01-20"), ("u2", "B003", "2017-02-15"),
        ("u3", "B004", "2017-06-01"), ("u3", "B001", "2017-07-01"),
        ("u4", "B001", "2016-12-31"), ("u4", "B002", "2017-03-05"), ("u4", "B003", "2017-03-06"),
        ("u5", "B002", "2018-01-01"),
        ("u6", "B001", "2017-05-01"), ("u6", "B002", "2017-05-02"), ("u6", "B003", "2017-05-03"),
        ("u6", "B001", "2017-05-04"), ("u6", "B002", "2017-05-05"),
        ("u7", "B008", "2016-06-01"), ("u7", "B001", "2016-06-02"),
        ("u8", "B008", "2016-07-01"), ("u8", "B002", "2016-07-02"),
    ]
    with gzip.open(os.path.join(root, "meta_Cat.json.gz"), "wt") as f:
        for m in meta:
            f.write(json.dumps(m) + "\n")
    with open(os.path.join(root, "Cat_5.json"), "w") as f:
        for user, asin, date in reviews:
            f.write(json.dumps({"reviewerID": user, "asin": asin, "unixReviewTime": _ts(date),
                                "overall": 5.0}) + "\n")
    return os.path.join(root, "Cat_5.json"), os.path.join(root, "meta_Cat.json.gz")


class Amazon2018Test(absltest.TestCase):

    def test_hand_checked_protocol(self):
        reviews, meta = _amazon2018_fixture(self.create_tempdir().full_path)
        d, stats = amazon.preprocess_amazon2018(reviews, meta, "Cat", start="2017-01",
                                                end="2017-12", k=2, min_items=0)
        # Titles: B005 (<span id), B006 (21 words), B007 (none) dropped -> one review lost.
        self.assertEqual(stats["items_dropped_by_title"], 3)
        self.assertEqual(stats["reviews_without_valid_meta"], 1)
        # Window drops u4's 2016-12-31, u5's 2018 review and u7/u8's 2016 reviews.
        self.assertEqual(stats["dropped_outside_window"], 6)
        # 2-core removes B004 (one review), then u3 (one left).
        self.assertEqual([d.catalog.title(i) for i in range(len(d.catalog))],
                         ["Nitrile Gloves", "Safety Goggles", "Lab Coat"])
        self.assertEqual(d.catalog[0].description, "['Gloves.']")
        self.assertEqual(d.catalog[0].categories, "Industrial, Safety")
        self.assertEqual(stats["samples"], 10)
        # Global time order: train 8 (int(10*0.8)), valid 1, test 1.
        as_tuples = {k: [(s.user, s.history, s.target) for s in v] for k, v in d.splits.items()}
        self.assertEqual(as_tuples["train"], [
            ("u2", [1], 0), ("u1", [0], 1), ("u2", [1, 0], 2), ("u1", [0, 1], 2),
            ("u4", [1], 2), ("u1", [0, 1, 2], 0), ("u6", [0], 1), ("u6", [0, 1], 2)])
        self.assertEqual(as_tuples["valid"], [("u6", [0, 1, 2], 0)])
        self.assertEqual(as_tuples["test"], [("u6", [0, 1, 2, 0], 1)])

    def test_start_year_moves_back_until_enough_items(self):
        reviews, meta = _amazon2018_fixture(self.create_tempdir().full_path)
        d, stats = amazon.preprocess_amazon2018(reviews, meta, "Cat", start="2017-01",
                                                end="2017-12", k=2, min_items=4)
        self.assertEqual(stats["window_start"], "2016-01")
        self.assertLen(d.catalog, 4)
        self.assertIn("Old Beaker", [item.title for item in d.catalog.items])

    def test_bad_review_line_is_named(self):
        root = self.create_tempdir().full_path
        reviews, meta = _amazon2018_fixture(root)
        with open(reviews, "a") as f:
            f.write(json.dumps({"reviewerID": "u9", "unixReviewTime": 1}) + "\n")
        with self.assertRaisesRegex(DataError, r"Cat_5.json, line 24, field 'asin'"):
            amazon.preprocess_amazon2018(reviews, meta, "Cat", k=2, min_items=0)


class ProtocolTest(absltest.TestCase):

    def test_history_cap_and_five_core(self):
        seq = [protocol.Interaction("u", f"i{j % 13:02d}", j) for j in range(13)]
        samples = protocol.sliding_window_samples(seq, {f"i{j:02d}": j for j in range(13)})
        self.assertLen(samples, 12)
        self.assertEqual(samples[-1].history, list(range(2, 12)))  # Last 10 before item 12.
        self.assertEqual(max(len(s.history) for s in samples), 10)

        import random
        rng = random.Random(0)
        data = [protocol.Interaction(f"u{rng.randrange(60)}", f"i{int(rng.paretovariate(1.2))}",
                                     t) for t in range(2000)]
        cored = protocol.k_core(data, 5, 5)
        import collections
        self.assertGreater(len(cored), 100)
        self.assertGreaterEqual(min(collections.Counter(x.user for x in cored).values()), 5)
        self.assertGreaterEqual(min(collections.Counter(x.item for x in cored).values()), 5)


class Amazon2023Test(absltest.TestCase):

    def test_reads_jsonl(self):
        root = self.create_tempdir().full_path
        with open(os.path.join(root, "meta_Cat.jsonl"), "w") as f:
            for key, title in (("P1", "Drill"), ("P2", "Drill Bits"), ("P3", "")):
                f.write(json.dumps({"parent_asin": key, "title": title, "store": "S",
                                    "description": ["d"], "categories": ["Tools"]}) + "\n")
        with gzip.open(os.path.join(root, "Cat.jsonl.gz"), "wt") as f:
            for user, key, t in [("a", "P1", 1), ("a", "P2", 2), ("b", "P1", 3), ("b", "P2", 4),
                                 ("b", "P3", 5)]:
                f.write(json.dumps({"user_id": user, "parent_asin": key,
                                    "timestamp": t * 1000}) + "\n")
        d, stats = amazon.preprocess_amazon2023(os.path.join(root, "Cat.jsonl.gz"),
                                                os.path.join(root, "meta_Cat.jsonl"), "Cat", k=2)
        self.assertEqual([i.title for i in d.catalog.items], ["Drill", "Drill Bits"])
        self.assertEqual((d.catalog[0].brand, d.catalog[0].categories), ("S", "Tools"))
        self.assertEqual(stats["samples"], 2)
        self.assertEqual(stats["reviews_without_valid_meta"], 1)


class MovieLensTest(absltest.TestCase):

    def _ratings(self):
        return [(u, m, 100 * u + m) for u in (1, 2, 3) for m in (1, 2, 3)]

    def test_ml100k(self):
        root = self.create_tempdir().full_path
        with open(os.path.join(root, "u.item"), "w", encoding="latin-1") as f:
            for m, title in ((1, "Toy Story (1995)"), (2, "GoldenEye (1995)"), (3, "Café (1994)")):
                flags = ["0"] * 19
                flags[3 if m == 1 else 1] = "1"
                f.write("|".join([str(m), title, "01-Jan-1995", "", "http://x"] + flags) + "\n")
        with open(os.path.join(root, "u.data"), "w") as f:
            for u, m, t in self._ratings():
                f.write(f"{u}\t{m}\t4\t{t}\n")
        d, stats = movielens.read_ml100k(root, k=2)
        self.assertEqual(d.catalog[2].title, "Café (1994)")
        self.assertEqual(d.catalog[0].description, "Genres: Animation.")
        self.assertEqual(d.catalog[0].attributes["year"], "1995")
        self.assertEqual(stats["samples"], 6)

    def test_ml1m_and_recbole(self):
        root = self.create_tempdir().full_path
        with open(os.path.join(root, "movies.dat"), "w", encoding="latin-1") as f:
            f.write("1::Toy Story (1995)::Animation|Comedy\n2::Heat (1995)::Action\n"
                    "3::Fargo (1996)::Crime\n")
        with open(os.path.join(root, "ratings.dat"), "w") as f:
            for u, m, t in self._ratings():
                f.write(f"{u}::{m}::5::{t}\n")
        d, _ = movielens.read_ml1m(root, k=2)
        self.assertEqual(d.catalog[0].categories, "Animation, Comedy")
        with open(os.path.join(root, "ml.item"), "w") as f:
            f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq\n")
            f.write("1\tToy Story\t1995\tAnimation Comedy\n2\tHeat\t1995\tAction\n"
                    "3\tFargo\t1996\tCrime\n")
        with open(os.path.join(root, "ml.inter"), "w") as f:
            f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
            for u, m, t in self._ratings():
                f.write(f"{u}\t{m}\t5\t{t}\n")
        d, stats = movielens.read_recbole(root, "ml", k=2)
        self.assertEqual((d.catalog[1].title, d.catalog[1].attributes["year"]), ("Heat", "1995"))
        self.assertEqual(stats["samples"], 6)
        with open(os.path.join(root, "ml.inter"), "a") as f:
            f.write("4\t99\t5\t1\n")
        with self.assertRaisesRegex(DataError, r"ml.inter, line 11, field 'item_id'"):
            movielens.read_recbole(root, "ml", k=2)

    def test_bad_line_is_named(self):
        root = self.create_tempdir().full_path
        open(os.path.join(root, "movies.dat"), "w").write("1::Toy Story (1995)\n")
        with self.assertRaisesRegex(DataError, "movies.dat, line 1"):
            movielens.read_ml1m(root)


if __name__ == "__main__":
    absltest.main()
