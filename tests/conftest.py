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
import tempfile
import threading
import time
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
def one_thread():
    """torch at one intra-op thread for the test (restored after): tiny models gain nothing from a second thread,
    which only contends with the tiny study that conftest builds in the background."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def make_tiny_repo(repo: Path, params: dict | None = None, env: dict | None = None) -> Path:
    """A git+dvc repo in `repo` with this repo's pipeline/, src/, data/paper, dvc.yaml, the tiny params and data
    (`env`: on top of ours for the git and dvc commands)."""
    for folder in ("pipeline", "src", "data/paper"):
        shutil.copytree(REPO / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    (repo / "params.yaml").write_text(yaml.safe_dump(params or tiny_params(), sort_keys=False))
    write_interactions(repo / "data/custom/interactions.csv")
    run_cmd(["git", "init", "-q"], repo, env)
    run_cmd(["git", "config", "user.email", "test@example.invalid"], repo, env)
    run_cmd(["git", "config", "user.name", "test"], repo, env)
    run_cmd([sys.executable, "-m", "dvc", "init", "-q"], repo, env)
    return repo


# --- expensive setup in the background ----------------------------------------------------------------------

class Background:
    """Expensive setup, declared with `background_fixture`, run in one background thread from the end of
    collection: the jobs that a selected test needs (and the jobs those need), in the order they are declared
    (conftest's first, then the test modules' in collection order, which is about the order they are needed).
    The jobs run at the lowest CPU priority, so that they take the core that the mostly single-threaded tests leave
    idle and stay out of the multi-threaded ones' way; a test that needs a job's result waits for it, and while it
    waits the job runs at the normal priority (it is all that is left to do). On Linux with autogroups (each process
    session a scheduling group, where a process's own nice only ranks it inside its group) each command a job runs
    leads its own session, and that autogroup's nice is set: 19, then 0 while a test waits (raising it back needs
    no privilege). Otherwise the jobs' thread and the commands it starts have nice 19 throughout.

    Jobs run commands with `run` (a snapshot of the environment taken before any test ran: tests monkeypatch
    os.environ meanwhile) in folders under `tmp` (absolute paths only: tests chdir meanwhile)."""

    def __init__(self):
        self.jobs: dict[str, tuple] = {}                  # name -> (function, names of the jobs it needs)
        self.cond = threading.Condition()
        self.wanted: list[str] = []
        self.done: dict[str, tuple[object, BaseException | None]] = {}
        self.procs: set[subprocess.Popen] = set()
        self.thread: threading.Thread | None = None
        self.root: Path | None = None
        self.env: dict | None = None
        self.closed = False
        self.waiting = False
        try:
            self.autogroups = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
        except OSError:
            self.autogroups = False

    def add(self, name: str, fn, needs: tuple[str, ...]) -> None:
        assert name not in self.jobs, f"background job {name!r} declared twice"
        self.jobs[name] = (fn, needs)

    def start(self, names) -> None:
        """Run the named jobs and those they need, in declaration order (a no-op for no names)."""
        wanted, todo = set(), [n for n in names if n in self.jobs]
        while todo:
            name = todo.pop()
            if name not in wanted:
                wanted.add(name)
                todo.extend(self.jobs[name][1])
        with self.cond:
            new = [n for n in self.jobs if n in wanted and n not in self.wanted]
            if not new:
                return
            if self.thread is None:
                self.env = {**os.environ, "DVC_NO_ANALYTICS": "1",
                            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
                self.root = Path(tempfile.mkdtemp(prefix="globaldiff-tests-"))
            self.wanted.extend(new)
            self.cond.notify_all()
            if self.thread is None:
                self.thread = threading.Thread(target=self._work, name="background-setup", daemon=True)
                self.thread.start()

    def _work(self) -> None:
        if sys.platform.startswith("linux"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            except OSError:
                pass
        while True:
            with self.cond:
                todo = [n for n in self.wanted if n not in self.done]
                while not todo and not self.closed:
                    self.cond.wait()
                    todo = [n for n in self.wanted if n not in self.done]
                if self.closed:
                    return
            name = next((n for n in todo if all(m in self.done for m in self.jobs[n][1])), todo[0])
            fn, needs = self.jobs[name]
            try:
                failed = [n for n in needs if self.done[n][1] is not None]
                if failed:
                    raise RuntimeError(f"background job {failed[0]!r} failed")
                tmp = self.root / name
                tmp.mkdir()
                result, error = fn(tmp, *(self.done[n][0] for n in needs)), None
            except BaseException as e:  # noqa: BLE001 - re-raised in the tests that need the result
                result, error = None, e
            with self.cond:
                self.done[name] = (result, error)
                self.cond.notify_all()

    def result(self, name: str):
        self.start([name])
        with self.cond:
            if name not in self.done:
                self.waiting = True
                for proc in self.procs:
                    self._set_nice(proc, 0)
                while name not in self.done:
                    self.cond.wait()
                self.waiting = False
        result, error = self.done[name]
        if error is not None:
            raise RuntimeError(f"background setup {name!r} failed") from error
        return result

    def run(self, args: list[str], cwd: Path, env: dict | None = None, timeout: float = 1200) -> str:
        """run_cmd for background jobs: the snapshot environment (`env` on top), and killed by close()."""
        with self.cond:
            if self.closed:
                raise RuntimeError("the test session ended")
            proc = subprocess.Popen(args, cwd=cwd, env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=self.autogroups,
                                    process_group=None if self.autogroups else 0)
            self.procs.add(proc)
            self._set_nice(proc, 0 if self.waiting else 19)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            with self.cond:
                self.procs.discard(proc)
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        assert proc.returncode == 0, f"{' '.join(args)} failed:\n{out}\n{err}"
        return out + err

    def _set_nice(self, proc: subprocess.Popen, nice: int) -> None:
        """The nice of `proc`'s autogroup (it leads its session), or else of `proc` itself (only ever raised)."""
        if not self.autogroups:
            return  # the jobs' thread has nice 19 already, and so has what it starts
        for _ in range(40):
            try:
                Path(f"/proc/{proc.pid}/autogroup").write_text(f"{nice}\n")
                return
            except BlockingIOError:  # unprivileged changes are rate-limited to one every 0.1 s
                time.sleep(0.05)
            except OSError:
                return

    def close(self) -> None:
        """At the end of the session: stop the thread, kill what it still runs (an interrupted session), clean up."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()
            procs, thread, root = list(self.procs), self.thread, self.root
        for proc in procs:
            try:
                os.killpg(proc.pid, 9)
            except OSError:
                pass
        if thread is not None:
            thread.join(timeout=30)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


BACKGROUND = Background()


def background_fixture(*needs: str):
    """Declare a session fixture computed by a Background job: `fn(tmp, *results of the fixtures named in needs)`
    (those are background fixtures too). The fixture's name is the function's."""
    def declare(fn):
        BACKGROUND.add(fn.__name__, fn, needs)

        @pytest.fixture(scope="session", name=fn.__name__)
        def fixture():
            return BACKGROUND.result(fn.__name__)
        fixture.__doc__ = fn.__doc__
        return fixture
    return declare


def pytest_collection_modifyitems(session, config, items):
    """The modules with a test that waits for a background job run last (whole modules, in their own order, so no
    module fixture is built twice): the other tests fill the time the jobs take instead of a test waiting idle."""
    waits = {item.module.__name__ for item in items
             if item.module is not None and set(getattr(item, "fixturenames", ())) & set(BACKGROUND.jobs)}
    items.sort(key=lambda item: getattr(item.module, "__name__", "") in waits)     # stable: order kept otherwise


def pytest_collection_finish(session):
    if not session.config.option.collectonly:
        BACKGROUND.start({name for item in session.items for name in getattr(item, "fixturenames", ())})


def pytest_sessionfinish(session):
    BACKGROUND.close()


# --- the tiny study of all four backbones, built once a session, copied by each user -------------------------

STUDY_BACKBONES = ["sasrec", "bert4rec", "cbit", "srgnn"]
STUDY_MODELS = {"sasrec": {"hidden": 8}, "bert4rec": {"hidden": 8, "ffn": 16},
                "cbit": {"hidden": 8, "ffn": 16, "views": 2}, "srgnn": {"hidden": 8}}
STUDY_ENV = {"GLOBALDIFF_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # CPU, one thread a stage


def study_params() -> dict:
    """tiny_params() with all four backbones in the study, each tiny (sasrec's entries exactly tiny_params')."""
    params = tiny_params()
    params["study"]["backbones"] = list(STUDY_BACKBONES)
    for name, model in STUDY_MODELS.items():
        params["backbones"][name]["model"].update(model)
        params["backbones"][name]["train"].update({"epochs": 2, "patience": 1, "batch_size": 32})
    return params


@background_fixture()
def built_study(tmp: Path) -> tuple[Path, str]:
    """(repo, output of its first `dvc repro`): make_tiny_repo(study_params()) after one `dvc repro` with
    STUDY_ENV (the slowest setup of the suite: some 24 stage processes). Never change it: take a copy_study()."""
    repo = make_tiny_repo(tmp / "repo", study_params(), BACKGROUND.env)
    return repo, BACKGROUND.run([sys.executable, "-m", "dvc", "repro"], repo, STUDY_ENV)


def copy_study(study: Path, dest: Path) -> Path:
    """A private copy of the built study (workspace, git, dvc cache, dvc.lock), to change freely: dvc sees the
    same hashes, so nothing in it is stale. dvc's own scratch folder (.dvc/tmp) is left for dvc to recreate."""
    shutil.copytree(study, dest, symlinks=True,
                    ignore=lambda folder, names: ["tmp"] if Path(folder).name == ".dvc" and "tmp" in names else [])
    return dest


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
