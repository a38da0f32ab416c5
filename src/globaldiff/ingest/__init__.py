"""Raw data in: fetch files (download), parse them (loaders), filter, order and split them (preprocess).

Kept empty on purpose: `download` must stay importable without pandas and without the other modules,
so the download stage depends on `download.py` alone.
"""
