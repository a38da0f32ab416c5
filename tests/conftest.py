"""Shared fixtures: a local HTTP server on 127.0.0.1, archive builders, and in-process stage runs."""

from __future__ import annotations

import os

os.environ["DVC_NO_ANALYTICS"] = "1"  # before anything imports dvc: tests never phone home

import importlib.util
import io
import http.server
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ML100K_UDATA = SHARED / "data" / "ml-100k" / "u.data"


# --- local HTTP server -----------------------------------------------------------------------------------

class LocalServer:
    """Serves files from `root` on 127.0.0.1; `redirects` (path -> Location) and `lie_length` (path -> extra
    bytes promised in Content-Length) fake misbehaving publishers."""

    def __init__(self, root: Path):
        self.root = root
        self.redirects: dict[str, str] = {}
        self.lie_length: dict[str, int] = {}
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            timeout = 10

            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.root), **kwargs)

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path in server.lie_length:
                    body = (server.root / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body) + server.lie_length[self.path]))
                    self.end_headers()
                    self.wfile.write(body)
                    self.close_connection = True
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def add(self, name: str, data: bytes) -> str:
        """Serve `data` under `name`; return its URL."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return self.url(name)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(tmp_path_factory):
    srv = LocalServer(tmp_path_factory.mktemp("served"))
    try:
        yield srv
    finally:
        srv.close()


# --- archives in each publisher's layout ---------------------------------------------------------------

def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deflated zip holding `members` (name -> content), names as given (may be hostile)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_bytes(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    """A gzipped tar holding `members`, plus symlink members (name -> target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


@pytest.fixture
def ml100k_udata() -> bytes:
    """The real MovieLens-100K u.data from <repo>/../shared (skips when the shared folder is absent)."""
    if not ML100K_UDATA.is_file():
        pytest.skip(f"{ML100K_UDATA} not found")
    return ML100K_UDATA.read_bytes()


# --- stages in process -----------------------------------------------------------------------------------

def load_script(stage: str):
    """Import pipeline/<stage>.py as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"pipeline_{stage}", REPO / "pipeline" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty repo-like folder, made the working directory (stages resolve paths from it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_params(folder: Path, datasets: dict) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump({"datasets": datasets}, sort_keys=False))


@pytest.fixture
def run_stage(workdir, capsys):
    """run_stage('download' | 'preprocess', dataset) -> (exit code, stdout, stderr), in `workdir`."""
    def run(stage: str, dataset: str):
        rc = load_script(stage).main(["--dataset", dataset])
        captured = capsys.readouterr()
        return rc, captured.out, captured.err
    return run


def leftovers(folder: Path) -> list[str]:
    """Everything under `folder` (relative paths), to assert that a failed stage left nothing behind."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def entry(loader: str, url: str, sha256: str | None = None, **extra) -> dict:
    """A params.yaml dataset entry with one source, named `web`."""
    return {"loader": loader, "source": "web", "sources": {"web": {"url": url, "sha256": sha256}}, **extra}


# --- the tiny study: the real dvc.yaml on synthetic data in a temporary git repo ---------------------------

def tiny_params() -> dict:
    """The committed params.yaml shrunk to one dataset (custom), one backbone, one seed, a few epochs."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["study"] = {"datasets": ["custom"], "backbones": ["sasrec"], "seeds": [0]}
    custom = params["datasets"]["custom"]
    custom["sources"][custom["source"]] = {"url": "file:data/custom/interactions.csv", "sha256": None}
    custom.update({"min_rating": 1, "min_uc": 6, "min_sc": 1})
    params["T"] = 5
    params["backbones"]["sasrec"]["model"].update({"hidden": 8})
    params["backbones"]["sasrec"]["train"].update({"epochs": 2, "patience": 1, "batch_size": 32})
    params["diffusion"].update({"epochs": 2, "eval_every": 1, "batch_size": 16})
    params["denoiser"].update({"hidden": 16, "time_dim": 8})
    params["longterm"].update({"dataset": "custom", "backbone": "sasrec", "seeds": [0]})
    params["ablations"].update({"dataset": "custom", "backbone": "sasrec", "seeds": [0],
                                "run": ["guidance_none", "T3", "kmeans2"]})
    params["ablations"]["variants"].update({"T3": {"T": 3}, "kmeans2": {"similarity": {"method": "kmeans", "clusters": 2}}})
    return params


def write_interactions(path: Path, users: int = 40, items: int = 30, per_user: int = 12) -> None:
    """A synthetic custom-loader CSV: `users` users with `per_user` distinct items each, random ratings."""
    rng = np.random.default_rng(0)
    rows = ["user_id,item_id,rating,timestamp"]
    for user in range(users):
        for step, item in enumerate(rng.choice(items, size=per_user, replace=False)):
            rows.append(f"{user},{item + 100},{rng.integers(1, 6)},{1000 * user + step}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


def run_cmd(args: list[str], cwd: Path, env: dict | None = None) -> str:
    """Run a command (the venv's bin first on PATH, `env` on top of ours); assert success; stdout+stderr."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           **(env or {})}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def ran_stages(output: str) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def make_tiny_repo(repo: Path, params: dict | None = None) -> Path:
    """A git+dvc repo in `repo` with this repo's pipeline/, src/, data/paper, dvc.yaml, the tiny params and data."""
    for folder in ("pipeline", "src", "data/paper"):
        shutil.copytree(REPO / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    (repo / "params.yaml").write_text(yaml.safe_dump(params or tiny_params(), sort_keys=False))
    write_interactions(repo / "data/custom/interactions.csv")
    run_cmd(["git", "init", "-q"], repo)
    run_cmd(["git", "config", "user.email", "test@example.invalid"], repo)
    run_cmd(["git", "config", "user.name", "test"], repo)
    run_cmd([sys.executable, "-m", "dvc", "init", "-q"], repo)
    return repo


# --- backbones ------------------------------------------------------------------------------------------------

def encode_with_garbage_in_padding(net, seqs):
    """`net.encode(seqs)` with large random values written into the padding rows before every transformer
    block, so that any attention to a padding key or value would change the real positions' outputs."""
    import torch

    pad = (seqs == 0)[..., None]
    gen = torch.Generator().manual_seed(0)

    def inject(module, args):
        x, mask = args
        return (torch.where(pad, 10.0 * torch.randn(x.shape, generator=gen), x), mask)

    handles = [block.register_forward_pre_hook(inject) for block in net.encoder.blocks]
    try:
        with torch.no_grad():
            return net.encode(seqs)
    finally:
        for handle in handles:
            handle.remove()
