"""The device runner (tools/device/): its plan against dvc's own resolution of dvc.yaml, its scheduling (-j, a
timeout's tracebacks, failures, dvc's output removal), the folder hash against `dvc add`, and one run end to end
on the tiny custom dataset with the paper-scale profile applied, shrunk for time."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import REPO, tiny_params, write_interactions

sys.path.insert(0, str(REPO / "tools" / "device"))

import dirhash  # noqa: E402
import plan as planner  # noqa: E402

RUNNER = REPO / "tools" / "device" / "runner.py"
PROFILE = REPO / "profiles" / "paper-scale.yaml"


# --- dvc's own view ----------------------------------------------------------------------------------------------

def dvc_view(root: Path, targets: list[str] | None = None) -> dict:
    """Names, commands, deps, outs, edges and run order as dvc 3 resolves and plans them (its index and
    reproduce.plan_repro, what `dvc repro` runs)."""
    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        nodes = list(graph.nodes)
        view = {
            "cmd": {s.name: s.cmd for s in nodes},
            "deps": {s.name: [d.def_path for d in s.deps if d.def_path != "params.yaml"] for s in nodes},
            "outs": {s.name: [o.def_path for o in s.outs] for s in nodes},
            "edges": {(a.name, b.name) for a, b in graph.edges},
            "order": [s.name for s in plan_repro(get_active_graph(graph), collect_stages(repo, [str(root / "dvc.yaml")]))],
        }
        if targets:
            stages = collect_stages(repo, [f"{root / 'dvc.yaml'}:{t}" for t in targets])
            view["selected"] = [s.name for s in plan_repro(get_active_graph(graph), stages)]
    return view


def no_scm_repo(root: Path, dvc_yaml: str | dict, params: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    text = dvc_yaml if isinstance(dvc_yaml, str) else yaml.safe_dump(dvc_yaml, sort_keys=False)
    (root / "dvc.yaml").write_text(text)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".dvc").mkdir(exist_ok=True)
    (root / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    return root


def assert_same_as_dvc(plan: planner.Plan, view: dict) -> None:
    assert set(plan.stages) == set(view["cmd"])
    for name, stage in plan.stages.items():
        dvc_cmd = view["cmd"][name]
        assert stage.cmd == (dvc_cmd if isinstance(dvc_cmd, list) else dvc_cmd.splitlines()), name
        assert stage.deps == view["deps"][name], name
        assert [o.path for o in stage.outs] == view["outs"][name], name
    assert plan.edges() == view["edges"]
    assert plan.order() == view["order"]            # the exact order `dvc repro` runs the stages in


def test_plan_of_the_committed_dvc_yaml_is_dvcs():
    plan = planner.load(REPO)
    view = dvc_view(REPO)
    assert_same_as_dvc(plan, view)
    assert len(plan.stages) >= 30 and len(plan.edges()) >= 100
    print(f"committed dvc.yaml: {len(plan.stages)} stages, {len(plan.edges())} edges, the same as dvc's")


def test_plan_matches_dvc_with_other_params(tmp_path):
    """The committed dvc.yaml on other matrix values: two datasets, two backbones, two seeds, variants."""
    params = tiny_params()
    params["study"] = {"datasets": ["custom", "ml-100k"], "backbones": ["cbit", "srgnn"], "seeds": [3, 1]}
    params["ablations"].update({"backbone": "cbit", "seeds": [1], "run": ["unet", "T3"]})
    params["longterm"]["seeds"] = [0, 2]
    root = no_scm_repo(tmp_path / "r", (REPO / "dvc.yaml").read_text(), params)
    plan = planner.load(root)
    assert_same_as_dvc(plan, dvc_view(root))
    assert "train_backbone@ml-100k-srgnn-3" in plan.stages and "ablation@unet-1" in plan.stages


SYNTHETIC = """
stages:
  make:
    matrix:
      n: ${nums}
      flag: [true, false]
    cmd: python -c "print(${item.n})" --flag=${item.flag}
    outs:
      - out/${item.n}-${item.flag}.txt
  lists:
    matrix:
      cfg: ${cfgs}
    cmd: echo ${item.cfg.a} ${nums[1]}
    deps:
      - out
    outs:
      - lists/${item.cfg.a}
  multi:
    cmd:
      - echo one
      - echo two
    deps:
      - lists/x/file.txt
      - ${paths.first}
    metrics:
      - m.json:
          cache: false
    plots:
      - p.csv:
          x: a
    outs:
      - keep:
          persist: true
  text:
    frozen: true
    cmd: |-
      echo a
      echo b
    deps: [m.json, p.csv, keep/inner]
  after:
    cmd: echo \\${not_interpolated}
    deps: [lists]
"""


def test_plan_matches_dvc_on_the_constructs_it_resolves(tmp_path):
    params = {"nums": [1, 22], "cfgs": [{"a": "x"}, {"a": "y"}], "paths": {"first": "out/1-true.txt"}}
    root = no_scm_repo(tmp_path / "r", SYNTHETIC, params)
    plan = planner.load(root)
    view = dvc_view(root, targets=["multi"])
    assert_same_as_dvc(plan, view)
    assert {"make@1-true", "make@22-false", "lists@cfg0", "lists@cfg1"} <= set(plan.stages)
    assert plan.stages["make@22-false"].cmd == ['python -c "print(22)" --flag=false']
    assert plan.stages["after"].cmd == ["echo ${not_interpolated}"]
    assert plan.stages["text"].cmd == ["echo a", "echo b"] and plan.stages["text"].frozen
    selected = plan.order(plan.select(["multi"]))
    assert set(selected) == set(view["selected"])     # dvc's own order of a subset can follow a set's order
    for name in selected:
        assert all(selected.index(u) < selected.index(name) for u in plan.stages[name].upstream)


@pytest.mark.parametrize("text, message", [
    ("stages:\n  a:\n    foreach: [1]\n    do: {cmd: x}\n", "not supported"),
    ("vars: [a.yaml]\nstages:\n  a: {cmd: x}\n", "top-level"),
    ("stages:\n  a: {cmd: 'echo ${x}'}\n", "could not find 'x'"),
    ("stages:\n  a: {cmd: 'echo ${l}'}\n", "cannot interpolate"),
    ("stages:\n  a: {cmd: x, outs: [o]}\n  b: {cmd: y, outs: [o]}\n", "also an output"),
    ("stages:\n  a: {cmd: x, deps: [p], outs: [o]}\n  b: {cmd: y, deps: [o], outs: [p]}\n", "cycle"),
])
def test_plan_refuses_what_it_does_not_resolve_like_dvc(text, message):
    with pytest.raises(planner.PlanError, match=message):
        planner.Plan(yaml.safe_load(text), {"l": [1, 2]})


def test_select_names_templates_and_globs():
    plan = planner.load(REPO)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    dataset, backbone, seed = params["study"]["datasets"][0], params["study"]["backbones"][0], params["study"]["seeds"][0]
    name = f"train_backbone@{dataset}-{backbone}-{seed}"
    assert plan.order(plan.select([name])) == [f"download@{dataset}", f"preprocess@{dataset}", name]
    assert set(plan.select(["train_backbone"])) == {n for n in plan.stages if n.startswith("train_backbone@")}
    assert set(plan.select([f"opinions@*-{backbone}-*"])) == {n for n in plan.stages
                                                             if n.startswith("opinions@") and f"-{backbone}-" in n}
    assert plan.select(["evaluate"]) == ["evaluate"]            # one stage over every run of the study
    with pytest.raises(planner.PlanError, match="no stage matches"):
        plan.select(["nope@*"])


def test_dirhash_is_dvcs_hash_of_a_folder(tmp_path):
    folder = tmp_path / "r" / "f"
    for rel, data in {"a/1.txt": b"x", "empty": b"", "sub/crlf.txt": b"l1\r\nl2\n", "sub/deep/b.bin": bytes(range(256)) * 99,
                      "sub/\u00e9 \u00fc.txt": b"u", "sub-x": b"z", "sub.txt": b"b"}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    root = no_scm_repo(tmp_path / "r", "stages: {}\n", {})
    (root / "dvc.yaml").unlink()
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "f"], cwd=root, check=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    out = yaml.safe_load((root / "f.dvc").read_text())["outs"][0]
    assert dirhash.digest(str(folder)) == (out["md5"], out["size"], out["nfiles"])
    assert dirhash.digest(str(folder / "sub/crlf.txt"))[0] == __import__("hashlib").md5(b"l1\r\nl2\n").hexdigest()


# --- the runner on synthetic stages (no torch: fast) ---------------------------------------------------------

def run_runner(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    env.pop("OUT", None)
    return subprocess.run([sys.executable, str(RUNNER), "--repo", str(repo), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def timings(out: Path) -> dict[str, dict]:
    with open(out / "timings.tsv") as f:
        return {row["stage"]: row for row in csv.DictReader(f, delimiter="\t")}


def sleeper(seconds: float, out: str) -> str:
    return f"python -c \"import time, pathlib; time.sleep({seconds}); pathlib.Path('{out}').write_text('{out}')\""


def synthetic_repo(tmp_path: Path, stages: dict) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (root / "params.yaml").write_text("x: 1\n")
    return root


def test_j2_runs_independent_stages_together_and_waits_for_upstream(tmp_path):
    root = synthetic_repo(tmp_path, {
        "a": {"cmd": sleeper(1.5, "a.txt"), "outs": ["a.txt"]},
        "b": {"cmd": sleeper(1.5, "b.txt"), "outs": ["b.txt"]},
        "c": {"cmd": "python -c \"print(open('a.txt').read() + open('b.txt').read())\"", "deps": ["a.txt", "b.txt"],
              "metrics": [{"m.json": {"cache": False}}]},
    })
    result = run_runner(root, "--no-preflight", "-j", "2", "--cores", "4", "--out", str(tmp_path / "o"),
                        "--heartbeat-s", "0.5")
    assert result.returncode == 0, result.stdout + result.stderr
    t = timings(tmp_path / "o")
    end = {n: float(r["start_s"]) + float(r["wall_s"]) for n, r in t.items()}
    assert float(t["b"]["start_s"]) < end["a"] and float(t["a"]["start_s"]) < end["b"]      # together
    assert float(t["c"]["start_s"]) >= max(end["a"], end["b"]) - 0.05                       # after both
    assert {r["threads"] for r in t.values()} == {"2"} and {r["status"] for r in t.values()} == {"ok"}
    assert "[c] a.txtb.txt" in result.stdout and "[heartbeat +" in result.stdout
    assert (tmp_path / "o" / "run.log").read_text().count("[c] a.txtb.txt") == 1

    serial = run_runner(root, "--no-preflight", "-j", "1", "--out", str(tmp_path / "o1"))
    assert serial.returncode == 0
    t1 = timings(tmp_path / "o1")
    assert float(t1["b"]["start_s"]) >= float(t1["a"]["start_s"]) + float(t1["a"]["wall_s"]) - 0.05


def test_a_hung_stage_prints_every_threads_traceback_and_its_downstream_is_skipped(tmp_path):
    root = synthetic_repo(tmp_path, {
        "hang": {"cmd": "python hang.py", "outs": ["h.txt"]},
        "after": {"cmd": "python -c \"print('never')\"", "deps": ["h.txt"]},
    })
    (root / "hang.py").write_text(textwrap.dedent("""\
        import threading, time
        def worker_waits_forever():
            time.sleep(600)
        threading.Thread(target=worker_waits_forever, daemon=True).start()
        print("started", flush=True)
        time.sleep(600)
    """))
    result = run_runner(root, "--no-preflight", "--timeout-s", "3", "--kill-grace-s", "5", "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    log = (tmp_path / "o" / "run.log").read_text()
    assert "[hang] started" in log and "TIMEOUT hang" in log
    assert "Fatal Python error: Aborted" in log
    assert "in worker_waits_forever" in log and 'hang.py", line 6 in <module>' in log     # both threads' stacks
    t = timings(tmp_path / "o")
    assert t["hang"]["status"] == "timeout" and t["after"]["status"] == "skipped"
    assert float(t["hang"]["wall_s"]) < 15


def test_failure_stops_new_stages_unless_keep_going(tmp_path):
    stages = {"bad": {"cmd": "python -c \"raise SystemExit(3)\"", "outs": ["x"]},
              "other": {"cmd": "python -c \"print('other ran')\""},
              "down": {"cmd": "echo down", "deps": ["x"]}}
    root = synthetic_repo(tmp_path, stages)
    result = run_runner(root, "--no-preflight", "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    t = timings(tmp_path / "o")
    assert (t["bad"]["status"], t["bad"]["rc"], t["other"]["status"], t["down"]["status"]) == \
        ("failed", "3", "not_run", "skipped")
    result = run_runner(root, "--no-preflight", "--keep-going", "--out", str(tmp_path / "o2"))
    t = timings(tmp_path / "o2")
    assert result.returncode == 1 and t["other"]["status"] == "ok" and t["down"]["status"] == "skipped"


def test_stages_run_as_dvc_runs_them(tmp_path):
    """Outs removed before the command (persist kept), each cmd line in turn, DVC_STAGE set, python unbuffered."""
    root = synthetic_repo(tmp_path, {
        "s": {"cmd": "test ! -e out.txt && echo new > out.txt\necho $DVC_STAGE > stage.txt\n"
                     "python -c \"import faulthandler, sys; print('flags', faulthandler.is_enabled(), "
                     "sys.stdout.write_through)\"",
              "outs": ["out.txt", {"kept": {"persist": True}}, "stage.txt"]},
    })
    (root / "out.txt").write_text("old")
    (root / "kept").write_text("kept")
    result = run_runner(root, "--no-preflight", "--out", str(tmp_path / "o"), "--metrics", "combined")
    assert result.returncode == 0, result.stdout
    assert (root / "out.txt").read_text() == "new\n" and (root / "kept").read_text() == "kept"
    assert (root / "stage.txt").read_text() == "s\n"
    assert "[s] flags True True" in result.stdout                  # -X faulthandler, -u
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["metrics.json", "params.yaml", "run.log", "timings.tsv"]


def test_dry_prints_the_plan_and_overrides_need_write_params(tmp_path):
    root = synthetic_repo(tmp_path, {"a": {"cmd": "echo ${x}", "outs": ["a"]}, "b": {"cmd": "echo b", "deps": ["a"]}})
    before = sorted(p.name for p in root.iterdir())
    result = run_runner(root, "--dry", "--set", "x=5", "--only", "b", "--out", str(tmp_path / "o"))
    assert result.returncode == 0
    assert "1. a  <- -" in result.stdout and "2. b  <- a" in result.stdout and "$ echo 5" in result.stdout
    assert (root / "params.yaml").read_text() == "x: 1\n" and not (tmp_path / "o").exists()
    assert sorted(p.name for p in root.iterdir()) == before
    result = run_runner(root, "--no-preflight", "--set", "x=5", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "--write-params" in result.stdout
    assert (root / "params.yaml").read_text() == "x: 1\n"


def test_a_hanging_torch_import_is_reported_as_the_machines(tmp_path):
    fake = tmp_path / "fakepython"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    root = synthetic_repo(tmp_path, {"a": {"cmd": "echo a"}})
    result = run_runner(root, "--python", str(fake), "--preflight-timeout-s", "1.5", "--out", str(tmp_path / "o"))
    assert result.returncode == 3
    assert "step 1 FAILED" in result.stdout and "HANG in the import itself" in result.stdout
    assert "step 1b" in result.stdout and "START a" not in result.stdout


# --- end to end: the real stages on the tiny custom dataset, paper-scale profile, shrunk ------------------------

SHRINK = ["study.datasets=[custom]", "study.backbones=[cbit]", "study.seeds=[0]", "backbones.cbit.train.epochs=1",
          "diffusion.epochs=1", "diffusion.eval_every=1", "ablations.run=[]", "longterm.seeds=[]"]


def tiny_copy(root: Path) -> Path:
    """The repo's code and dvc.yaml with the tiny params and data, as tests/conftest.make_tiny_repo, no git/dvc."""
    for folder in ("pipeline", "src", "data/paper"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    write_interactions(root / "data/custom/interactions.csv")
    return root


@pytest.mark.slow
def test_runner_end_to_end_on_the_tiny_study_with_the_paper_scale_profile(tmp_path):
    root = tiny_copy(tmp_path / "repo")
    out = tmp_path / "out"
    args = ["--profile", str(PROFILE), *[a for s in SHRINK for a in ("--set", s)], "--write-params", "--out", str(out),
            "--device", "cpu", "--heartbeat-s", "10"]
    result = run_runner(root, *args, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "step 1 OK" in result.stdout and "[versions] torch" in result.stdout
    params = yaml.safe_load((root / "params.yaml").read_text())
    cbit = params["backbones"]["cbit"]
    assert (cbit["model"]["hidden"], cbit["model"]["heads"], cbit["train"]["lr_step"], cbit["train"]["epochs"]) == \
        (256, 4, 15, 1)
    assert yaml.safe_load((out / "params.yaml").read_text()) == params
    t = timings(out)
    expected = ["download@custom", "preprocess@custom", "similarity@custom", "train_backbone@custom-cbit-0",
                "train_diffusion@custom-cbit-0", "opinions@custom-cbit-0", "evaluate", "fusion_sweep@custom-cbit-0", "summary"]
    assert list(t) == expected and {r["status"] for r in t.values()} == {"ok"}
    plan = planner.Plan(yaml.safe_load((root / "dvc.yaml").read_text()), params)
    for name in expected:                       # every stage started after each of its upstream stages ended
        for up in plan.stages[name].upstream:
            assert float(t[name]["start_s"]) >= float(t[up]["start_s"]) + float(t[up]["wall_s"]) - 0.05
    metrics = json.loads((out / "metrics.json").read_text())
    evaluation = metrics["reports/metrics/custom/cbit/seed0.json"]
    assert set(evaluation["test"]) >= {"backbone", "diffusion", "fusion"}
    assert "reports/results.json" in metrics and "sweeps/custom/cbit/seed0/sweep.json" in metrics
    assert "lr" in metrics["models/custom/cbit/seed0/backbone_curve.csv"].splitlines()[0]
    assert (out / "metrics" / "reports_metrics_custom_cbit_seed0.json").is_file()
    print("stage wall times (s):", {n: float(r["wall_s"]) for n, r in t.items()})


def test_the_device_smoke_step_runs_against_the_current_library(tmp_path):
    """tools/device/smoke.py (part a of the device script) on the CPU at toy sizes: the same code path as on CUDA."""
    out = tmp_path / "smoke.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, str(REPO / "tools/device/smoke.py"), "--device", "cpu", "--profile",
                             str(PROFILE), "--backbones", "sasrec,cbit", "--precisions", "fp32", "--items", "30",
                             "--batch", "8", "--steps", "1", "--warmup", "1", "--users", "16", "--json", str(out)],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["backbones"]["cbit"]["model"]["hidden"] == 256
    for name in ("sasrec", "cbit"):
        entry = report["backbones"][name]
        assert entry["fp32"]["ms_per_step"] > 0 and entry["denoiser_unet_ms_per_step"] > 0


def test_the_prepared_device_script_parses():
    result = subprocess.run(["bash", "-n", str(REPO / "tools/device/device_check.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_stage_limits_by_pattern_and_the_budget(tmp_path):
    root = synthetic_repo(tmp_path, {"slow": {"cmd": "python -c \"import time; time.sleep(30)\"", "outs": ["s"]},
                                     "quick": {"cmd": "echo quick"}})
    result = run_runner(root, "--no-preflight", "--keep-going", "--stage-timeout", "sl*=1", "--kill-grace-s", "2",
                        "--out", str(tmp_path / "o"))
    t = timings(tmp_path / "o")
    assert result.returncode == 1 and t["slow"]["status"] == "timeout" and t["slow"]["limit_s"] == "1"
    assert t["quick"]["status"] == "ok" and t["quick"]["limit_s"] == "600"
    result = run_runner(root, "--no-preflight", "--budget-s", "10", "--min-stage-s", "20", "--out", str(tmp_path / "b"))
    assert result.returncode == 1 and {r["status"] for r in timings(tmp_path / "b").values()} == {"skipped_budget"}
