"""The project code each DVC stage runs: the static import closure of its script, from the code itself.

`python tools/stage_deps.py` prints, per stage of dvc.yaml (as dvc resolves it), the project files its code
imports and whether dvc.yaml lists each (as the file or a folder holding it); exit 1 on a missing one.
tests/test_stage_deps.py runs the same check. Every `import` counts, at module level or inside a function
(a function-level import runs when its caller does): the closure may be larger than one run needs, never
smaller. One import is dynamic: `backbones.base.backbone_class` loads `globaldiff.backbones.<name>`, where
the name is the stage's `--backbone` argument, or `ablations.backbone` / `longterm.backbone` for those stages.
"""

from __future__ import annotations

import ast
import functools
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = Path("src")
PACKAGE = "globaldiff"
# The backbone registry: pure data (a literal dict of names), imported by every stage that builds a backbone
# and left out of their deps on purpose, so that registering a backbone retrains nothing else.
REGISTRY_FILE = Path("src/globaldiff/backbones/__init__.py")
DYNAMIC_LOADER = Path("src/globaldiff/backbones/base.py")


def module_file(module: str, root: Path = REPO) -> Path | None:
    """src/a/b.py or src/a/b/__init__.py for module `a.b` (relative to the repo), or None."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / candidate).is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=None)
def _imported_modules(path: Path, root: Path) -> frozenset[str]:
    """Every project module `path` imports (and the packages above each, whose __init__ runs first)."""
    tree = ast.parse((root / path).read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # from .x import y: relative to the package of `path`
                package = list(path.relative_to(SRC).with_suffix("").parts)[:-1]
                package = package[:len(package) - node.level + 1]
                module = ".".join(package + ([module] if module else []))
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                parts = name.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(m for m in found if module_file(m, root))


def closure(script: Path, backbone: str | None = None, root: Path = REPO) -> set[Path]:
    """The project files a run of `script` can execute (paths relative to the repo)."""
    files, todo = {script}, [script]
    while todo:
        current = todo.pop()
        for module in _imported_modules(current, root):
            path = module_file(module, root)
            if path not in files:
                files.add(path)
                todo.append(path)
        if current == DYNAMIC_LOADER and backbone is not None:
            path = module_file(f"{PACKAGE}.backbones.{backbone}", root)
            if path and path not in files:
                files.add(path)
                todo.append(path)
    return files


def stage_backbone(cmd: str, params: dict) -> tuple[Path, str | None]:
    """(the stage's script, the backbone it builds) from its command."""
    args = shlex.split(cmd)
    script = Path(next(a for a in args if a.endswith(".py")))
    if "--backbone" in args:
        return script, args[args.index("--backbone") + 1]
    section = {"ablation": "ablations", "longterm": "longterm"}.get(script.stem)
    return script, params[section]["backbone"] if section else None


def covered(path: Path, deps: list[Path]) -> bool:
    return any(path == dep or dep in path.parents for dep in deps)


def registered_backbones(root: Path = REPO) -> list[str]:
    tree = ast.parse((root / REGISTRY_FILE).read_text())
    return [k.value for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign)) and isinstance(n.value, ast.Dict)
            for k in n.value.keys]


def _any_backbone(script: Path, backbone: str | None, root: Path) -> set[Path]:
    """The code of `script` for any registered backbone (a stage template names its backbone by a variable)."""
    names = registered_backbones(root) if backbone is not None else [None]
    return set().union(*(closure(script, name, root) for name in names)) - {REGISTRY_FILE}


def _used(dep: Path, template: set[Path], root: Path) -> bool:
    """A file dep is used when the stage imports it; a folder dep when the stage imports every .py in it."""
    if (root / dep).is_dir():
        files = {f.relative_to(root) for f in (root / dep).rglob("*.py") if "__pycache__" not in f.parts}
        return bool(files) and files <= template
    return dep in template


def template_deps(root: Path = REPO) -> dict[str, list[str]]:
    """Per stage template: the union of its matrix items' code, the form dvc.yaml lists it in."""
    import yaml
    from dvc.repo import Repo

    params = yaml.safe_load((root / "params.yaml").read_text())
    union: dict[str, set[Path]] = {}
    with Repo(str(root)) as repo:
        for s in repo.index.stages:
            script, backbone = stage_backbone(s.cmd, params)
            union.setdefault(s.name.split("@")[0], set()).update(_any_backbone(script, backbone, root))
    return {name: sorted(map(str, files)) for name, files in union.items()}


def check(root: Path = REPO) -> dict[str, dict[str, list[str]]]:
    """Per resolved stage: {'missing': [...], 'extra': [...]} (extra: a code dep no matrix item of the same
    stage template imports). Uses dvc's own resolution of dvc.yaml (matrix, ${...})."""
    import yaml
    from dvc.repo import Repo

    params = yaml.safe_load((root / "params.yaml").read_text())
    with Repo(str(root)) as repo:
        stages = [(s.name, s.cmd, [Path(d.def_path) for d in s.deps]) for s in repo.index.stages]
    report: dict[str, dict[str, list[str]]] = {}
    union: dict[str, set[Path]] = {}
    runs = []
    for name, cmd, deps in stages:
        script, backbone = stage_backbone(cmd, params)
        code = closure(script, backbone, root) - {REGISTRY_FILE}
        union.setdefault(name.split("@")[0], set()).update(_any_backbone(script, backbone, root))
        runs.append((name, deps, code))
    for name, deps, code in runs:
        template = union[name.split("@")[0]]
        code_deps = [d for d in deps if d.parts[0] in ("src", "pipeline")]
        report[name] = {
            "missing": sorted(str(p) for p in code if not covered(p, deps)),
            "extra": sorted(str(d) for d in code_deps if not _used(d, template, root)),
        }
    return report


def registry_is_data(root: Path = REPO) -> bool:
    """The registry file holds a docstring and one dict of string literals, nothing that runs."""
    tree = ast.parse((root / REGISTRY_FILE).read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], (ast.Assign, ast.AnnAssign)) or not isinstance(body[0].value, ast.Dict):
        return False
    d = body[0].value
    return all(isinstance(x, ast.Constant) and isinstance(x.value, str) for x in [*d.keys, *d.values])


def main() -> int:
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPO
    if "--templates" in sys.argv:
        for name, files in template_deps(REPO).items():
            print(name, *files, sep="\n  ")
        return 0
    bad = 0
    for name, found in check(root).items():
        for kind in ("missing", "extra"):
            for path in found[kind]:
                print(f"{name}: {kind} {path}")
                bad += kind == "missing"
    print(f"{bad} missing code deps")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
