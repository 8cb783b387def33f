"""Data layer: catalogs and splits (`types.py`), readers (`minionerec.py`, `amazon.py`,
`movielens.py`, chosen by `sources.py`), the synthetic default store (`synthetic.py`), the
TFDS array_record store and batch iterator, the teacher corpora (`teacher.py`, `corpora.py`)
and the method's training tasks and prompts (`tasks.py`, `prompts.py`)."""
