"""Data layer: catalogs, splits, readers and the batch iterator."""
