"""Data layer: catalogs and splits (`types.py`; start here), readers (`minionerec.py`,
`amazon.py`, `movielens.py`, chosen by `sources.py`), the synthetic default store
(`synthetic.py`), the TFDS array_record store and batch iterator (`tfds_store.py`,
`iterator.py`, `padding.py`) and the teacher corpora (`teacher.py`, `corpora.py`). It imports
nothing else from sidjax: the task prompts built from it live in `sidjax/tasks/`, the stage
that prepares a workdir's data in `sidjax/prepare/`."""
