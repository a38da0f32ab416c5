"""tools/refresh_docs.py: a copied block follows its file's new numbers, keeps only the rows it held (by their
labels, in the file's order), and names the rows the file lost; on the committed docs it changes nothing."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import refresh_docs  # noqa: E402

TABLE = """| dataset | model | seeds | HR@10 |
|---|---|---|---:|
| ml-1m | SASRec | 3 | 0.2000 |
| ml-1m | BERT4Rec | 3 | 0.1700 |
| ml-1m | CBiT | 3 | 0.1750 |
"""


def test_a_block_takes_the_new_numbers_of_the_rows_it_held(tmp_path):
    (tmp_path / "t.md").write_text("Caption.\n\n" + TABLE)
    doc = ("Before.\n\n<!-- rows of t.md -->\n| dataset | model | seeds | HR@10 |\n|---|---|---|---:|\n"
           "| ml-1m | CBiT | 3 | 0.1703 |\n| ml-1m | SASRec | 3 | 0.1941 |\n| ml-1m | SRGNN | 3 | 0.1772 |\n\nAfter 0.1941.\n")
    new, problems = refresh_docs.refresh(doc, tmp_path)
    assert new == ("Before.\n\n<!-- rows of t.md -->\n| dataset | model | seeds | HR@10 |\n|---|---|---|---:|\n"
                   "| ml-1m | SASRec | 3 | 0.2000 |\n| ml-1m | CBiT | 3 | 0.1750 |\n\nAfter 0.1941.\n")
    assert problems == ["t.md: no row ml-1m | SRGNN"]


def test_the_committed_docs_are_fresh():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert refresh_docs.refresh(text) == (text, []), doc.name
