"""The `prepare_data` stage (`stage.py`, behind `configs/data.py`): reads a source through the
data layer, writes the MiniOneRec and TFDS copies, embeds the catalog and scores the count
baselines. A stage of its own because it reads `data/`, `embed/` and `eval/`."""
