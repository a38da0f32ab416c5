"""Data layer: fetch raw files (download), parse them (loaders), filter/order/split (preprocess), read splits (sequences).

Kept empty on purpose: `download` must stay importable without pandas and without the other modules,
so the download stage depends on `download.py` alone.
"""
