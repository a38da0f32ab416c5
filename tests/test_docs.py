"""No hand-typed result in README.md and docs/: every table is rows of a file the summary stage wrote, every
number in the prose is in reports/ (or params.yaml), checked by a claim below, or inside a "recorded" box
that names its source; and what README says about the commands, the DAG and the tests is so.

Markers in the Markdown:
  <!-- rows of reports/tables/X.md -->  the lines up to the next blank line are X.md's header and some of its
                                        rows, verbatim and in order;
  <!-- recorded: SOURCE -->  ...  <!-- /recorded -->  numbers that are not in reports/ (experiments, timings,
                                        the paper's text), with who measured them and when; not checked.
Integers without a thousands separator or a % (epochs, seeds, minutes) are not scanned.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import yaml

from globaldiff.report.table import format_p, pct_cell

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS, ABLATIONS, DATA, DEVIATIONS, PIPELINE = (REPO / "docs" / f"{n}.md" for n in
                                                  ("results", "ablations", "data", "deviations", "pipeline"))
# docs/speed.md is a measurement log (benchmarks print its figures), outside these rules for now
DOCS = [README] + sorted(p for p in (REPO / "docs").glob("*.md") if p.name not in {"speed.md"})
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
METRICS = ("HR@10", "HR@20", "NDCG@10", "NDCG@20")
BLOCK = re.compile(r"<!-- rows of (\S+) -->\n((?:.+\n?)+)")
RECORDED = re.compile(r"<!-- recorded: (.+?) -->.*?<!-- /recorded -->", re.S)
FENCE = re.compile(r"^(\s*>?\s*)```.*?^\1```", re.S | re.M)
NUMBER = re.compile(r"(?<![\w.@=/^§])(\d{1,3}(?:,\d{3})+(?:\.\d+)?%?|\d+\.\d+%?|\d+%)")
# a number that is not a result (a version), and the committed file that says it
NOT_RESULTS = {"3.11": ".ci/run", "2.0": "src/globaldiff/ingest/loaders.py"}   # Python; KuaiRec 2.0


def rows(name: str) -> list[dict[str, str]]:
    with open(REPO / "reports/tables" / f"{name}.csv", newline="") as f:
        return list(csv.DictReader(f))


def pct(value: str) -> str:
    """A CSV's change as the tables print it."""
    return pct_cell(float(value)).text


def fmt_p(value: str) -> str:
    """A CSV's p-value as the tables print it."""
    return format_p(float(value))


def flat(text: str) -> str:
    """Whitespace collapsed and blockquote markers dropped, so that a claim may wrap across lines."""
    return " ".join(word for word in text.split() if word != ">")


# --- Claims: sentences of the prose, rebuilt from the committed reports ---------------------------------------

def significance_sentences(cells: list[tuple[float, str]], tests: int) -> tuple[str, str]:
    """(README's sentence, docs/results.md's clause) on the cells below 0.05, whichever way they go: cells are
    (change, 'NAME METRIC, change, p P')."""
    losses = sum(change < 0 for change, _ in cells)
    listed = "; ".join(text for _, text in cells)
    if not cells:
        return (f"None of the {tests} p-values is below 0.05", f"none of the {tests} cells is significant at 0.05")
    if len(cells) == 1:
        kind = "loss" if losses else "gain"
        return (f"One of the {tests} p-values is below 0.05, and it is a {kind} ({listed})",
                f"the one cell significant at 0.05 is a {kind} ({listed}, one of {tests} tests, uncorrected)")
    kinds = "all losses" if losses == len(cells) else "all gains" if not losses else f"{losses} of them losses"
    return (f"{len(cells)} of the {tests} p-values are below 0.05, {kinds} ({listed})",
            f"the {len(cells)} cells significant at 0.05 are {kinds} ({listed}; of {tests} tests, uncorrected)")


def relation(ours: list[float], theirs: list[float], tol: float = 0.001) -> str:
    """How our numbers stand to the paper's: 'level with' (all within tol), 'above', 'below' or 'close to'."""
    if all(abs(a - b) < tol for a, b in zip(ours, theirs)):
        return "level with"
    if all(a > b for a, b in zip(ours, theirs)):
        return "above"
    return "below" if all(a < b for a, b in zip(ours, theirs)) else "close to"


def table2_claims() -> list[tuple[Path, str]]:
    t2 = [r for r in rows("table2") if r["dataset"] == "ml-1m"]
    ours = {r["model"]: r for r in t2 if r["source"] == "ours"}
    paper = {r["model"]: r for r in t2 if r["source"] == "paper"}
    names = [r["model"][len("Improv. % ("):-1] for r in t2 if r["source"] == "ours" and r["model"].startswith("Improv.")]
    changes = [float(ours[f"Improv. % ({n})"][m]) for n in names for m in METRICS]
    bound = f"±{math.ceil(10 * max(map(abs, changes))) / 10:.1f}%"      # the smallest tenth of a percent that holds
    significant = [(float(ours[f"Improv. % ({n})"][m]),
                    f"{n} {m}, {pct(ours[f'Improv. % ({n})'][m])}, p {fmt_p(ours[f'p-value ({n})'][m])}")
                   for n in names for m in METRICS if float(ours[f"p-value ({n})"][m]) < 0.05]
    readme_p, results_p = significance_sentences(significant, len(changes))
    marked = sum(len(ours[f"Improv. % ({n})"]["marks"].split()) for n in names)
    ranges = []
    for n in names:
        values = [float(paper[f"Improv. % ({n})"][m]) for m in METRICS]
        ranges.append(f"{min(values):+.2f}% to {max(values):+.2f}% on {n}")
    above = [n for n in names if all(float(ours[n][m]) > float(paper[f"{n}+GlobalDiff"][m]) for m in ("HR@10", "HR@20"))]
    above_text = ("each of our backbones, alone, is above the paper's row for the same backbone with GlobalDiff"
                  if above == names else f"our {', '.join(above)}, alone, are above the paper's row for the same "
                  f"backbone with GlobalDiff, our {', '.join(n for n in names if n not in above)} is not")
    cbit, cbit_paper = ours["CBiT"], paper["CBiT+GlobalDiff"]
    ndcg = relation([float(cbit[m]) for m in ("NDCG@10", "NDCG@20")], [float(cbit_paper[m]) for m in ("NDCG@10", "NDCG@20")])
    alone = {n: float(ours[f"diffusion alone ({n})"]["HR@10"]) for n in names}
    three = [alone[n] for n in ("SASRec", "BERT4Rec", "CBiT")]
    return [(README, f"Every change of ours lies within {bound}"), (RESULTS, f"every change lies within {bound}"),
            (README, f"the paper reports {', '.join(ranges[:-1])} and {ranges[-1]}"),
            (README, readme_p), (RESULTS, results_p),
            (README, f"paper's ({marked} of the {len(changes)})"),
            (RESULTS, above_text),
            (RESULTS, f"CBiT: {float(cbit['HR@10']):.4f} against {float(cbit_paper['HR@10']):.4f} HR@10"),
            (RESULTS, f"on NDCG our CBiT alone is {ndcg} the paper's CBiT+GlobalDiff "
                      f"({float(cbit['NDCG@10']):.4f} against {float(cbit_paper['NDCG@10']):.4f} NDCG@10, "
                      f"{float(cbit['NDCG@20']):.4f} against {float(cbit_paper['NDCG@20']):.4f} NDCG@20)"),
            (RESULTS, f"HR@10 {min(three):.4f} to {max(three):.4f} on SASRec, BERT4Rec and CBiT, and "
                      f"{alone['SRGNN']:.4f} on SRGNN")]


def attribution_claims() -> list[tuple[Path, str]]:
    table = rows("attribution")
    columns = ["+GlobalDiff", "+softmax(y)A", "+popularity", "+random"]
    change = {(r["backbone"], r["metric"]): r for r in table if r["row"] == "change %"}
    found = []
    for r in table:
        if r["row"] == "p-value":
            for c in columns:
                if r[c] not in ("n/a", "not run") and float(r[c]) < 0.05:
                    assert c == "+popularity" and r["metric"] == "NDCG@10"
                    assert float(change[(r["backbone"], r["metric"])][c]) < 0     # a loss, never a gain
                    found.append(f"{r['backbone']} {pct(change[(r['backbone'], r['metric'])][c])}, p {fmt_p(r[c])}")
    cbit = change[("CBiT", "HR@10")]
    return [(RESULTS, f"the only significant moves are losses from popularity on NDCG@10 ({'; '.join(found)})"),
            (RESULTS, f"({pct(cbit['+GlobalDiff'])} HR@10 with GlobalDiff, as close to zero as the random control, "
                      f"{pct(cbit['+random'])})")]


def sweep_claims() -> list[tuple[Path, str]]:
    tuned = rows("fusion_tuned")
    by = {(r["backbone"], r["row"]): r for r in tuned}
    def tuned_cell(name):
        return f"{pct(by[(name, 'change %')]['HR@10'])} ({name}, p {fmt_p(by[(name, 'p-value')]['HR@10'])})"
    significant = [(float(by[(n, "change %")][m]), f"{n} {m} {pct(by[(n, 'change %')][m])}, p {fmt_p(r[m])}")
                   for (n, row), r in by.items() if row == "p-value" for m in METRICS if float(r[m]) < 0.05]
    losses = sum(c < 0 for c, _ in significant)
    kind = "all losses" if losses == len(significant) else "all gains" if not losses else f"{losses} of them losses"
    tuned_sig = (f"significant tuned cells: {len(significant)}, {kind} ({'; '.join(t for _, t in significant)})"
                 if significant else "no tuned cell is significant at 0.05")
    grid = [r for r in rows("fusion_sweep") if r["split"] == "test"]
    gammas = [c for c in grid[0] if c.startswith("γ=")]
    best = max(((float(r[g]), r["backbone"], r["norm"], g[2:]) for r in grid for g in gammas))
    chosen = by[(best[1], "backbone alone")]["chosen (norm, γ) per seed"]
    assert f"{best[2]} {best[3]}" not in chosen.split(", ")
    sasrec = {r["norm"]: r for r in grid if r["backbone"] == "SASRec"}
    sasrec_best = max(float(r[g]) for r in sasrec.values() for g in gammas)
    l2 = {r["backbone"]: pct(r["γ=0.5"]) for r in grid if r["norm"] == "l2"}
    sasrec_chosen = by[("SASRec", "backbone alone")]["chosen (norm, γ) per seed"]
    return [(RESULTS, f"No setting gives SASRec a gain beyond {sasrec_best:+.2f}% on test"),
            (RESULTS, f"({sasrec_chosen}; gamma 1 is the backbone alone) give "
                      f"{pct(by[('SASRec', 'change %')]['HR@10'])} (p {fmt_p(by[('SASRec', 'p-value')]['HR@10'])})"),
            (RESULTS, f"would change SASRec's HR@10 by {l2['SASRec']}"),
            (RESULTS, f"changes test HR@10 by {tuned_cell('BERT4Rec')}, {tuned_cell('CBiT')} and {tuned_cell('SRGNN')}"),
            (RESULTS, tuned_sig),
            (RESULTS, f"The best test cell of any grid is {best[0]:+.2f}% ({best[1]}, {best[2]}, gamma {best[3]}), "
                      "which validation did not pick"),
            (RESULTS, f"by {l2['BERT4Rec']} on BERT4Rec, {l2['CBiT']} on CBiT and {l2['SRGNN']} on SRGNN")]


def longterm_claims() -> list[tuple[Path, str]]:
    changes = [float(r[m]) for r in rows("longterm") if r["model"] == "Improv. %" for m in METRICS]
    assert max(map(abs, changes)) < 2 and min(changes) < 0 < max(changes)
    return [(RESULTS, "the change stays within ±2% at every P, in both directions")]


def ablation_claims() -> list[tuple[Path, str]]:
    table = {r["variant"]: r for r in rows("ablations")}
    main = float(table["main run"]["HR@20"])
    variants = {v: r for v, r in table.items() if v != "main run"}
    moves = {v: float(r["HR@20"]) - main for v, r in variants.items()}
    significant = [v for v, r in variants.items() if float(r["p (HR@20)"]) < 0.05]
    kind = "gains" if all(moves[v] > 0 for v in significant) else "moves"
    sig_text = (f"{len(significant)} of the {len(variants)} variants move it at p < 0.05 (uncorrected, one seed), all "
                f"{kind}: " + "; ".join(f"{v} {moves[v]:+.4f}, p {fmt_p(variants[v]['p (HR@20)'])}" for v in significant))
    fused = [float(r["HR@20"]) for r in variants.values()]
    alone = {v: f"{float(r['diffusion alone HR@20']):.4f}" for v, r in table.items()}
    kmeans = [float(alone[v]) for v in ("kmeans100", "kmeans500", "kmeans1000")]
    t3 = {(r["variant"], r["source"]): r for r in rows("table3")}
    paper = [float(r["HR@20"]) for (v, s), r in t3.items() if s == "paper"]
    return [(ABLATIONS, f"fused HR@20 between {min(fused):.4f} and {max(fused):.4f} against the main run's {main:.4f}"),
            (ABLATIONS, sig_text),
            (ABLATIONS, f"(HR@20 {alone['guidance_none']} against {alone['main run']})"),
            (ABLATIONS, f"({alone['T100']} at T = 100, {alone['T200']} at T = 200)"),
            (ABLATIONS, f"leave it at {min(kmeans):.4f} to {max(kmeans):.4f}"),
            (ABLATIONS, f"goes from {float(t3[('CBiT (no GlobalDiff)', 'paper')]['HR@20']):.4f} to {max(paper):.4f} HR@20")]


def table1_claims() -> list[tuple[Path, str]]:
    t1 = {(r["dataset"], r["source"]): r for r in rows("table1")}
    ours, paper, kuai = t1[("ml-1m", "ours")], t1[("ml-1m", "paper")], t1[("kuairec", "paper")]
    counts = "{:,} users, {:,} items, {:,} interactions"
    data_stages = (REPO / "tests/test_data_stages.py").read_text()
    assert "[703, 1439, 52244]" in data_stages          # ml-100k, measured by that test
    users = f"all {int(ours['users']):,} users"
    return [(README, users), (RESULTS, users), (DEVIATIONS, users),
            (DATA, counts.format(*(int(ours[k]) for k in ("users", "items", "interactions")))
            + f" (average length {float(ours['avg. length']):.2f}, where the paper prints "
            f"{float(paper['avg. length']):.2f}; sparsity {100 * float(ours['sparsity']):.2f}%, where the paper "
            f"prints {100 * float(paper['sparsity']):.2f}%)"),
            (DATA, f"({counts.format(*(int(kuai[k]) for k in ('users', 'items', 'interactions')))})"),
            (DATA, f"703 users, 1,439 items and 52,244 interactions (avg. length {52244 / 703:.2f}, sparsity "
                   f"{100 * (1 - 52244 / (703 * 1439)):.2f}%)")]


def params_claims() -> list[tuple[Path, str]]:
    seeds = PARAMS["study"]["seeds"]
    said = f"seeds {', '.join(map(str, seeds[:-1]))} and {seeds[-1]}"
    variants = f"{len(PARAMS['ablations']['run'])} variants"
    study = "; ".join(", ".join(map(str, PARAMS["study"][k])) for k in ("datasets", "backbones", "seeds"))
    knobs = [f"| `study.datasets`, `study.backbones`, `study.seeds` | {study} |",
             *(f"| `{k}` | {PARAMS[k]} |" for k in ("gamma", "T", "precision")),
             f"| `similarity.method` | {PARAMS['similarity']['method']} |",
             f"| `denoiser.guidance`, `denoiser.network` | {PARAMS['denoiser']['guidance']}, {PARAMS['denoiser']['network']} |",
             f"| `ensemble.norm` | {PARAMS['ensemble']['norm']} |"]
    return [(README, said), (RESULTS, said), (README, variants), (PIPELINE, variants), *((README, k) for k in knobs)]


def all_claims() -> list[tuple[Path, str]]:
    return (table2_claims() + attribution_claims() + sweep_claims() + longterm_claims() + ablation_claims()
            + table1_claims() + params_claims())


def test_the_claims_hold_on_the_committed_reports():
    """Each claim is rebuilt from reports/, its facts asserted on the way, and must stand in its doc verbatim:
    a change of reports/ that the docs do not follow fails here."""
    for doc, claim in all_claims():
        assert flat(claim) in flat(doc.read_text()), f"{doc.relative_to(REPO)}: {claim!r}"


# --- Blocks and numbers ----------------------------------------------------------------------------------------

def test_every_copied_block_is_rows_of_its_file():
    count = 0
    for doc in DOCS:
        for name, block in BLOCK.findall(doc.read_text()):
            lines = block.rstrip("\n").split("\n")
            table = [l for l in (REPO / name).read_text().splitlines() if l.startswith("|")]
            assert lines[:2] == table[:2], f"{doc.name}: the block of {name} lacks its header"
            rest = iter(table[2:])
            assert all(line in rest for line in lines[2:]), f"{doc.name}: a row of {name} is not in it (in order)"
            count += 1
    assert count >= 8


def prose(doc: Path) -> str:
    """The text whose numbers must be in reports/: without copied blocks, recorded boxes, code, comments."""
    text = BLOCK.sub("", RECORDED.sub("", doc.read_text()))
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))
    text = re.sub(r"<!--.*?-->|\]\([^)]*\)", "", text, flags=re.S)
    text = flat(text)
    for _, claim in all_claims():
        text = text.replace(flat(claim), "")
    return text


def numbers(text: str, signed: bool = True) -> set[str]:
    found = set()
    for m in NUMBER.finditer(text):
        sign = text[m.start() - 1] if m.start() and text[m.start() - 1] in "+-±" else ""
        if sign and m.start() > 1 and text[m.start() - 2].isdigit():
            sign = ""                                   # a range, 0.0690-0.0734: no sign
        found.add((sign if signed else "") + m.group(1))
    return found


def test_every_number_in_the_prose_is_in_reports_or_recorded():
    sources = [*(REPO / "reports/tables").glob("*.md"), REPO / "reports/results.md", REPO / "params.yaml"]
    known = set()
    for path in sources:
        text = path.read_text()
        known |= {m.group(0) for m in re.finditer(r"[+-]?\d[\d,]*(?:\.\d+)?%?", text)}
        known |= {m.group(0).lstrip("+-") for m in re.finditer(r"[+-]?\d[\d,]*(?:\.\d+)?%?", text)}
    for token, source in NOT_RESULTS.items():
        assert token in (REPO / source).read_text()
    for doc in DOCS:
        unknown = numbers(prose(doc)) - known - set(NOT_RESULTS)
        assert not unknown, f"{doc.relative_to(REPO)}: numbers neither in reports/ nor recorded: {sorted(unknown)}"


def test_recorded_boxes_name_their_source():
    for doc in DOCS:
        text = doc.read_text()
        assert text.count("<!-- recorded:") == text.count("<!-- /recorded -->"), doc.name
        for source in RECORDED.findall(text):
            assert re.search(r"\d{4}-\d{2}-\d{2}|the paper", source), f"{doc.name}: {source!r} gives no date"


# --- What README says about the project ------------------------------------------------------------------------

def test_readme_second_command_is_what_ci_runs_and_fits_200_lines():
    ci = (REPO / ".ci/run").read_text().strip().splitlines()[-1]
    readme = README.read_text()
    assert f"\n{ci}\n```\n" in readme
    assert len(readme.splitlines()) <= 200


def test_every_test_the_docs_name_exists():
    defined = set(re.findall(r"^def (test_\w+)", "\n".join(p.read_text() for p in (REPO / "tests").glob("*.py")), re.M))
    for doc in DOCS:
        named = set(re.findall(r"\b(test_\w+)\b(?!\.py)", doc.read_text()))
        assert named <= defined, f"{doc.name}: no such test: {sorted(named - defined)}"


def test_readme_dag_is_the_stage_templates_of_dvc_yaml():
    from dvc.repo import Repo
    import networkx as nx

    edges = re.findall(r"^\s*(\w+)(?:\[[^\]]*\])? --> (\w+)", README.read_text(), re.M)
    shown = nx.DiGraph((b, a) for a, b in edges)      # dvc's direction: a stage points to what it depends on
    with Repo(str(REPO)) as repo:
        actual = nx.DiGraph((a.name.split("@")[0], b.name.split("@")[0]) for a, b in repo.index.graph.edges())
    assert set(shown.nodes) == set(actual.nodes)
    assert set(shown.edges) <= set(actual.edges)
    assert nx.transitive_closure(shown).edges == nx.transitive_closure(actual).edges
