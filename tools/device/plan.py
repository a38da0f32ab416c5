"""dvc.yaml + params.yaml resolved WITHOUT dvc (PyYAML only): the stages, their exact commands, deps and outs,
the dependency edges and dvc's own run order.

The constructs resolved are those dvc.yaml uses: `matrix:` (the product of its axes, in declaration order, named
`stage@v1-v2-...` as dvc names them) and `${...}` interpolation from params.yaml (dvc's default vars) and the
matrix `item`: a lone `${x}` keeps its type (a matrix axis is a list), `${x}` inside a string is formatted as dvc
formats it (bools true/false). Anything else dvc.yaml could hold (`foreach`, `vars`, `wdir`, `do`, a dict or
list interpolated into a string) is refused with an error rather than resolved differently from dvc.

Edges and order follow dvc's own code (dvc/repo/graph.py build_graph, dvc/repo/reproduce.py plan_repro): a stage
depends on every stage with an out that equals, contains or lies inside one of its deps (outs = outs, metrics and
plots); the order is the depth-first post-order over stages in dvc.yaml order, upstream in dep order, so that
`--only` and a full run list the stages in the order `dvc repro` would run them. tests/test_device_runner.py
checks names, commands, edges and order against dvc's index.

usage: python tools/device/plan.py [--repo DIR] [--only NAME|PATTERN ...]   (prints name<TAB>cmd, dvc's order)
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import posixpath
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# dvc/parsing/interpolate.py KEYCRE: `${...}`, not preceded by a backslash
KEYCRE = re.compile(r"(?<!\\)\$\{(?P<inner>.*?)\}")
PRIMITIVES = (int, float, str, bytes, bool)
STAGE_KEYS = {"cmd", "deps", "params", "outs", "metrics", "plots", "matrix", "desc", "meta", "frozen",
              "always_changed", "wdir"}
TOP_KEYS = {"stages", "plots", "metrics", "params", "artifacts", "datasets"}   # top-level plots/metrics: no stages


class PlanError(Exception):
    """dvc.yaml uses a construct this resolver does not handle, or the graph is not a DAG."""


@dataclass
class Out:
    path: str          # normalised, relative to the repo root
    kind: str          # outs | metrics | plots
    persist: bool = False
    cache: bool = True


@dataclass
class Stage:
    name: str
    cmd: list[str]                     # dvc runs a multi-line or list cmd one line at a time
    deps: list[str]
    outs: list[Out]
    frozen: bool = False
    upstream: list[str] = field(default_factory=list)   # dvc's graph successors, in its edge order

    @property
    def template(self) -> str:
        return self.name.split("@", 1)[0]

    @property
    def command(self) -> str:
        return "\n".join(self.cmd)


# --- interpolation ---------------------------------------------------------------------------------------------

def to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def select(ctx: dict, expr: str, where: str) -> Any:
    """dvc's Context.select: dotted keys, `a[0]` the same as `a.0`."""
    expr = expr.strip().replace("[", ".").replace("]", "")
    node: Any = ctx
    for part in expr.split("."):
        try:
            if isinstance(node, list):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node[part]
            else:
                raise KeyError(part)
        except (KeyError, IndexError, ValueError):
            raise PlanError(f"{where}: could not find '{expr}' in params.yaml or the matrix item") from None
    return node


def interp(value: Any, ctx: dict, where: str) -> Any:
    if isinstance(value, str):
        matches = list(KEYCRE.finditer(value))
        if not matches:
            return value.replace(r"\${", "${")
        if len(matches) == 1 and matches[0].span() == (0, len(value)):
            return select(ctx, matches[0].group("inner"), where)      # a lone ${x} keeps its type
        out, last = "", 0
        for m in matches:
            got = select(ctx, m.group("inner"), where)
            if got is not None and not isinstance(got, PRIMITIVES):
                raise PlanError(f"{where}: cannot interpolate data of type '{type(got).__name__}' into '{value}'")
            out += value[last:m.start()] + to_str(got)
            last = m.end()
        return (out + value[last:]).replace(r"\${", "${")
    if isinstance(value, list):
        return [interp(v, ctx, where) for v in value]
    if isinstance(value, dict):
        return {interp(k, ctx, where) if isinstance(k, str) else k: interp(v, ctx, where) for k, v in value.items()}
    return value


def norm(path: str) -> str:
    path = posixpath.normpath(str(path))
    if path.startswith("/") or path == ".." or path.startswith("../"):
        raise PlanError(f"path {path!r} outside the repository")
    return path


def entries(items: Any, kind: str, where: str) -> list[tuple[str, dict]]:
    """`- path` and `- path: {options}` forms."""
    out = []
    for entry in items or []:
        if isinstance(entry, dict):
            if len(entry) != 1:
                raise PlanError(f"{where}.{kind}: an entry with {len(entry)} keys")
            (path, opts), = entry.items()
            out.append((norm(path), opts or {}))
        else:
            out.append((norm(entry), {}))
    return out


def matrix_items(matrix: dict, ctx: dict, where: str) -> dict[str, dict]:
    """dvc's MatrixDefinition.normalized_iterable: name suffix -> item, product in axis order."""
    axes = {}
    for key, values in matrix.items():
        values = interp(values, ctx, f"{where}.matrix.{key}")
        if not isinstance(values, list):
            raise PlanError(f"{where}.matrix.{key}: expected a list, got {type(values).__name__}")
        axes[key] = values
    items: dict[str, dict] = {}
    for combo in itertools.product(*(list(enumerate(v)) for v in axes.values())):
        item, parts = {}, []
        for key, (i, v) in zip(axes, combo):
            item[key] = v
            parts.append(f"{key}{i}" if isinstance(v, (dict, list)) else to_str(v))
        items["-".join(parts)] = item
    return items


# --- the plan --------------------------------------------------------------------------------------------------

class Plan:
    """Every stage of dvc.yaml resolved against params, with dvc's edges; `order()` is dvc's run order."""

    def __init__(self, dvc_yaml: dict, params: dict):
        if not isinstance(dvc_yaml, dict) or not isinstance(dvc_yaml.get("stages"), dict):
            raise PlanError("dvc.yaml: no 'stages' mapping")
        unknown = set(dvc_yaml) - TOP_KEYS
        if unknown or "vars" in dvc_yaml:
            raise PlanError(f"dvc.yaml: top-level keys not supported here: {sorted(unknown)}")
        if not isinstance(params, dict):
            raise PlanError("params.yaml: not a mapping")
        self.stages: dict[str, Stage] = {}
        for name, definition in dvc_yaml["stages"].items():
            self._add(name, definition, params)
        self._edges()

    def _add(self, name: str, st: dict, params: dict) -> None:
        where = f"dvc.yaml: stages.{name}"
        if not isinstance(st, dict):
            raise PlanError(f"{where}: not a mapping")
        bad = set(st) - STAGE_KEYS
        if bad:
            raise PlanError(f"{where}: keys not supported by this resolver: {sorted(bad)}")
        if st.get("wdir", ".") not in (".", "./"):
            raise PlanError(f"{where}: wdir is not supported by this resolver")
        items = matrix_items(st["matrix"], params, where) if "matrix" in st else {"": {}}
        for suffix, item in items.items():
            full = f"{name}@{suffix}" if "matrix" in st else name
            ctx = {**params, "item": item} if "matrix" in st else params
            w = f"dvc.yaml: {full}"
            cmd = interp(st.get("cmd"), ctx, f"{w}.cmd")
            if isinstance(cmd, str):
                lines = cmd.splitlines()
            elif isinstance(cmd, list) and all(isinstance(c, str) for c in cmd):
                lines = cmd
            else:
                raise PlanError(f"{w}: cmd must be a string or a list of strings")
            if not lines:
                raise PlanError(f"{w}: no cmd")
            deps = [p for p, _ in entries(interp(st.get("deps"), ctx, f"{w}.deps"), "deps", w)]
            outs = []
            for kind in ("outs", "metrics", "plots"):      # dvc's order: outs, metrics, plots
                for path, opts in entries(interp(st.get(kind), ctx, f"{w}.{kind}"), kind, w):
                    outs.append(Out(path, kind, bool(opts.get("persist", False)), bool(opts.get("cache", True))))
            if full in self.stages:
                raise PlanError(f"{w}: duplicate stage name")
            self.stages[full] = Stage(full, lines, deps, outs, bool(st.get("frozen", False)))

    def _edges(self) -> None:
        """dvc's build_graph: an outs trie, then for each dep the outs on its path (shortest first) and the outs
        under it (trie pre-order, children in insertion order), edges kept in first-insertion order."""
        root: dict = {"children": {}, "out": None}
        for stage in self.stages.values():
            for out in stage.outs:
                node = root
                for part in out.path.split("/"):
                    node = node["children"].setdefault(part, {"children": {}, "out": None})
                if node["out"] is not None:
                    raise PlanError(f"output '{out.path}' of {stage.name} is also an output of {node['out'][0]}")
                node["out"] = (stage.name, out.path)
        for stage in self.stages.values():           # dvc: an out inside another out is an error
            for out in stage.outs:
                node = root
                for part in out.path.split("/")[:-1]:
                    node = node["children"][part]
                    if node["out"] is not None:
                        raise PlanError(f"output '{out.path}' of {stage.name} lies inside output '{node['out'][1]}'")

        def below(node):
            if node["out"] is not None:
                yield node["out"]
            for child in node["children"].values():
                yield from below(child)

        for stage in self.stages.values():
            ups: dict[str, None] = {}
            for dep in stage.deps:
                node, found = root, []
                for part in dep.split("/"):
                    node = node["children"].get(part)
                    if node is None:
                        break
                    if node["out"] is not None:
                        found.append(node["out"])
                else:
                    if node["children"]:
                        found.extend(below(node))
                for owner, _ in found:
                    if owner == stage.name:
                        raise PlanError(f"{stage.name}: depends on its own output (a cycle)")
                    ups.setdefault(owner, None)
            stage.upstream = list(ups)
        self.order()   # raises on a cycle

    # --- queries ---------------------------------------------------------------------------------------------

    def edges(self) -> set[tuple[str, str]]:
        """(stage, upstream stage) pairs, as dvc's graph edges."""
        return {(s.name, u) for s in self.stages.values() for u in s.upstream}

    def active_upstream(self, name: str) -> list[str]:
        """dvc's get_active_graph: a frozen stage is disconnected from its dependencies."""
        stage = self.stages[name]
        return [] if stage.frozen else stage.upstream

    def closure(self, names: list[str]) -> list[str]:
        """dvc's get_subgraph_of_nodes: the nodes a DFS from each target reaches, in that DFS post-order."""
        seen: dict[str, None] = {}

        def visit(n):
            if n in seen:
                return
            seen[n] = None  # mark on entry (no cycles: checked)
            for u in self.active_upstream(n):
                visit(u)

        for n in names:
            visit(n)
        return list(seen)

    def order(self, targets: list[str] | None = None) -> list[str]:
        """dvc's plan_repro: DFS post-order over the (sub)graph, nodes in dvc.yaml order, upstream in edge order."""
        keep = set(self.closure(targets)) if targets else set(self.stages)
        done: dict[str, None] = {}
        active: set[str] = set()

        def visit(n):
            if n in done:
                return
            if n in active:
                raise PlanError(f"cycle through {n}")
            active.add(n)
            for u in self.active_upstream(n):
                if u in keep:
                    visit(u)
            active.discard(n)
            done[n] = None

        for n in self.stages:
            if n in keep:
                visit(n)
        return list(done)

    def select(self, patterns: list[str]) -> list[str]:
        """Stage names for `--only`: an exact name, a stage template (`train_backbone`: all its matrix items, as
        `dvc repro train_backbone`), or a glob (`train_*@ml-1m-sasrec-*`). Every pattern must match."""
        picked: dict[str, None] = {}
        for pattern in patterns:
            if pattern in self.stages:
                hits = [pattern]
            else:
                hits = [n for n in self.stages if self.stages[n].template == pattern] or \
                       [n for n in self.stages if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise PlanError(f"--only {pattern!r}: no stage matches (have: {', '.join(self.stages)})")
            picked.update(dict.fromkeys(hits))
        return list(picked)


def load(repo: str | Path = ".", params: dict | None = None) -> Plan:
    """The plan of `repo`'s dvc.yaml against its params.yaml, or against `params` (e.g. with a profile applied)."""
    repo = Path(repo)
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    if params is None:
        path = repo / "params.yaml"
        params = yaml.safe_load(path.read_text()) if path.is_file() else {}
    return Plan(dvc_yaml, params or {})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", default=".")
    ap.add_argument("--only", nargs="+", metavar="NAME")
    args = ap.parse_args(argv)
    try:
        plan = load(args.repo)
        names = plan.order(plan.select(args.only) if args.only else None)
    except PlanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name in names:
        print(f"{name}\t{plan.stages[name].command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
