"""Re-copy the tables README.md and docs/ quote from reports/ after a run: each `<!-- rows of FILE -->` block gets
FILE's header and, for every row it held, the row of FILE with the same labels (the cells under the label
columns below), in FILE's order. Rows whose labels FILE no longer has are listed, not guessed. The prose
around the blocks is not touched: tests/test_docs.py says which sentences and numbers no longer hold.

usage (repo root): python tools/refresh_docs.py [--check]    (--check: exit 1 if a block would change)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- rows of (\S+) -->\n)((?:.+\n?)+)")     # as tests/test_docs.py reads them
LABELS = {"dataset", "model", "source", "backbone", "metric", "row", "norm", "split", "P", "variant"}


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def refresh_block(block: str, table_lines: list[str]) -> tuple[str, list[str]]:
    """(the block re-copied from the table's lines, labels of rows the table no longer has)."""
    lines = block.rstrip("\n").split("\n")
    header = cells(table_lines[0])
    key_cols = [i for i, name in enumerate(header) if name in LABELS]
    if not key_cols:
        raise ValueError(f"no label column in {header}")

    def key(line: str) -> tuple[str, ...]:
        row = cells(line)
        return tuple(row[i] if i < len(row) else "" for i in key_cols)

    wanted = {key(line) for line in lines[2:]}
    table_rows = table_lines[2:]
    have = {key(line) for line in table_rows}
    kept = [line for line in table_rows if key(line) in wanted]
    missing = [" | ".join(k) for k in sorted(wanted - have)]
    out = "\n".join(table_lines[:2] + kept)
    return out + ("\n" if block.endswith("\n") else ""), missing


def refresh(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    problems: list[str] = []

    def swap(m: re.Match) -> str:
        name = m.group(2)
        table = [l for l in (root / name).read_text().splitlines() if l.startswith("|")]
        new, missing = refresh_block(m.group(3), table)
        problems.extend(f"{name}: no row {k}" for k in missing)
        return m.group(1) + new

    return BLOCK.sub(swap, text), problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    changed, problems = [], []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        new, missing = refresh(text)
        problems += [f"{doc.relative_to(ROOT)}: {p}" for p in missing]
        if new != text:
            changed.append(str(doc.relative_to(ROOT)))
            if not args.check:
                doc.write_text(new)
    print(("would change: " if args.check else "changed: ") + (", ".join(changed) or "nothing"))
    for p in problems:
        print(p)
    return 1 if (args.check and changed) or problems else 0


if __name__ == "__main__":
    sys.exit(main())
