"""Stage `preprocess`: data/raw/<dataset>/ -> data/processed/<dataset>/ (stats, id maps, loo and longterm splits).

Usage: python pipeline/preprocess.py --dataset NAME   (run from the repo root, as dvc does)
On error: prints `error: <message>` to stderr, leaves nothing at data/processed/<dataset>, exits 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from globaldiff import ConfigError
from globaldiff.ingest.loaders import load
from globaldiff.ingest.preprocess import build, read_filters, write_processed
from globaldiff.io import atomic_path
from globaldiff.config.params import read_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    args = parser.parse_args(argv)
    out = Path("data/processed") / args.dataset
    try:
        datasets = read_params().get("datasets") or {}
        if args.dataset not in datasets or not isinstance(datasets[args.dataset], dict):
            raise ConfigError(f"params.yaml: datasets.{args.dataset}: unknown dataset '{args.dataset}'; "
                              f"known: {', '.join(sorted(map(str, datasets)))}")
        cfg = datasets[args.dataset]
        filters = read_filters(args.dataset, cfg)
        processed = build(args.dataset, load(args.dataset, cfg, Path("data/raw") / args.dataset), filters)
        with atomic_path(out) as tmp:
            write_processed(tmp, processed)
    except (ConfigError, OSError) as e:  # OSError: disk full, permissions: still one line, no traceback
        if out.is_dir():
            shutil.rmtree(out)
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(processed.stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
