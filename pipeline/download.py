"""Stage `download`: fetch datasets.<dataset>'s raw file(s) into data/raw/<dataset>/ (atomically).

Usage: python pipeline/download.py --dataset NAME   (run from the repo root, as dvc does)
On error: prints `error: <message>` to stderr, leaves nothing at data/raw/<dataset>, exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from globaldiff import ConfigError
from globaldiff.ingest.download import (Limits, check_local_source, clear, dataset_config, download_dataset,
                                        record_checksum, resolve_source)
from globaldiff.io import atomic_path
from globaldiff.config.params import read_params

CHECKSUMS = Path("data/checksums.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    args = parser.parse_args(argv)
    out = Path("data/raw") / args.dataset
    try:
        params = read_params()
        cfg = dataset_config(params, args.dataset)
        source = resolve_source(cfg, args.dataset)
        check_local_source(cfg, source)
        with atomic_path(out) as tmp:
            fetched = download_dataset(source, tmp, root=".", checksums_path=CHECKSUMS,
                                       limits=Limits.from_params(params))
        if fetched.record:
            record_checksum(CHECKSUMS, fetched.url, fetched.sha256)
            print(f"recorded sha256 {fetched.sha256} for {fetched.url} in {CHECKSUMS} (commit it)")
    except (ConfigError, OSError) as e:  # OSError: disk full, permissions: still one line, no traceback
        clear(out)
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.dataset}: {source.url} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
