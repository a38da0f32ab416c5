"""Reliability guarantees of the pipeline, each proved by a test that fails when the guarantee breaks:

1. determinism: the same seed gives byte-identical metrics (and score matrices) on CPU, another seed others;
2. idempotence: touching one stage script re-runs only that stage and what depends on it (the plain "second
   repro runs nothing" is test_pipeline_e2e's);
3. interruption: a training stage killed by SIGINT or SIGKILL leaves no output file, and then runs cleanly;
4. params: one schema, checked at the start of every stage, names any unknown key by its full path;
5. safe loading: nothing in src/ or pipeline/ unpickles; checkpoints are refused on a config mismatch.
Hostile inputs and the download rules (6, 7) are in test_hostile_inputs.py.

The tiny study runs on CPU with one thread per process, to stay light beside other work; it is the session's
`built_study` (conftest: all four backbones, one `dvc repro`, shared with test_pipeline_e2e), copied here.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import (BACKGROUND, REPO, STUDY_BACKBONES, STUDY_ENV, background_fixture, copy_study, leftovers,
                      load_script, ran_stages, run_cmd, tiny_params)
from globaldiff import ConfigError
from globaldiff.backbones import REGISTRY
from globaldiff.backbones.base import backbone_class
from globaldiff.ingest.loaders import LOADERS
from globaldiff.run.backbone import load_backbone, new_backbone
from globaldiff.io import load_npy, load_torch, save_torch
from globaldiff.config.schema import LOADER_KEYS, OPTIONAL, SCHEMA, TRAIN_KEYS, TRAIN_OPTIONAL, check_schema, model_options
from globaldiff.config.params import load_params, read_params, validate
from globaldiff.run.backbone import BackboneTraining
from globaldiff.run.diffusion import DiffusionTraining, Inference

ENV = STUDY_ENV  # CPU, one thread a stage: the environment the shared study was built in
RUN = ("--dataset", "custom", "--backbone", "sasrec")
METRICS = "reports/metrics/custom/sasrec/seed{}.json"
SCORES = "scores/custom/sasrec/seed{}"


def stage(repo: Path, script: str, *args: str, env: dict | None = None) -> str:
    """Run pipeline/<script>.py in `repo` as dvc would (a fresh process, from the repo root)."""
    return run_cmd([sys.executable, f"pipeline/{script}.py", *args], repo, {**ENV, **(env or {})})


IN_ONE_PROCESS = """
import importlib.util, sys
for line in sys.argv[1:]:
    script, *args = line.split()
    spec = importlib.util.spec_from_file_location(f"pipeline_{script}", f"pipeline/{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.argv = [f"pipeline/{script}.py", *args]
    print(f"--- {line}", flush=True)
    if hasattr(module, "run_stage"):
        module.run_stage(module.main)          # exits 1 on a ConfigError, as the script does
    elif module.main(args) != 0:
        sys.exit(f"{line}: failed")
"""


def stages_in_one_process(repo: Path, *lines: str, env: dict | None = None) -> str:
    """Run pipeline/<script>.py <args> for each line, in turn, in one fresh process (from the repo root): one
    torch import for them all, and each stage runs after others in the same interpreter."""
    return run_cmd([sys.executable, "-c", IN_ONE_PROCESS, *lines], repo, {**ENV, **(env or {})})


@pytest.fixture(scope="module")
def study(built_study, tmp_path_factory) -> Path:
    """The tiny study (custom data, sasrec among the four backbones, seed 0) after one `dvc repro` (a copy)."""
    repo, first_repro = built_study
    assert "summary" in ran_stages(first_repro)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["backbones"]["sasrec"] == tiny_params()["backbones"]["sasrec"]  # the sasrec runs are tiny_params'
    return copy_study(repo, tmp_path_factory.mktemp("study") / "repo")


def copy_inputs(study: Path, dest: Path, *folders: str, params: dict | None = None) -> Path:
    """A plain folder (no git, no dvc) with the study's params and the given folders."""
    dest.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        shutil.copytree(study / folder, dest / folder)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False) if params else
                                      (study / "params.yaml").read_text())
    return dest


# --- 1. determinism ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_results(study, tmp_path):
    # A second run of every stage, outside dvc, in another process with another hash seed (set and dict
    # order must not leak into results), against the dvc run's files. The stages run in turn in that one
    # process, so a stage must not depend on what ran before it in the interpreter either (global RNG
    # state, caches), which separate fresh processes could not show.
    params = yaml.safe_load((study / "params.yaml").read_text())
    params["study"].update(backbones=["sasrec"], seeds=[0, 1])     # what evaluate (every run at once) reads
    again = copy_inputs(study, tmp_path / "again", "pipeline", "data/custom", params=params)
    lines = ["download --dataset custom", "preprocess --dataset custom", "similarity --dataset custom"]
    lines += [f"{script} {' '.join(RUN)} --seed {seed}"
              for seed in (0, 1) for script in ("train_backbone", "train_diffusion", "opinions")]
    lines += ["evaluate"]
    stages_in_one_process(again, *lines, env={"PYTHONHASHSEED": "12345"})

    assert (again / METRICS.format(0)).read_bytes() == (study / METRICS.format(0)).read_bytes()
    for name in ("val_logits", "val_x0", "test_logits", "test_x0"):
        assert (again / SCORES.format(0) / f"{name}.npy").read_bytes() == \
            (study / SCORES.format(0) / f"{name}.npy").read_bytes(), name

    zero, one = (json.loads((again / METRICS.format(s)).read_text()) for s in (0, 1))
    assert (zero["seed"], one["seed"]) == (0, 1)
    assert (zero["val"], zero["test"]) != (one["val"], one["test"])
    assert not np.array_equal(load_npy(again / SCORES.format(0) / "test_x0.npy"),
                              load_npy(again / SCORES.format(1) / "test_x0.npy"))


# --- 2. idempotence ------------------------------------------------------------------------------------------

EVALUATE = {"evaluate"}  # the one stage that runs evaluate.py (every run of the study)
DOWNSTREAM_OF_EVALUATE = EVALUATE | {"summary"}


@background_fixture("built_study")
def touched_evaluate(tmp: Path, built_study) -> tuple[str, str, str]:
    """On a copy of the study: pipeline/evaluate.py touched, then `dvc repro`, `dvc repro`, `dvc status` (their
    outputs); a background job from the start of the session."""
    repo = copy_study(built_study[0], tmp / "repo")
    script = repo / "pipeline" / "evaluate.py"
    script.write_text(script.read_text() + "# a comment: the script's hash changes, its behaviour does not\n")
    def dvc(*args: str) -> str:
        return BACKGROUND.run([sys.executable, "-m", "dvc", *args], repo, ENV)
    return dvc("repro"), dvc("repro"), dvc("status")


@pytest.mark.slow
def test_touched_script_reruns_only_its_stage_and_dependants(touched_evaluate):
    first, second, status = touched_evaluate
    ran = ran_stages(first)
    assert EVALUATE <= ran
    assert ran <= DOWNSTREAM_OF_EVALUATE, f"upstream stages re-ran: {sorted(ran - DOWNSTREAM_OF_EVALUATE)}"
    assert ran_stages(second) == set()
    assert "up to date" in status


# --- 3. interruption -------------------------------------------------------------------------------------

def start_training(repo: Path) -> tuple[subprocess.Popen, queue.Queue]:
    """Start train_backbone.py for seed 0; a thread forwards its output lines to the returned queue."""
    proc = subprocess.Popen([sys.executable, "pipeline/train_backbone.py", *RUN, "--seed", "0"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **ENV, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return proc, lines


# A hang guard, not a timing: wait() returns as soon as the process exits. Generous, because on a loaded
# 2-core machine a signal is handled only after the torch op under way, and CI once timed out at 60 s.
HANG_S = 300


def wait_for(lines: queue.Queue, pattern: str, proc: subprocess.Popen, timeout: float = HANG_S) -> None:
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            assert proc.poll() is None, f"exited early with {proc.returncode}:\n{''.join(seen)}"
            continue
        seen.append(line)
        if re.match(pattern, line):
            return
    raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n{''.join(seen)}")


@pytest.mark.slow
def test_killed_training_leaves_nothing_then_runs_cleanly(study, tmp_path):
    params = tiny_params()
    params["backbones"]["sasrec"]["train"].update({"epochs": 100_000, "patience": 100_000})  # never ends alone
    repo = copy_inputs(study, tmp_path / "kill", "pipeline", "data/processed", params=params)
    run = repo / "models/custom/sasrec/seed0"
    for sig in (signal.SIGINT, signal.SIGKILL):
        proc, lines = start_training(repo)
        try:
            wait_for(lines, r"epoch=\d+ ", proc)  # training has started: a logged epoch
            proc.send_signal(sig)
            assert proc.wait(timeout=HANG_S) != 0, sig
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # Neither backbone.pt nor anything beside it (a temporary, a curve) that dvc could take as the output.
        assert leftovers(run) == [], (sig, leftovers(run))

    params["backbones"]["sasrec"]["train"].update({"epochs": 2, "patience": 1})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage(repo, "train_backbone", *RUN, "--seed", "0")
    assert leftovers(run) == ["backbone.pt", "backbone_curve.csv"]
    assert set(load_torch(run / "backbone.pt")) == {"config", "state_dict"}


SLOW_WRITER = """
import sys, time, torch
from globaldiff import io

def slow_save(obj, f):  # half a checkpoint, then a long pause: the kill lands mid-write
    with open(f, "wb") as out:
        out.write(b"PK\\x03\\x04 half a checkpoint")
        out.flush()
        print("writing", flush=True)
        time.sleep(120)

torch.save = slow_save
io.save_torch(sys.argv[1], {"w": torch.zeros(3)})
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_write_killed_midway_keeps_the_old_file(tmp_path, sig):
    final = tmp_path / "backbone.pt"
    save_torch(final, {"w": torch.ones(2)})
    old = final.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(final)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(sig)
        assert proc.wait(timeout=HANG_S) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert final.read_bytes() == old  # never half-written under the final name
    stale = [p for p in tmp_path.iterdir() if p != final]
    # Ctrl-C cleans up at once; SIGKILL cannot, and the next write of the same path removes what it left.
    assert len(stale) == (0 if sig == signal.SIGINT else 1), stale
    save_torch(final, {"w": torch.zeros(4)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backbone.pt"]
    assert torch.equal(load_torch(final)["w"], torch.zeros(4))



def validate_all(params: dict) -> dict:
    """validate, with every registered backbone's model options checked (a model stage checks its own)."""
    return validate(params, {name: backbone_class(name) for name in REGISTRY})


# --- 4. params: one schema, at the start of every stage ------------------------------------------------------

@pytest.fixture
def committed() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_committed_params_pass_both_checks(committed):
    assert load_params(REPO / "params.yaml") == committed
    assert read_params(REPO / "params.yaml") == committed
    validate_all(tiny_params())


def set_key(params: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value
    return params


@pytest.mark.parametrize("dotted", [
    "gama", "diffusion.zeta_typo", "backbones.sasrec.model.hiden", "backbones.sasrec.train.epoch",
    "backbones.sasrec.optimizer", "similarity.methd", "study.seed", "inference.temperature", "eval.exclud",
    "datasets.ml-1m.sep",                        # a custom-loader key on another loader
    "datasets.custom.columns.usr", "datasets.kuairec.positive.colum", "datasets.ml-1m.sources.embedded.sha",
])
def test_unknown_key_anywhere_is_named_by_its_path(committed, dotted):
    params = set_key(committed, dotted, 1)
    with pytest.raises(ConfigError, match=rf"unknown key '{re.escape(dotted)}'"):
        validate_all(params)
    if not dotted.startswith("backbones.sasrec.model"):  # model options need the registry: model stages only
        with pytest.raises(ConfigError, match=rf"unknown key '{re.escape(dotted)}'"):
            check_schema(params)  # what the data stages run (read_params)


def test_unregistered_backbone_entry_is_refused(committed):
    committed["backbones"]["nextitnet"] = copy.deepcopy(committed["backbones"]["sasrec"])
    with pytest.raises(ConfigError, match=r"unknown key 'backbones.nextitnet' \(not a registered backbone"):
        validate_all(committed)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_backbone_options_follow_the_constructor(committed, name):
    options = model_options(backbone_class(name))
    assert "num_items" not in options and "max_len" not in options
    model = committed["backbones"].get(name, {}).get("model") or \
        {k: p.default for k, p in options.items() if p.default is not inspect.Parameter.empty}
    committed["backbones"][name] = {"model": dict(model), "train": dict(committed["backbones"]["sasrec"]["train"])}
    committed["study"]["backbones"] = [name]
    committed["ablations"]["backbone"] = name
    validate_all(committed)
    backbone_class(name)(num_items=5, max_len=4, **model)  # what validation accepts, the class accepts
    committed["backbones"][name]["model"]["hiden"] = 64
    with pytest.raises(ConfigError, match=rf"unknown key 'backbones.{name}.model.hiden'.*did you mean 'hidden'"):
        validate_all(committed)


def test_backbone_option_types_and_train_keys(committed):
    committed["backbones"]["sasrec"]["model"]["hidden"] = "64"
    with pytest.raises(ConfigError, match=r"backbones.sasrec.model.hidden = '64'"):
        validate_all(committed)
    assert set(TRAIN_KEYS) == {"epochs", "patience", "batch_size", "lr", "stride", "weight_decay", "select_metric",
                               "lr_step", "lr_decay"}
    # Every training option the code can take is known to the schema (nothing is refused that would work).
    assert {f.name for f in dataclasses.fields(BackboneTraining)} - {"exclude"} <= set(TRAIN_KEYS)
    assert {f.name for f in dataclasses.fields(DiffusionTraining)} - {"norm", "exclude"} <= set(SCHEMA["diffusion"])
    assert {f.name for f in dataclasses.fields(Inference)} <= set(SCHEMA["inference"])


@pytest.mark.parametrize("cls, section, optional", [
    (BackboneTraining, "backbones.<name>.train", TRAIN_OPTIONAL),
    (DiffusionTraining, "diffusion", {k.split(".", 1)[1] for k in OPTIONAL if k.startswith("diffusion.")}),
    (Inference, "inference", {k.split(".", 1)[1] for k in OPTIONAL if k.startswith("inference.")}),
])
def test_each_default_lives_in_one_place(cls, section, optional):
    # A field with a default in code is a key params may leave out; a key params must give has no code default,
    # so params.yaml and the code can never disagree on it.
    with_default = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    assert with_default == optional, section
    assert set(LOADER_KEYS) == set(LOADERS)


@pytest.mark.parametrize("dotted, value, words", [
    ("backbones.sasrec.train.lr", 0, "backbones.sasrec.train.lr = 0"),
    ("backbones.sasrec.train.epochs", 2.5, "backbones.sasrec.train.epochs = 2.5: expected an integer"),
    ("study.seeds", [0, "1"], "study.seeds[1] = '1'"),
    ("datasets.custom.header", "yes", "datasets.custom.header = 'yes': expected true or false"),
    ("datasets.ml-1m.sources.embedded.sha256", "abc", "datasets.ml-1m.sources.embedded.sha256"),
    ("datasets.beauty.loader", "amazon", "datasets.beauty.loader = 'amazon'"),
    ("denoiser.dropout", 1.5, "denoiser.dropout = 1.5"),
    ("inference.noise", "no", "inference.noise = 'no'"),
    ("diffusion", [1, 2], "diffusion: expected a mapping"),
])
def test_bad_values_are_named(committed, dotted, value, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        validate_all(set_key(committed, dotted, value))


STAGES = {  # stage -> its arguments (as in dvc.yaml)
    "download": ["--dataset", "custom"], "preprocess": ["--dataset", "custom"], "similarity": ["--dataset", "custom"],
    "train_backbone": [*RUN, "--seed", "0"], "train_diffusion": [*RUN, "--seed", "0"],
    "opinions": [*RUN, "--seed", "0"], "evaluate": [], "summary": [],
}


def run_stage_in_process(stage_name: str, monkeypatch) -> int:
    """Run one stage script in this process (cwd = the test's folder); its exit status."""
    module = load_script(stage_name)
    monkeypatch.setattr(sys, "argv", [f"pipeline/{stage_name}.py", *STAGES[stage_name]])
    if hasattr(module, "run_stage"):
        with pytest.raises(SystemExit) as exit_:
            module.run_stage(module.main)
        return exit_.value.code
    return module.main(STAGES[stage_name])


@pytest.mark.parametrize("stage_name", sorted(STAGES))
def test_every_stage_checks_params_first(stage_name, workdir, monkeypatch, capsys):
    # No input data at all: the stage must fail on params.yaml before it looks for anything else.
    (workdir / "params.yaml").write_text(yaml.safe_dump({**tiny_params(), "gama": 0.5}))
    assert run_stage_in_process(stage_name, monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: params.yaml: unknown key 'gama' (did you mean 'gamma'?)"), err
    assert leftovers(workdir) == ["params.yaml"]


@pytest.mark.parametrize("stage_name", ["train_backbone", "train_diffusion"])  # the stages that build a model
def test_model_stages_check_backbone_options_first(stage_name, workdir, monkeypatch, capsys):
    params = tiny_params()
    params["backbones"]["sasrec"]["model"]["hiden"] = 8
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage_in_process(stage_name, monkeypatch) == 1
    assert "unknown key 'backbones.sasrec.model.hiden'" in capsys.readouterr().err


# --- 5. safe loading ---------------------------------------------------------------------------------------

UNSAFE = [  # (what, regex over a whole file)
    ("pickle-based module", re.compile(r"^\s*(import|from)\s+(c?pickle|dill|joblib|shelve|marshal|cloudpickle)\b", re.M)),
    ("pickle call", re.compile(r"\b(c?pickle|dill|joblib|cloudpickle)\s*\.\s*\w+")),
    ("pandas pickle", re.compile(r"\.(read|to)_pickle\s*\(")),
    ("allow_pickle=True", re.compile(r"allow_pickle\s*=\s*True")),
    ("unsafe yaml", re.compile(r"\byaml\s*\.\s*(load|full_load|unsafe_load|load_all|unsafe_load_all)\s*\(")),
]
CALLS = [("torch.load", re.compile(r"\btorch\s*\.\s*load\s*\("), re.compile(r"weights_only\s*=\s*True")),
         ("np.load", re.compile(r"\b(np|numpy)\s*\.\s*load\s*\("), re.compile(r"allow_pickle\s*=\s*False"))]


def call_arguments(text: str, open_paren: int) -> str:
    """The text between a call's parentheses (balanced), starting at the index of its '('."""
    depth = 0
    for i in range(open_paren, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_paren + 1:i]
    return text[open_paren + 1:]


def unsafe_loads(text: str) -> list[str]:
    found = [what for what, pattern in UNSAFE if pattern.search(text)]
    for what, call, required in CALLS:
        for m in call.finditer(text):
            if not required.search(call_arguments(text, m.end() - 1)):
                found.append(f"{what} without {required.pattern}")
    return found


def test_unsafe_load_scanner_catches_each_pattern():
    for bad in ["import pickle", "from joblib import load", "x = pickle.loads(b)", "df = pd.read_pickle(p)",
                "np.load(p, allow_pickle=True)", "np.load(p)", "torch.load(p, map_location='cpu')",
                "torch.load(p, weights_only=False)", "yaml.load(f)", "numpy.load(\n  p,\n)"]:
        assert unsafe_loads(bad), bad
    for good in ["np.load(p, allow_pickle=False)", "torch.load(p, map_location=m, weights_only=True)",
                 "yaml.safe_load(f)", "# nothing is unpickled", "np.save(f, a, allow_pickle=False)"]:
        assert not unsafe_loads(good), good


def test_no_unsafe_loading_in_src_and_pipeline():
    files = sorted([*(REPO / "src").rglob("*.py"), *(REPO / "pipeline").rglob("*.py")])
    assert len(files) > 10
    found = {str(f.relative_to(REPO)): bad for f in files if (bad := unsafe_loads(f.read_text()))}
    assert found == {}


class NotAWeight:
    """A class outside torch's allow-list: rebuilding it from a checkpoint could run arbitrary code."""


def test_checkpoint_loading_refuses_unsafe_and_damaged_files(tmp_path):
    torch.save({"state_dict": NotAWeight()}, tmp_path / "object.pt")
    with pytest.raises(ConfigError, match="object.pt: not a readable checkpoint"):
        load_torch(tmp_path / "object.pt")
    save_torch(tmp_path / "good.pt", {"w": torch.ones(3)})
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:40])
    with pytest.raises(ConfigError, match="cut.pt: not a readable checkpoint"):
        load_torch(tmp_path / "cut.pt")
    np.save(tmp_path / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigError, match="object.npy: not a readable numeric .npy array"):
        load_npy(tmp_path / "object.npy")


def test_backbone_checkpoint_refused_on_item_count_or_config_mismatch():
    params = tiny_params()
    checkpoint = {"config": new_backbone(params, "sasrec", 30).config(),
                  "state_dict": new_backbone(params, "sasrec", 30).state_dict()}
    assert checkpoint["config"]["num_items"] == 30 and checkpoint["config"]["hidden"] == 8
    load_backbone(params, "sasrec", checkpoint, 30, "backbone.pt")  # the matching run loads it
    with pytest.raises(ConfigError, match=r"backbone.pt: checkpoint config .*'num_items': 30.* does not match .*'num_items': 31"):
        load_backbone(params, "sasrec", checkpoint, 31, "backbone.pt")  # another dataset's item count
    other = copy.deepcopy(params)
    other["backbones"]["sasrec"]["model"]["hidden"] = 16
    with pytest.raises(ConfigError, match=r"'hidden': 8.* does not match .*'hidden': 16"):
        load_backbone(other, "sasrec", checkpoint, 30, "backbone.pt")  # changed params
    with pytest.raises(ConfigError, match=r"'max_len': 10.* does not match .*'max_len': 20"):
        load_backbone(params | {"max_len": 20}, "sasrec", checkpoint, 30, "backbone.pt")  # another window
