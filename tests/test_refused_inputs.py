"""Bad inputs a hostile-input probe once got through, each now refused by the stage that reads it: one `error:`
line naming the file (or key, URL) and what was expected, and no output or metric left behind.

1. NaN/inf in a score matrix (written by train_diffusion, read by opinions and fusion_sweep) or in the opinions
   stage's arrays (read by evaluate), and those arrays misshaped or missing;
2. NaN weights in a checkpoint;
3. an edit to a custom dataset's local file (the download stage depends on data/custom; a changed file is
   refused until its new checksum is recorded, as the message says);
4. duplicate interaction rows (params datasets.<name>.duplicates; their count in stats.json);
5. sources without a size limit (file:/dev/zero, an endless HTTP body, a .gz bomb): params `limits`;
6. NaN/inf and out-of-range params, model options included;
7. datasets.<name>.file outside data/raw/<name>;
8. torch.load failures: the real reason, never the advice to load with weights_only=False;
9. %00 in a URL, a checkpoint without a fitting state_dict, a malformed similarity.pt;
10. io.atomic_path's leftover temporaries are ignored by dvc (.dvcignore).
"""

from __future__ import annotations

import copy
import gzip
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import (REPO, entry, leftovers, load_script, make_tiny_repo, tiny_params, write_interactions,
                      write_params, zip_bytes)
from globaldiff import ConfigError, paths
from globaldiff.backbones import REGISTRY
from globaldiff.backbones.base import backbone_class
from globaldiff.config.params import validate
from globaldiff.config.schema import MODEL_RANGES, check_schema, model_options
from globaldiff.data.sequences import read_split
from globaldiff.diffusion.similarity import ItemSimilarity, build_similarity
from globaldiff.ingest import download as dl
from globaldiff.ingest.loaders import load
from globaldiff.ingest.preprocess import build, read_filters
from globaldiff.io import load_npy, load_torch, save_npy, save_torch
from globaldiff.run.backbone import load_backbone, new_backbone

RUN = ["--dataset", "custom", "--backbone", "sasrec", "--seed", "0"]
SCORES = Path("scores/custom/sasrec/seed0")
MODEL = Path("models/custom/sasrec/seed0")
STAGE_OUTPUTS = {  # what each model-side stage writes: none of it may exist after a refusal
    "train_diffusion": [SCORES, MODEL / "diffusion.pt", MODEL / "diffusion_curve.csv"],
    "opinions": [Path("opinions")],
    "evaluate": [Path("ranks"), Path("reports")],
    "fusion_sweep": [Path("sweeps")],
}


def stage(name: str, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run pipeline/<name>.py in this process (cwd: the test's folder): (exit status, stderr)."""
    module = load_script(name)
    return run_module(module, name, argv, monkeypatch, capsys)


def run_module(module, name: str, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", [f"pipeline/{name}.py", *argv])
    if not hasattr(module, "run_stage"):  # the data stages: main(argv) -> exit status
        rc = module.main(argv)
    else:
        try:
            module.run_stage(module.main)
            rc = 0
        except SystemExit as e:
            rc = e.code
    return rc, capsys.readouterr().err


def refused(rc: int, err: str, *words: str) -> None:
    """A refusal: exit 1 and one `error:` line holding every word."""
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)


def nothing_written(stage_name: str, root: Path) -> None:
    for path in STAGE_OUTPUTS[stage_name]:
        assert not (root / path).exists(), path
    assert not [p for p in root.rglob("*.tmp")], "a temporary was left behind"


# --- a tiny study on disk: processed data, similarity, an untrained backbone, finite score matrices ----------

@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    params = tiny_params()
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_interactions(root / "data/custom/interactions.csv")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert load_script("download").main(["--dataset", "custom"]) == 0
        assert load_script("preprocess").main(["--dataset", "custom"]) == 0
        split = read_split(paths.processed("custom"), "loo")
        save_torch(paths.similarity("custom"),
                   build_similarity(split.train, split.num_items, **params["similarity"]).state_dict())
        torch.manual_seed(0)
        net = new_backbone(params, "sasrec", split.num_items)
        save_torch(MODEL / "backbone.pt", {"config": net.config(), "state_dict": net.state_dict()})
        rng = np.random.default_rng(0)
        users = len(split.test)
        for name in ("val_logits", "val_x0", "test_logits", "test_x0"):
            save_npy(SCORES / f"{name}.npy", rng.normal(size=(users, split.num_items + 1)).astype(np.float32))
    return root


@pytest.fixture
def work(study, tmp_path, monkeypatch) -> Path:
    """A copy of the tiny study, made the working directory."""
    root = tmp_path / "w"
    shutil.copytree(study, root)
    monkeypatch.chdir(root)
    return root


def poison(path: Path, value: float = float("nan")) -> None:
    """Write one non-finite value into a saved score matrix (np.save directly: save_npy would refuse)."""
    array = np.load(path, allow_pickle=False)
    array[1, 2] = value
    np.save(path, array, allow_pickle=False)


# --- 1. non-finite score matrices -------------------------------------------------------------------------------

def test_finite_scores_evaluate_then_nan_is_refused(work, monkeypatch, capsys):
    assert stage("opinions", RUN, monkeypatch, capsys)[0] == 0          # the control: finite matrices evaluate
    assert stage("evaluate", [], monkeypatch, capsys)[0] == 0
    for folder in ("opinions", "ranks", "reports"):
        shutil.rmtree(work / folder)
    poison(work / SCORES / "test_x0.npy")
    rc, err = stage("opinions", RUN, monkeypatch, capsys)
    refused(rc, err, f"{SCORES / 'test_x0.npy'}: holds 1 NaN or inf value(s)", "first at index (1, 2)")
    nothing_written("opinions", work)


OPINIONS = Path("opinions/custom/sasrec/seed0")


@pytest.mark.parametrize("name", ["test_diffusion", "val_backbone", "test_random"])
def test_evaluate_refuses_non_finite_opinions(work, monkeypatch, capsys, name):
    assert stage("opinions", RUN, monkeypatch, capsys)[0] == 0
    poison(work / OPINIONS / f"{name}.npy", float("inf"))
    rc, err = stage("evaluate", [], monkeypatch, capsys)
    refused(rc, err, f"{OPINIONS / name}.npy: holds 1 NaN or inf value(s)", "first at index (1, 2)")
    nothing_written("evaluate", work)


@pytest.mark.parametrize("name, array, words", [
    ("test_diffusion", np.zeros((3, 4), dtype=np.float32), "test_diffusion does not fit"),
    ("val_backbone", None, "val_backbone does not fit"),              # float64: not what the opinions stage writes
    ("test_ranks_backbone", np.ones(2, dtype=np.int64), "test_ranks_backbone does not fit"),
], ids=["shape", "dtype", "ranks"])
def test_evaluate_refuses_opinions_that_do_not_fit(work, monkeypatch, capsys, name, array, words):
    assert stage("opinions", RUN, monkeypatch, capsys)[0] == 0
    path = work / OPINIONS / f"{name}.npy"
    np.save(path, np.load(path).astype(np.float64) if array is None else array, allow_pickle=False)
    rc, err = stage("evaluate", [], monkeypatch, capsys)
    refused(rc, err, f"{OPINIONS}: {words}", "re-run the opinions stage")
    nothing_written("evaluate", work)


def test_evaluate_writes_no_run_when_a_later_run_is_refused(work, monkeypatch, capsys):
    """One evaluate stage fuses every run of the study: a bad second run leaves no metrics of the first."""
    assert stage("opinions", RUN, monkeypatch, capsys)[0] == 0
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["study"]["seeds"] = [0, 1]
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = Path("opinions/custom/sasrec/seed1")
    shutil.copytree(work / OPINIONS, work / second)
    poison(work / second / "test_diffusion.npy")
    rc, err = stage("evaluate", [], monkeypatch, capsys)
    refused(rc, err, f"{second / 'test_diffusion.npy'}: holds 1 NaN or inf value(s)")
    nothing_written("evaluate", work)


def test_evaluate_names_a_missing_opinion(work, monkeypatch, capsys):
    assert stage("opinions", RUN, monkeypatch, capsys)[0] == 0
    (work / OPINIONS / "test_propagated.npy").unlink()
    rc, err = stage("evaluate", [], monkeypatch, capsys)
    refused(rc, err, f"{OPINIONS / 'test_propagated.npy'}: file not found")
    nothing_written("evaluate", work)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_fusion_sweep_refuses_non_finite_scores(work, monkeypatch, capsys, value):
    poison(work / SCORES / "val_logits.npy", value)
    rc, err = stage("fusion_sweep", RUN, monkeypatch, capsys)
    refused(rc, err, f"{SCORES / 'val_logits.npy'}: holds 1 NaN or inf value(s)")
    nothing_written("fusion_sweep", work)


def test_train_diffusion_refuses_to_write_nan_scores(work, monkeypatch, capsys):
    shutil.rmtree(work / SCORES)
    module = load_script("train_diffusion")

    def diverged(params, backbone, similarity, split, *args):  # what a diverged denoiser would return
        scores = {name: np.zeros((len(split.test), split.num_items + 1), np.float32)
                  for name in ("val_logits", "val_x0", "test_logits", "test_x0")}
        scores["test_x0"][0, 0] = np.nan
        return {"config": {}, "state_dict": {"w": torch.zeros(2)}}, scores

    monkeypatch.setattr(module, "fit_diffusion", diverged)
    rc, err = run_module(module, "train_diffusion", RUN, monkeypatch, capsys)
    refused(rc, err, f"error: {SCORES / 'test_x0.npy'}: refusing to write 1 NaN or inf value(s)")
    nothing_written("train_diffusion", work)


def test_npy_io_refuses_non_finite(tmp_path):
    with pytest.raises(ConfigError, match=r"a.npy: refusing to write 2 NaN or inf value\(s\) of 3"):
        save_npy(tmp_path / "a.npy", np.array([1.0, np.nan, np.inf]))
    assert list(tmp_path.iterdir()) == []
    save_npy(tmp_path / "ranks.npy", np.array([1, np.iinfo(np.int64).max]))  # integer ranks: always finite
    assert load_npy(tmp_path / "ranks.npy").tolist() == [1, np.iinfo(np.int64).max]


# --- 2. non-finite weights --------------------------------------------------------------------------------------

def test_checkpoint_with_nan_weights_is_refused_before_training(work, monkeypatch, capsys):
    checkpoint = load_torch(work / MODEL / "backbone.pt")
    checkpoint["state_dict"]["encoder.items.weight"][3, :2] = float("nan")
    torch.save(checkpoint, work / MODEL / "backbone.pt")
    shutil.rmtree(work / SCORES)
    rc, err = stage("train_diffusion", RUN, monkeypatch, capsys)
    refused(rc, err, f"{MODEL / 'backbone.pt'}: holds tensor 'state_dict.encoder.items.weight' with 2 NaN or inf",
            "expected finite weights")
    nothing_written("train_diffusion", work)
    with pytest.raises(ConfigError, match="the backbone just trained: holds tensor 'encoder.items.weight'"):
        load_backbone(tiny_params(), "sasrec", checkpoint, checkpoint["config"]["num_items"],
                      "the backbone just trained")
    with pytest.raises(ConfigError, match=r"x.pt: refusing to write tensor 'w' with 1 NaN"):
        save_torch(work / "x.pt", {"w": torch.tensor([0.0, float("inf")])})
    assert not (work / "x.pt").exists()


# --- 3. the custom dataset's local file --------------------------------------------------------------------------

def custom_params(url: str, sha256: str | None = None) -> dict:
    return {"custom": entry("custom", url, sha256, sep=",", header=True, columns={"user": "u", "item": "i",
                                                                                  "rating": None, "timestamp": None})}


def test_custom_file_outside_data_custom_is_refused(workdir, run_stage):
    (workdir / "elsewhere").mkdir()
    (workdir / "elsewhere/x.csv").write_text("u,i\n1,2\n")
    for url in ("file:elsewhere/x.csv", f"file://{workdir}/elsewhere/x.csv", "file:data/custom/../../elsewhere/x.csv"):
        write_params(workdir, custom_params(url))
        rc, _, err = run_stage("download", "custom")
        refused(rc, err, f"params.yaml: datasets.custom.sources.web.url = '{url}': expected file:data/custom/<file>")
        assert not (workdir / "data").exists()


def test_changed_local_file_is_refused_until_its_checksum_is_recorded(workdir, run_stage):
    csv = workdir / "data/custom/x.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("u,i\n1,2\n")
    write_params(workdir, custom_params("file:data/custom/x.csv"))
    assert run_stage("download", "custom")[0] == 0                       # first use: the hash is recorded
    csv.write_text("u,i\n1,2\n1,3\n")                                     # the user's edit
    new = dl.sha256_file(csv)
    rc, _, err = run_stage("download", "custom")
    refused(rc, err, "file:data/custom/x.csv: sha256 mismatch",
            f"If data/custom/x.csv changed on purpose, record its new checksum: set params.yaml key "
            f"datasets.custom.sources.web.sha256: {new} (or delete this URL's entry in data/checksums.json), "
            "then re-run")
    assert not (workdir / "data/raw/custom").exists()
    write_params(workdir, custom_params("file:data/custom/x.csv", new))  # the documented way: pin it
    assert run_stage("download", "custom")[0] == 0
    assert (workdir / "data/raw/custom/x.csv").read_text() == "u,i\n1,2\n1,3\n"
    csv.write_text("u,i\n9,9\n")                                          # pinned, then edited again
    rc, _, err = run_stage("download", "custom")
    refused(rc, err, f"set params.yaml key datasets.custom.sources.web.sha256 to {dl.sha256_file(csv)}")


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """`dvc <args>` in `repo` (the venv first on PATH, for the stages' `python`), failure or not."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": path}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_dvc_sees_an_edit_to_the_custom_file(tmp_path):
    repo = make_tiny_repo(tmp_path / "repo")
    assert dvc(repo, "repro", "download").returncode == 0
    with open(repo / "data/custom/interactions.csv", "a") as f:
        f.write("0,999,5,99999\n")
    # dvc re-runs the stage (without the data/custom dep it would skip it as unchanged), which refuses the file
    # and says how to record its new checksum
    again = dvc(repo, "repro", "download")
    assert "Running stage 'download@custom'" in again.stdout, again.stdout
    new = dl.sha256_file(repo / "data/custom/interactions.csv")
    assert again.returncode != 0 and f"record its new checksum: set params.yaml key " \
        f"datasets.custom.sources.local.sha256: {new}" in again.stderr, again.stderr


# --- 4. duplicate rows ---------------------------------------------------------------------------------------------

def duplicated_csv(raw: Path, timestamps: bool = True) -> None:
    """The tiny interactions with every row written twice, in place (the probe's file)."""
    write_interactions(raw / "interactions.csv")
    header, *rows = (raw / "interactions.csv").read_text().splitlines()
    if not timestamps:
        header, rows = header.rsplit(",", 1)[0], [r.rsplit(",", 1)[0] for r in rows]
    (raw / "interactions.csv").write_text("\n".join([header, *(r for row in rows for r in (row, row))]) + "\n")


@pytest.mark.parametrize("timestamps", [True, False], ids=["timestamps", "row-order"])
def test_duplicate_rows_are_dropped_counted_or_refused(tmp_path, timestamps):
    duplicated_csv(tmp_path, timestamps)
    cfg = copy.deepcopy(tiny_params()["datasets"]["custom"])
    cfg["columns"]["timestamp"] = "timestamp" if timestamps else None
    df = load("custom", cfg, tmp_path)
    dropped = build("custom", df, read_filters("custom", cfg))            # the default: drop_exact
    assert dropped.stats["duplicates"] == 40 * 12 and dropped.stats["interactions"] == 40 * 12
    assert all(len(set(s.tolist())) == len(s) for s in dropped.sequences)  # test != val != train items
    kept = build("custom", df, read_filters("custom", {**cfg, "duplicates": "keep"}))
    assert kept.stats["duplicates"] == 40 * 12 and kept.stats["interactions"] == 2 * 40 * 12
    with pytest.raises(ConfigError, match=r"params.yaml: datasets.custom.duplicates = 'refuse': data/raw/custom "
                                          r"has 480 duplicate row\(s\) \(first: user 0, item \d+, rating \d\.0, "):
        build("custom", df, read_filters("custom", {**cfg, "duplicates": "refuse"}))


def test_duplicates_in_stats_json_and_refused_by_the_stage(work, monkeypatch, capsys):
    for folder in ("data/raw", "data/processed"):
        shutil.rmtree(work / folder)
    duplicated_csv(work / "data/raw/custom")
    assert load_script("preprocess").main(["--dataset", "custom"]) == 0
    assert json.loads((work / "data/processed/custom/stats.json").read_text())["duplicates"] == 480
    shutil.rmtree(work / "data/processed")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["datasets"]["custom"]["duplicates"] = "refuse"
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    rc, err = stage("preprocess", ["--dataset", "custom"], monkeypatch, capsys)
    refused(rc, err, "datasets.custom.duplicates = 'refuse': data/raw/custom has 480 duplicate row(s)")
    assert not (work / "data/processed").exists()
    params["datasets"]["custom"]["duplicates"] = "first"
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    rc, err = stage("preprocess", ["--dataset", "custom"], monkeypatch, capsys)
    refused(rc, err, "params.yaml: datasets.custom.duplicates = 'first': expected one of ['drop_exact', 'keep', "
                     "'refuse']")


# --- 5. size caps ------------------------------------------------------------------------------------------------

class EndlessBody(http.server.BaseHTTPRequestHandler):
    """200 and zeros until the client hangs up: no Content-Length (only a count can stop it), or under a path
    with `declared` in it, a Content-Length of 3 MiB."""

    protocol_version = "HTTP/1.0"

    def do_GET(self):
        self.send_response(200)
        if "declared" in self.path:
            self.send_header("Content-Length", str(3 << 20))
        self.end_headers()
        try:
            while True:
                self.wfile.write(bytes(1 << 16))
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def endless():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EndlessBody)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def capped_params(folder: Path, datasets: dict, **limits) -> None:
    write_params(folder, datasets)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    (folder / "params.yaml").write_text(yaml.safe_dump({**params, "limits": limits}))


def test_endless_body_and_declared_size_are_capped(workdir, run_stage, endless):
    for url, cap in ((f"{endless}/ratings_Beauty.csv", 1), (f"{endless}/declared/ratings_Beauty.csv", 2)):
        capped_params(workdir, {"beauty": entry("beauty", url)}, download_mb=cap)
        rc, _, err = run_stage("download", "beauty")
        refused(rc, err, f"{url}: larger than the download cap of {cap} MB (params.yaml limits.download_mb); refused")
        assert leftovers(workdir / "data/raw") == []


def test_dev_zero_is_not_a_file(workdir, run_stage):
    write_params(workdir, {"beauty": entry("beauty", "file:///dev/zero")})
    rc, _, err = run_stage("download", "beauty")
    refused(rc, err, "file:///dev/zero: /dev/zero is not a regular file; refused")
    assert leftovers(workdir / "data/raw") == []


def test_gzip_and_archive_unpacked_caps(workdir, run_stage, tmp_path):
    (workdir / "data/custom").mkdir(parents=True)
    (workdir / "data/custom/x.csv.gz").write_bytes(gzip.compress(bytes(3 << 20)))  # 3 MiB of zeros
    capped_params(workdir, custom_params("file:data/custom/x.csv.gz"), unpacked_mb=2)
    rc, _, err = run_stage("download", "custom")
    refused(rc, err, "x.csv.gz: unpacks to more than", "(cap: 2 MB, params.yaml limits.unpacked_mb", "zip bomb")
    assert leftovers(workdir / "data/raw") == []
    (workdir / "data/custom/x.zip").write_bytes(zip_bytes({"x.csv": bytes(3 << 20)}))
    capped_params(workdir, custom_params("file:data/custom/x.zip"), unpacked_mb=2)
    rc, _, err = run_stage("download", "custom")
    refused(rc, err, "x.zip: declares 3145728 uncompressed bytes", "cap: 2 MB")
    # The ratio rule applies to .gz files as to archives (here with a lowered soft limit; params set the hard cap).
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(bytes(4 << 20)))
    with pytest.raises(dl.DownloadError, match="bomb.gz: unpacks to more than .* refused as a zip bomb"):
        dl.check_gzip(bomb, soft_limit=1 << 20)
    assert dl.check_gzip(bomb) == 4 << 20


def test_tar_member_declaring_too_much_is_refused_before_its_data(tmp_path):
    info = tarfile.TarInfo("huge.csv")
    info.size = 1 << 40                                                   # 1 TiB declared, no data follows
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(gzip.compress(info.tobuf() + bytes(1024)))
    with pytest.raises(dl.DownloadError, match=r"a.tar.gz: declares 1099511627776 uncompressed bytes .* zip bomb"):
        dl.extract(archive, tmp_path / "out", "tar")                      # not "truncated": its data is never read
    assert not (tmp_path / "out").exists()


def test_default_caps_let_the_real_datasets_through():
    committed = yaml.safe_load((REPO / "params.yaml").read_text())["limits"]
    assert committed == {"download_mb": dl.DOWNLOAD_MB, "unpacked_mb": dl.UNPACKED_MB} == vars(dl.Limits())
    assert dl.DOWNLOAD_MB * dl.MB >= 2 * 1_000_000_000     # KuaiRec.zip, the largest named source: under 1 GB
    assert dl.HARD_LIMIT == dl.UNPACKED_MB * dl.MB > 8 * dl.SOFT_LIMIT
    for value in (0, -1, float("inf"), float("nan"), "1G"):
        with pytest.raises(ConfigError, match=r"params.yaml: limits.download_mb = "):
            check_schema({"limits": {"download_mb": value}})


# --- 6. params: NaN, inf and ranges ----------------------------------------------------------------------------------

def set_key(params: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value
    return params


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("dotted, value, words", [
    ("gamma", NAN, "gamma = nan: expected a finite number"),
    ("diffusion.select_gamma", NAN, "diffusion.select_gamma = nan: expected a finite number"),
    ("diffusion.zeta", NAN, "diffusion.zeta = nan: expected a finite number"),
    ("denoiser.dropout", NAN, "denoiser.dropout = nan: expected a finite number"),
    ("denoiser.dropout", 1.0, "denoiser.dropout = 1.0: expected a value in [0.0, 1.0)"),
    ("similarity.memory_mb", INF, "similarity.memory_mb = inf: expected a finite number"),
    ("sweep.gammas", [0.5, NAN], "sweep.gammas[1] = nan: expected a finite number"),
    ("datasets.kuairec.positive.min", -INF, "datasets.kuairec.positive.min = -inf: expected a finite number"),
    ("backbones.sasrec.model.heads", 3, "backbones.sasrec.model.heads = 3: expected a divisor of "
                                        "backbones.sasrec.model.hidden = 64"),
    ("backbones.sasrec.model.dropout", 1.5, "backbones.sasrec.model.dropout = 1.5: expected a value in [0.0, 1.0)"),
    ("backbones.sasrec.model.dropout", NAN, "backbones.sasrec.model.dropout = nan: expected a finite number"),
    ("backbones.sasrec.model.hidden", -5, "backbones.sasrec.model.hidden = -5: expected a value in [1, inf)"),
    ("backbones.bert4rec.model.hidden", 63, "backbones.bert4rec.model.heads = 2: expected a divisor of "
                                            "backbones.bert4rec.model.hidden = 63"),
    ("backbones.bert4rec.model.mask_prob", 0, "backbones.bert4rec.model.mask_prob = 0: expected a value in (0.0, 1.0)"),
    ("backbones.cbit.model.views", 1, "backbones.cbit.model.views = 1: expected a value in [2, inf)"),
    ("backbones.srgnn.model.steps", 0, "backbones.srgnn.model.steps = 0: expected a value in [1, inf)"),
    ("backbones.sasrec.model.loss", "mse", "backbones.sasrec.model.loss = 'mse': expected one of ['ce', 'bce']"),
])
def test_non_finite_and_out_of_range_params_are_named(dotted, value, words):
    params = set_key(yaml.safe_load((REPO / "params.yaml").read_text()), dotted, value)
    with pytest.raises(ConfigError, match=re.escape(f"params.yaml: {words}")):
        validate(params, {name: backbone_class(name) for name in REGISTRY})
    if not (dotted.startswith("backbones.") and "divisor" in words and "model.hidden" in dotted):
        with pytest.raises(ConfigError, match=re.escape(words)):  # the data stages' check (no model classes)
            check_schema(params)


@pytest.mark.parametrize("stage_name", ["train_backbone", "train_diffusion"])
def test_model_option_out_of_range_stops_the_stage_first(stage_name, workdir, monkeypatch, capsys):
    params = tiny_params()
    params["backbones"]["sasrec"]["model"]["heads"] = 3                  # hidden 8
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))          # `heads: 3`, no data at all
    rc, err = stage(stage_name, RUN, monkeypatch, capsys)
    refused(rc, err, "params.yaml: backbones.sasrec.model.heads = 3: expected a divisor of "
                     "backbones.sasrec.model.hidden = 8")
    assert leftovers(workdir) == ["params.yaml"]


@pytest.mark.parametrize("line, bad, words", [("\ngamma: 0.5", "\ngamma: .nan", "gamma = nan"),
                                              ("memory_mb: 2048", "memory_mb: .inf", "similarity.memory_mb = inf")])
def test_yaml_nan_and_inf_stop_a_stage_first(workdir, monkeypatch, capsys, line, bad, words):
    text = (REPO / "params.yaml").read_text()
    assert text.count(line) == 1
    (workdir / "params.yaml").write_text(text.replace(line, bad))
    rc, err = stage("evaluate", [], monkeypatch, capsys)
    refused(rc, err, f"params.yaml: {words}: expected a finite number")
    assert leftovers(workdir) == ["params.yaml"]


def test_every_numeric_model_option_has_a_range_and_config_imports_no_model():
    for name in REGISTRY:
        for option, param in model_options(backbone_class(name)).items():
            if isinstance(param.default, (int, float)) and not isinstance(param.default, bool):
                assert option in MODEL_RANGES, f"backbones.{name}.model.{option} has no range in MODEL_RANGES"
            if option in MODEL_RANGES and param.default is not param.empty:
                MODEL_RANGES[option](f"backbones.{name}.model.{option}", param.default)  # the defaults pass
    probe = ("import sys, globaldiff.config.params; "
             "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('globaldiff.backbones.')))")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "[]\n"


# --- 7. datasets.<name>.file stays inside data/raw/<name> -----------------------------------------------------------

@pytest.mark.parametrize("file", ["../../../../etc/passwd", "/etc/passwd", "a/../../b.csv", "..\\..\\x.csv", ""])
def test_custom_file_outside_the_raw_folder_is_refused(work, monkeypatch, capsys, file):
    shutil.rmtree(work / "data/processed")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["datasets"]["custom"]["file"] = file
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    rc, err = stage("preprocess", ["--dataset", "custom"], monkeypatch, capsys)
    refused(rc, err, f"params.yaml: datasets.custom.file = {file!r}: expected a relative path inside "
                     "data/raw/custom (no '..', not absolute)")
    assert not (work / "data/processed").exists()
    with pytest.raises(ConfigError, match="datasets.custom.file"):  # the loader alone refuses it too
        load("custom", params["datasets"]["custom"], work / "data/raw/custom")


# --- 8. torch.load failures ------------------------------------------------------------------------------------------

class NotAWeight:
    """A class outside torch's allow-list."""


def test_torch_load_failures_name_the_real_reason(tmp_path):
    torch.save({"state_dict": NotAWeight()}, tmp_path / "object.pt")
    save_torch(tmp_path / "good.pt", {"w": torch.ones(3)})
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:40])
    (tmp_path / "text.pt").write_text("hello")
    reasons = {"object.pt": "it holds an object that is not a tensor or a plain value: Unsupported global: "
                            "GLOBAL test_refused_inputs.NotAWeight",
               "cut.pt": "failed finding central directory",
               "text.pt": "not a file written by torch.save: no zip archive header"}
    for name, reason in reasons.items():
        with pytest.raises(ConfigError) as e:
            load_torch(tmp_path / name)
        message = str(e.value)
        assert message.startswith(f"{tmp_path / name}: not a readable checkpoint") and reason in message, message
        assert "weights_only" not in message and "\n" not in message, message


# --- 9. %00 in a URL; checkpoints and similarity files of the wrong shape ----------------------------------------

@pytest.mark.parametrize("url", ["file:data/custom/a%00b.csv", "https://example.org/a%00.csv", "https://h/%0a.csv"])
def test_percent_encoded_control_characters_are_refused(workdir, run_stage, url):
    write_params(workdir, {"custom": entry("custom", url)})
    rc, _, err = run_stage("download", "custom")
    refused(rc, err, f"{url}: percent-encoded control characters (such as %00) in URL; refused")
    assert not (workdir / "data").exists()


@pytest.mark.parametrize("edit, words", [
    (lambda c: c.pop("state_dict"), "expected a 'state_dict' of tensors, got NoneType"),
    (lambda c: c["state_dict"].pop("encoder.items.weight"),
     "state_dict does not fit SASRec: missing encoder.items.weight"),
    (lambda c: c["state_dict"].update({"encoder.items.weight": torch.zeros(3, 8)}),
     "state_dict does not fit SASRec: encoder.items.weight is (3, 8), expected ("),
    (lambda c: c["state_dict"].update({"extra": torch.zeros(1)}), "state_dict does not fit SASRec: unexpected extra"),
    (lambda c: c.update({"state_dict": [1, 2]}), "expected a 'state_dict' of tensors, got list"),
], ids=["missing", "missing-key", "misshaped", "unexpected", "not-a-dict"])
def test_checkpoint_without_a_fitting_state_dict(work, monkeypatch, capsys, edit, words):
    checkpoint = load_torch(work / MODEL / "backbone.pt")
    edit(checkpoint)
    torch.save(checkpoint, work / MODEL / "backbone.pt")
    shutil.rmtree(work / SCORES)
    rc, err = stage("train_diffusion", RUN, monkeypatch, capsys)
    refused(rc, err, f"{MODEL / 'backbone.pt'}: {words}", "re-run its stage")
    nothing_written("train_diffusion", work)


@pytest.mark.parametrize("state, words", [
    ({}, "keys [], expected ['matrix'] or ['assign', 'matrix'] or ['indices', 'values']"),
    ({"matrix": torch.zeros(4, 3)}, "'matrix' of shape (4, 3), expected [M+1, M+1]"),
    ({"matrix": torch.zeros(4, 4, dtype=torch.int64)}, "'matrix' is a torch.int64 tensor, expected a floating-point"),
    ({"matrix": torch.zeros(4, 2), "assign": torch.tensor([0, 1, 2, 3])}, "'assign' of shape (4,), expected [4] "
                                                                          "with ids in [0, 2)"),
    ({"values": torch.zeros(4, 2), "indices": torch.zeros(4, 2)}, "'indices' is a torch.float32 tensor"),
    ({"matrix": torch.zeros(5, 5)}, "4 items, the dataset has"),
], ids=["no-keys", "not-square", "integer", "assign-out-of-range", "float-indices", "other-dataset"])
def test_malformed_similarity_file(work, monkeypatch, capsys, state, words):
    torch.save(state, work / "models/custom/similarity.pt")
    rc, err = stage("opinions", RUN, monkeypatch, capsys)
    refused(rc, err, f"models/custom/similarity.pt: not a saved item similarity ({words}",
            "re-run the similarity stage")
    nothing_written("opinions", work)


def test_saved_similarity_round_trips():
    for sim in (ItemSimilarity(torch.rand(4, 4)), ItemSimilarity(torch.rand(4, 2), torch.tensor([0, 1, 0, 1])),
                ItemSimilarity(values=torch.rand(4, 2), indices=torch.tensor([[0, 1]] * 4))):
        assert ItemSimilarity.from_state_dict(sim.state_dict(), "s.pt", num_items=3).form == sim.form


# --- 10. dvc ignores io.atomic_path's leftovers ---------------------------------------------------------------

def test_dvc_ignores_leftover_temporaries(tmp_path, monkeypatch):
    from dvc.repo import Repo

    monkeypatch.chdir(tmp_path)
    Repo.init(str(tmp_path), no_scm=True).close()
    shutil.copy(REPO / ".dvcignore", tmp_path / ".dvcignore")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/a.txt").write_text("1\n")
    with Repo(str(tmp_path)) as repo:
        repo.add("out")                                                    # records the folder's hash
    leftover = tmp_path / "out/.a.txt.pid123.abc.tmp"
    leftover.mkdir()
    (leftover / "a.txt").write_text("half written")
    with Repo(str(tmp_path)) as repo:
        assert repo.status() == {}                                         # the same hash with the leftover
    (tmp_path / ".dvcignore").write_text("")
    with Repo(str(tmp_path)) as repo:                                      # the control: without the pattern
        assert repo.status() == {"out.dvc": [{"changed outs": {"out": "modified"}}]}
