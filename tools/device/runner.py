"""Run dvc.yaml's stages WITHOUT dvc (a machine with the Python packages but no dvc and no network, e.g. the
lent GPU machine): dvc's own order, the exact commands of dvc.yaml, optionally several independent stages at
once (-j N, each with a thread budget), with a timeout per stage that prints every thread's traceback, a
heartbeat, per-stage wall times and the metrics collected in an output folder.

What it does, in order:
  1. prints a line, then runs a bare `PYTHON -c 'import torch'` under `timeout 60` and says plainly whether
     importing torch works on this machine (a hang there is the machine's, not the runner's or a stage's);
     on a hang it runs the import once more under `-X importtime -X faulthandler` to show where it stops;
  2. prints the Python, torch, CUDA, cuDNN and GPU versions under a 60 s timeout (a hang inside CUDA's
     initialisation prints its traceback);
  3. applies --profile files and --set overrides to params.yaml of the working copy (only with --write-params:
     the stages read params.yaml, and dvc.yaml's commands are run unchanged);
  4. resolves dvc.yaml + params.yaml (tools/device/plan.py: the same names, commands, edges and order as dvc),
     keeps --only's stages and everything upstream of them, prints the plan (--dry stops here);
  5. runs each stage as dvc does: its outs removed first (dvc's remove_outs; `persist: true` kept), then each
     line of its cmd through $SHELL -c (or /bin/sh) in the repo root, with DVC_ROOT and DVC_STAGE set; `python`
     in the cmd is a shim for `PYTHON -u -X faulthandler` (unbuffered; SIGABRT prints every thread's stack),
     PYTHONPATH=src (no pip install needed); a stage past its limit gets SIGABRT (tracebacks), then SIGKILL;
  6. writes OUT/timings.tsv, OUT/run.log (everything printed), OUT/params.yaml (the params the stages read),
     OUT/metrics.json (every metrics/plots file of the stages that ran, and JSON files in their outs) and,
     unless --metrics combined, copies of the metrics files under OUT/metrics/.

A stage starts only when every stage whose output it depends on has succeeded; after a failure no new stage
starts (dvc repro's default) unless --keep-going, which skips only the failed stage's downstream.

usage (repo root): python3 tools/device/runner.py [--only NAME|PATTERN ...] [-j N] [--dry] [--profile FILE]
                   [--set KEY=VALUE ...] [--write-params] [--out DIR] [--timeout-s S] [--budget-s S] ...
                   (--preflight-only: steps 1-2 alone; --no-preflight: without them)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import params_profile  # noqa: E402
import plan as planner  # noqa: E402

VERSIONS = r"""
import faulthandler, os, platform, sys, time
faulthandler.dump_traceback_later(float(sys.argv[1]), exit=True)
print("python", sys.version.split()[0], sys.executable, platform.platform(), flush=True)
t = time.time()
import torch
print("torch", torch.__version__, "cuda build", torch.version.cuda, "import %.1fs" % (time.time() - t), flush=True)
print("cpus", os.cpu_count(), "affinity", len(os.sched_getaffinity(0)), "torch threads", torch.get_num_threads(),
      flush=True)
print("cudnn", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None, flush=True)
t = time.time()
ok = torch.cuda.is_available()
print("cuda available", ok, "devices", torch.cuda.device_count() if ok else 0, "(%.1fs)" % (time.time() - t), flush=True)
if ok:
    t = time.time()
    x = torch.ones(1, device="cuda")
    torch.cuda.synchronize()
    print("gpu", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0), "bf16",
          torch.cuda.is_bf16_supported(), "memory %.0f GiB" % (torch.cuda.get_device_properties(0).total_memory / 2**30),
          "first context %.1fs" % (time.time() - t), flush=True)
for name in ("numpy", "pandas", "scipy", "sklearn", "yaml", "matplotlib", "tqdm"):
    try:
        module = __import__(name)
        print(name, getattr(module, "__version__", "?"), end="; ")
    except Exception as e:
        print(name, "MISSING", type(e).__name__, end="; ")
print(flush=True)
import globaldiff
print("globaldiff from", globaldiff.__file__, "GLOBALDIFF_DEVICE", os.environ.get("GLOBALDIFF_DEVICE", "(unset: auto)"),
      flush=True)
"""


class Log:
    """Every line goes to stdout (flushed) and to OUT/run.log, one writer at a time."""

    def __init__(self, path: Path | None, t0: float):
        self.lock = threading.Lock()
        self.file = open(path, "a", buffering=1) if path else None
        self.t0 = t0

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)
            if self.file:
                self.file.write(line + "\n")

    def say(self, text: str) -> None:
        self(f"[runner +{self.elapsed():.0f}s] {text}")

    def close(self) -> None:
        if self.file:
            self.file.close()


def timeout_prefix(seconds: float, signal_name: str = "KILL") -> list[str]:
    """`timeout -s SIG -k 5 S` where coreutils' timeout exists (the brief's `timeout 60`); else []."""
    tool = shutil.which("timeout")
    return [tool, "-s", signal_name, "-k", "5", f"{seconds:g}"] if tool else []


def run_capture(cmd: list[str], limit: float, log: Log, tag: str, env: dict) -> tuple[int, float]:
    """Run a short check under `limit` seconds, its output streamed to the log; (rc, seconds). rc 124: timed out."""
    t = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True, stdin=subprocess.DEVNULL, errors="replace")
    except OSError as e:
        log(f"[{tag}] could not start: {e}")
        return 127, 0.0
    reader = threading.Thread(target=lambda: [log(f"[{tag}] {line.rstrip()}") for line in proc.stdout], daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=limit + 10)     # `timeout` inside ends it at `limit`; this is the backstop
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rc = 124
        proc.wait()
    reader.join(timeout=5)
    return rc, time.monotonic() - t


def preflight(python: str, log: Log, env: dict, limit: float) -> bool:
    """Step 1 and 2: a bare torch import, then the versions; False when either fails (nothing would run)."""
    log.say(f"step 1: bare `{python} -c 'import torch'` under `timeout {limit:g}`")
    rc, took = run_capture(timeout_prefix(limit) + [python, "-c", "import torch"], limit, log, "import-torch", env)
    if rc == 0:
        log.say(f"step 1 OK: `import torch` took {took:.1f}s")
    else:
        hung = rc in (124, 137, -9) or took >= limit
        if hung:
            why = f"did not finish within {limit:g}s: a HANG in the import itself (the machine, not the runner or a stage)"
        else:
            why = f"exited with status {rc} after {took:.1f}s (torch missing or broken: see the lines above)"
        log.say(f"step 1 FAILED: `import torch` {why}")
        if hung:
            log.say("step 1b: the same import under -X importtime -X faulthandler, SIGABRT at the limit "
                    "(the last module listed is where it stops; the traceback shows the frame)")
            run_capture(timeout_prefix(limit, "ABRT") + [python, "-X", "importtime", "-X", "faulthandler", "-c",
                                                         "import torch"], limit, log, "import-torch-b", env)
        return False
    log.say(f"step 2: versions under a {limit:g}s limit")
    rc, took = run_capture(timeout_prefix(limit) + [python, "-u", "-X", "faulthandler", "-c", VERSIONS,
                                                    str(max(limit - 5, 1))], limit, log, "versions", env)
    if rc != 0:
        log.say(f"step 2 FAILED (status {rc} after {took:.1f}s): see the [versions] lines above; a traceback there "
                f"shows where it stopped (a hang in CUDA initialisation shows torch.cuda frames)")
        return False
    log.say(f"step 2 OK ({took:.1f}s)")
    return True


def make_shim(python: str) -> Path:
    """A folder with `python` and `python3` that exec PYTHON -u -X faulthandler (first on the stages' PATH)."""
    folder = Path(tempfile.mkdtemp(prefix="gd-runner-bin-"))
    for name in ("python", "python3"):
        path = folder / name
        path.write_text(f"#!/bin/sh\nexec '{python}' -u -X faulthandler \"$@\"\n")
        path.chmod(0o755)
    return folder


def shell_argv(line: str) -> list[str]:
    """dvc's stage/run.py: $SHELL (or /bin/sh) -c, bash and zsh without their rc files."""
    shell = os.environ.get("SHELL") or "/bin/sh"
    if not os.path.exists(shell):
        shell = "/bin/sh"
    opts = {"bash": ["--noprofile", "--norc"], "zsh": ["--no-rcs"]}.get(os.path.basename(shell).lower(), [])
    return [shell, *opts, "-c", line]


def remove_outs(stage: planner.Stage, repo: Path) -> None:
    for out in stage.outs:
        if out.persist:
            continue
        path = repo / out.path
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def no_core() -> None:
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))     # a SIGABRT'd CUDA process must not dump GBs of core
    except (ImportError, ValueError, OSError):
        pass


class Job:
    def __init__(self, stage: planner.Stage, limit: float, threads: int):
        self.stage, self.limit, self.threads = stage, limit, threads
        self.start = self.end = 0.0
        self.started_at = 0.0     # seconds since the runner started
        self.rc: int | None = None
        self.status = "pending"
        self.proc: subprocess.Popen | None = None
        self.aborted = False
        self.reported = False


def out_files(path: Path, pattern: str) -> list[Path]:
    """An output's files: the file itself, or the files under the folder matching `pattern` (none if missing)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob(pattern) if p.is_file()) if path.is_dir() else []


class Runner:
    def __init__(self, args, plan: planner.Plan, names: list[str], log: Log, out: Path, env: dict):
        self.args, self.plan, self.names, self.log, self.out, self.env = args, plan, names, log, out, env
        self.repo = Path(args.repo).resolve()
        self.jobs = {n: Job(plan.stages[n], self.limit_for(n), self.threads()) for n in names}
        self.lock = threading.Lock()
        self.stop_heartbeat = threading.Event()

    def threads(self) -> int:
        if self.args.threads:
            return self.args.threads
        return max(1, self.args.cores // max(1, self.args.jobs))

    def limit_for(self, name: str) -> float:
        for spec in self.args.stage_timeout or []:
            pattern, _, seconds = spec.rpartition("=")
            if fnmatch.fnmatchcase(name, pattern) or self.plan.stages[name].template == pattern:
                return float(seconds)
        return float(self.args.timeout_s)

    def upstream(self, name: str) -> list[str]:
        return [u for u in self.plan.active_upstream(name) if u in self.jobs]

    # --- one stage --------------------------------------------------------------------------------------------

    def launch(self, job: Job) -> None:
        stage = job.stage
        left = self.budget_left()
        if left is not None:
            job.limit = min(job.limit, left)
        env = {**self.env, "DVC_ROOT": str(self.repo), "DVC_STAGE": stage.name,
               **{k: str(job.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                 "NUMEXPR_NUM_THREADS")}}
        job.start = time.monotonic()
        job.started_at = self.log.elapsed()
        job.status = "running"
        self.log.say(f"START {stage.name} (limit {job.limit:.0f}s, {job.threads} threads) $ {stage.command}")
        if stage.frozen:
            job.rc, job.status, job.end = 0, "frozen", time.monotonic()
            return
        try:
            remove_outs(stage, self.repo)
        except OSError as e:
            self.log.say(f"{stage.name}: could not remove its outs: {e}")
            job.rc, job.status, job.end = 1, "failed", time.monotonic()
            return
        threading.Thread(target=self._run_lines, args=(job, env), daemon=True).start()

    def _run_lines(self, job: Job, env: dict) -> None:
        tag = job.stage.name
        rc = 0
        for line in job.stage.cmd:
            if job.aborted:
                break
            try:
                job.proc = subprocess.Popen(shell_argv(line), cwd=self.repo, env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                            errors="replace", start_new_session=True, close_fds=True)
            except OSError as e:
                self.log(f"[{tag}] could not start: {e}")
                rc = 127
                break
            for text in job.proc.stdout:
                self.log(f"[{tag}] {text.rstrip()}")
            rc = job.proc.wait()
            if rc != 0 or job.aborted:
                break
        job.end = time.monotonic()
        with self.lock:
            job.rc = rc
            job.status = "timeout" if job.aborted else ("ok" if rc == 0 else "failed")

    def abort(self, job: Job) -> None:
        """Past its limit: SIGABRT to the stage's process group (faulthandler prints every thread's stack),
        SIGKILL after a grace period."""
        job.aborted = True
        self.log.say(f"TIMEOUT {job.stage.name} after {job.limit:.0f}s: SIGABRT (tracebacks follow), SIGKILL in "
                     f"{self.args.kill_grace_s:g}s")
        proc = job.proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGABRT)
        except ProcessLookupError:
            return

        def later():
            try:
                proc.wait(timeout=self.args.kill_grace_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        threading.Thread(target=later, daemon=True).start()

    # --- the schedule -----------------------------------------------------------------------------------------

    def budget_left(self) -> float | None:
        if not self.args.budget_s:
            return None
        return self.args.budget_s - self.log.elapsed() - 5

    def heartbeat(self) -> None:
        nvidia = shutil.which("nvidia-smi")
        while not self.stop_heartbeat.wait(self.args.heartbeat_s):
            with self.lock:
                running = [j for j in self.jobs.values() if j.status == "running"]
                done = sum(j.status in ("ok", "frozen") for j in self.jobs.values())
            now = time.monotonic()
            parts = [f"{j.stage.name} {now - j.start:.0f}/{j.limit:.0f}s" for j in running]
            gpu = ""
            if nvidia:
                try:
                    q = subprocess.run([nvidia, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader"],
                                       capture_output=True, text=True, timeout=5)
                    gpu = " gpu[util, mem] " + q.stdout.strip().replace("\n", "; ")
                except (subprocess.TimeoutExpired, OSError):
                    gpu = " gpu: nvidia-smi did not answer in 5s"
            try:
                load = " load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
            except OSError:
                load = ""
            self.log(f"[heartbeat +{self.log.elapsed():.0f}s] done {done}/{len(self.jobs)}; running: "
                     f"{', '.join(parts) or '-'}{load}{gpu}")

    def run(self) -> bool:
        hb = threading.Thread(target=self.heartbeat, daemon=True)
        hb.start()
        failed_once = False
        finished = ("ok", "failed", "timeout", "frozen")
        bad = ("failed", "timeout", "skipped", "not_run", "skipped_budget")
        try:
            while True:
                with self.lock:
                    states = {n: j.status for n, j in self.jobs.items()}
                for n, s in states.items():
                    job = self.jobs[n]
                    if s == "running" and not job.aborted and time.monotonic() - job.start > job.limit:
                        self.abort(job)
                    if s in finished and not job.reported:
                        job.reported = True
                        self.log.say(f"END {n}: {s.upper()} rc={job.rc} wall {job.end - job.start:.1f}s")
                        failed_once |= s in ("failed", "timeout")
                for n in self.names:
                    if states[n] != "pending":
                        continue
                    if any(states[u] in bad for u in self.upstream(n)):
                        states[n] = self.jobs[n].status = "skipped"
                        self.log.say(f"SKIP {n}: an upstream stage did not succeed")
                    elif failed_once and not self.args.keep_going:
                        states[n] = self.jobs[n].status = "not_run"
                slots = self.args.jobs - sum(s == "running" for s in states.values())
                for n in self.names:                                 # dvc's order among the ready ones
                    if slots <= 0:
                        break
                    if states[n] != "pending" or any(states[u] not in ("ok", "frozen") for u in self.upstream(n)):
                        continue
                    left = self.budget_left()
                    if left is not None and left < self.args.min_stage_s:
                        states[n] = self.jobs[n].status = "skipped_budget"
                        self.log.say(f"SKIP {n}: {max(left, 0):.0f}s of --budget-s left")
                        continue
                    self.launch(self.jobs[n])
                    states[n] = self.jobs[n].status
                    slots -= 1
                if all(s not in ("pending", "running") for s in states.values()) and \
                        all(j.reported for j in self.jobs.values() if j.status in finished):
                    break
                time.sleep(0.05)
        finally:
            self.stop_heartbeat.set()
        return all(j.status in ("ok", "frozen") for j in self.jobs.values())

    # --- results ----------------------------------------------------------------------------------------------

    def write_timings(self) -> Path:
        path = self.out / "timings.tsv"
        with open(path, "w") as f:
            f.write("stage\tstatus\trc\twall_s\tlimit_s\tstart_s\tthreads\tcmd\n")
            for n in self.names:
                j = self.jobs[n]
                wall = f"{j.end - j.start:.2f}" if j.end else ""
                start = f"{j.started_at:.2f}" if j.start else ""
                rc = "" if j.rc is None else str(j.rc)
                f.write(f"{n}\t{j.status}\t{rc}\t{wall}\t{j.limit:.0f}\t{start}\t{j.threads}\t"
                        f"{j.stage.command.replace(chr(10), ' ; ')}\n")
        return path

    def collect(self) -> dict:
        """metrics and plots files of the stages that ran, and *.json under their outs (under 1 MB each)."""
        found: dict[str, object] = {}
        for n in self.names:
            if self.jobs[n].status != "ok":
                continue
            for out in self.plan.stages[n].outs:
                path = self.repo / out.path
                for f in out_files(path, "*.json"):
                    rel = f.relative_to(self.repo).as_posix()
                    if out.kind == "outs" and f.suffix != ".json":
                        continue
                    if f.stat().st_size > 1 << 20:
                        continue
                    text = f.read_text(errors="replace")
                    try:
                        found[rel] = json.loads(text) if f.suffix == ".json" else text
                    except json.JSONDecodeError:
                        found[rel] = text
        return found

    def write_results(self, collected: dict) -> None:
        (self.out / "metrics.json").write_text(json.dumps(collected, indent=1, sort_keys=True))
        if self.args.metrics == "combined":
            return
        for n in self.names:
            if self.jobs[n].status != "ok":
                continue
            for out in self.plan.stages[n].outs:
                if out.kind != "metrics":
                    continue
                for f in out_files(self.repo / out.path, "*"):
                    folder = self.out / "metrics"
                    folder.mkdir(exist_ok=True)
                    flat = "".join(c if c.isalnum() or c in "._-" else "_" for c in f.relative_to(self.repo).as_posix())
                    shutil.copyfile(f, folder / flat)


def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--repo", default=".", help="the working copy (dvc.yaml, params.yaml, pipeline/, src/)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="stages (names, stage templates or globs), with their upstream")
    ap.add_argument("--dry", action="store_true", help="print the plan and exit (no preflight, nothing written)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="stages run at once (those whose upstream is done)")
    ap.add_argument("--cores", type=int, default=None, help="CPU cores shared by the jobs (default: this process's)")
    ap.add_argument("--threads", type=int, default=None, help="threads per stage (default cores // jobs)")
    ap.add_argument("--profile", action="append", metavar="FILE", help="profiles/*.yaml overrides (in order)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="more overrides, after the profiles")
    ap.add_argument("--write-params", action="store_true",
                    help="allow writing the overridden params.yaml into --repo (the stages read params.yaml)")
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(tempfile.gettempdir(), "globaldiff-runner"),
                    help="output folder (default $OUT, else <tmp>/globaldiff-runner)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the stages (default: this one)")
    ap.add_argument("--device", choices=("cuda", "cpu", "auto"), help="sets GLOBALDIFF_DEVICE for the stages")
    ap.add_argument("--timeout-s", type=float, default=600, help="limit per stage (default 600)")
    ap.add_argument("--stage-timeout", action="append", metavar="PATTERN=S", help="a limit for matching stages")
    ap.add_argument("--budget-s", type=float, default=None, help="total: no stage starts or runs past it")
    ap.add_argument("--min-stage-s", type=float, default=20, help="with --budget-s: skip a stage with less left")
    ap.add_argument("--kill-grace-s", type=float, default=15, help="SIGABRT to SIGKILL (tracebacks get written)")
    ap.add_argument("--heartbeat-s", type=float, default=20, help="seconds between heartbeat lines")
    ap.add_argument("--preflight-timeout-s", type=float, default=60)
    ap.add_argument("--no-preflight", action="store_true", help="skip steps 1-2 (the torch import and versions)")
    ap.add_argument("--preflight-only", action="store_true", help="steps 1-2 only (exit 0 when torch works)")
    ap.add_argument("--keep-going", action="store_true", help="after a failure, run what does not depend on it")
    ap.add_argument("--metrics", choices=("both", "combined"), default="both",
                    help="combined: only OUT/metrics.json (the device returns at most 8 files)")
    args = ap.parse_args(argv)
    if args.cores is None:
        try:
            args.cores = len(os.sched_getaffinity(0))
        except AttributeError:
            args.cores = os.cpu_count() or 1
    if args.jobs < 1:
        ap.error("-j must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    no_core()                       # inherited by every stage
    repo = Path(args.repo).resolve()
    out = Path(args.out).resolve()
    if not args.dry:
        out.mkdir(parents=True, exist_ok=True)
    log = Log(None if args.dry else out / "run.log", t0)
    log.say(f"globaldiff device runner: repo {repo}, python {args.python}, out {out if not args.dry else '-'}, "
            f"-j {args.jobs}, {args.cores} cores, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", "PYTHONDONTWRITEBYTECODE": "1",
                "MPLBACKEND": "Agg", "DVC_NO_ANALYTICS": "1",
                "PYTHONPATH": str(repo / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")})
    if args.device:
        env["GLOBALDIFF_DEVICE"] = args.device
    try:
        if not (repo / "dvc.yaml").is_file():
            raise planner.PlanError(f"{repo}: no dvc.yaml (run from the repo root or pass --repo)")
        if not args.dry and not args.no_preflight:
            if not preflight(args.python, log, env, args.preflight_timeout_s):
                log.say("stopping: nothing would run without a working torch import")
                return 3
            if args.preflight_only:
                return 0
        params_path = repo / "params.yaml"
        params = yaml.safe_load(params_path.read_text()) if params_path.is_file() else {}
        overrides: dict = {}
        for path in args.profile or []:
            overrides.update(params_profile.load_profile(path))
        overrides.update(params_profile.parse_set(args.set))
        if overrides:
            params = params_profile.apply(params, overrides)
            log.say(f"{len(overrides)} params overrides: " +
                    " ".join(f"{k}={params_profile.hydra_value(v)}" for k, v in overrides.items()))
            if not args.dry:
                if not args.write_params:
                    raise planner.PlanError("overrides change params.yaml, which the stages read: pass --write-params "
                                            "(on a copy of the repo, as on the device) or use `dvc exp run -S` (the "
                                            "line: tools/device/params_profile.py --exp-run)")
                params_profile.write_params(params, params_path)
                log.say(f"wrote {params_path}")
        plan = planner.Plan(yaml.safe_load((repo / "dvc.yaml").read_text()), params)
        names = plan.order(plan.select(args.only) if args.only else None)
    except (planner.PlanError, params_profile.ProfileError) as e:
        log.say(f"error: {e}")
        return 2
    log.say(f"plan: {len(names)} of {len(plan.stages)} stages, dvc's order")
    for i, n in enumerate(names, 1):
        ups = [u for u in plan.active_upstream(n) if u in names]
        log(f"  {i:3d}. {n}  <- {', '.join(ups) or '-'}")
        log(f"       $ {plan.stages[n].command}")
    if args.dry:
        return 0
    if (repo / "params.yaml").is_file():
        shutil.copyfile(repo / "params.yaml", out / "params.yaml")
    shim = make_shim(args.python)
    env["PATH"] = str(shim) + os.pathsep + env.get("PATH", "")
    runner = Runner(args, plan, names, log, out, env)
    try:
        ok = runner.run()
    finally:
        shutil.rmtree(shim, ignore_errors=True)
    runner.write_timings()
    collected = runner.collect()
    runner.write_results(collected)
    log.say("timings (s):")
    for n in names:
        j = runner.jobs[n]
        log(f"  {j.status:14s} {(j.end - j.start) if j.end else 0:8.1f}  {n}")
    log.say(f"{'ALL OK' if ok else 'NOT ALL OK'}: {sum(j.status == 'ok' for j in runner.jobs.values())}/{len(names)} "
            f"stages in {log.elapsed():.1f}s; {len(collected)} metrics/plots files in {out / 'metrics.json'}")
    log.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
