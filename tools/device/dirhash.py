#!/usr/bin/env python3
"""The md5 of a file or folder output as dvc 3 records it in dvc.lock (`hash: md5`), stdlib only: outputs made
without dvc (tools/device/runner.py) can be compared with the committed dvc.lock.

A file: the md5 of its bytes. A folder: `<md5>.dir`, the md5 of the JSON list [{"md5": ..., "relpath": ...}] of
its files (relpath with '/', the list sorted by that string, json.dumps(sort_keys=True)), as dvc_data's
Tree.as_bytes builds it; size is the files' total and nfiles their count. tests/test_device_runner.py checks it
against `dvc add`. (dvc also leaves out what .dvcignore names; this does not read .dvcignore.)

usage: python tools/device/dirhash.py PATH [PATH ...]          -> 'md5 size nfiles path' per path
       python tools/device/dirhash.py --lock dvc.lock [PATH ...] -> each out of dvc.lock: SAME / DIFFERENT / missing
"""

from __future__ import annotations

import hashlib
import json
import os
import sys


def file_md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest(path: str) -> tuple[str, int, int | None]:
    """(md5, size, nfiles) of a file (nfiles None) or a folder."""
    if os.path.isfile(path):
        return file_md5(path), os.path.getsize(path), None
    entries, size = [], 0
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            entries.append({"md5": file_md5(full), "relpath": os.path.relpath(full, path).replace(os.sep, "/")})
            size += os.path.getsize(full)
    entries.sort(key=lambda e: e["relpath"])
    blob = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(blob).hexdigest() + ".dir", size, len(entries)


def lock_outs(lock_path: str) -> dict[str, str]:
    """{out path: md5} of every stage's outs in a dvc.lock (needs PyYAML)."""
    import yaml

    lock = yaml.safe_load(open(lock_path))
    return {o["path"]: o["md5"] for s in (lock.get("stages") or {}).values() for o in s.get("outs") or [] if "md5" in o}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--lock"]:
        outs = lock_outs(argv[1])
        wanted = argv[2:] or list(outs)
        bad = 0
        for p in wanted:
            if p not in outs:
                print(f"not-in-lock - {p}")
                continue
            if not os.path.exists(p):
                print(f"missing {outs[p]} {p}")
                continue
            got = digest(p)[0]
            same = got == outs[p]
            bad += not same
            print(f"{'SAME' if same else 'DIFFERENT'} {got} {outs[p]} {p}")
        return 1 if bad else 0
    for p in argv:
        if os.path.exists(p):
            md5, size, n = digest(p)
            print(md5, size, n if n is not None else "-", p)
        else:
            print("missing - -", p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
