"""The whole DAG on N workers: `dvc repro -s STAGE` for each stage once its upstream stages are done, N at a time.

dvc runs one stage at a time, and on this 2-core CPU one training stage at two threads uses the cores badly (the
products are small: two one-thread stages side by side did 1.4x the work of one two-thread stage, docs/speed.md).
dvc releases its repo lock while a stage's command runs, so several `dvc repro -s` processes can run disjoint
stages of one repo; this tool is the scheduler dvc lacks. Each worker's stage gets `threads` torch/OpenMP threads
(default: the cores / N). The stages, their edges and dvc's run order come from tools/device/plan.py (dvc.yaml and
params.yaml, read without dvc); among the stages that are ready, the one with the longest chain of estimated
work still behind it starts first. A stage that fails is not retried (apart from dvc's "Unable to acquire lock" /
"is busy", retried after a pause), and its downstream stages are skipped; the others go on.

Results are dvc's own: every stage is committed to dvc.lock and the cache by the `dvc repro -s` that ran it, the
same as one `dvc repro` would; the bytes differ from a two-thread run only where the thread count changes float
sums (determinism holds per thread count). A last plain `dvc repro` (here, unless --no-final) finds nothing
left to run when every stage succeeded.

usage (repo root): python tools/parallel_repro.py [--jobs 2] [--threads 1] [--only PATTERN ...]
                                                    [--out reports/repro-timings.tsv]
Writes a TSV (stage, kind, seconds, start offset, worker, status) and a summary .txt beside it, one log per stage
under .dvc/tmp/parallel_repro/; exits 1 if a stage failed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from device import plan as dvcplan  # noqa: E402
from timed_repro import machine  # noqa: E402

# Rough single-stage costs (minutes on the 2-core CPU, docs/speed.md): only the order of starts depends on them.
COST = {"train_backbone": 8.0, "train_diffusion": 1.8, "ablation": 2.5, "longterm": 6.5, "opinions": 0.15,
        "evaluate": 0.1, "fusion_sweep": 0.2}
BACKBONE_COST = {"cbit": 16.0, "srgnn": 11.0, "bert4rec": 7.0, "sasrec": 6.5}
RETRY = ("Unable to acquire lock", "is busy, it is blocked by")


def cost(name: str) -> float:
    kind, _, item = name.partition("@")
    if kind == "train_backbone":
        return next((c for b, c in BACKBONE_COST.items() if f"-{b}-" in f"-{item}-"), COST[kind])
    return COST.get(kind, 0.1)


def priorities(upstream: dict[str, list[str]], costs: dict[str, float]) -> dict[str, float]:
    """Each stage's cost plus the longest chain of costs downstream of it (list scheduling's 'bottom level')."""
    down: dict[str, list[str]] = {n: [] for n in upstream}
    for n, ups in upstream.items():
        for u in ups:
            down[u].append(n)
    level: dict[str, float] = {}

    def visit(n: str) -> float:
        if n not in level:
            level[n] = costs[n] + max((visit(d) for d in down[n]), default=0.0)
        return level[n]

    for n in upstream:
        visit(n)
    return level


def schedule(upstream: dict[str, list[str]], costs: dict[str, float], jobs: int,
             run: Callable[[str, int], bool]) -> dict[str, str]:
    """Run every stage of `upstream` ({stage: its upstream stages, all inside the dict}) with `jobs` workers:
    `run(stage, worker)` returns success. Returns {stage: 'ok' | 'failed' | 'skipped'} (skipped: an upstream
    stage failed). A stage starts only when all its upstream stages are 'ok'."""
    level = priorities(upstream, costs)
    status: dict[str, str] = {}
    running: set[str] = set()
    cond = threading.Condition()
    free = list(range(jobs))

    def ready() -> list[str]:
        out = []
        for n, ups in upstream.items():
            if n in status or n in running:
                continue
            if any(status.get(u) in ("failed", "skipped") for u in ups):
                status[n] = "skipped"
                return ready()       # a skip can skip others: recompute
            if all(status.get(u) == "ok" for u in ups):
                out.append(n)
        return sorted(out, key=lambda n: -level[n])

    def work(n: str, worker: int) -> None:
        try:
            ok = run(n, worker)
        except Exception:     # a crash of the runner is the stage's failure, never a hang of the pool
            ok = False
        with cond:
            running.discard(n)
            status[n] = "ok" if ok else "failed"
            free.append(worker)
            cond.notify_all()

    with cond:
        while len(status) < len(upstream):
            todo = ready()
            while todo and free:
                n, worker = todo.pop(0), free.pop(0)
                running.add(n)
                threading.Thread(target=work, args=(n, worker), daemon=True).start()
            if len(status) == len(upstream):
                break
            if not running and not todo:
                for n in upstream:   # unreachable: upstream outside the dict; mark rather than hang
                    status.setdefault(n, "skipped")
                break
            cond.wait()
    return status


def dvc_runner(logdir: Path, threads: int, t0: float, rows: list, lock: threading.Lock, pause: float = 5.0,
               tries: int = 60, command: tuple[str, ...] = ("dvc", "repro", "-s")) -> Callable[[str, int], bool]:
    """run(stage, worker) for schedule(): `command stage` with `threads` threads, its output in logdir/<stage>.log,
    retried while dvc says its lock is taken; appends (stage, kind, seconds, start, worker, status) to `rows`."""
    command = list(command)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "DVC_NO_ANALYTICS": "1"}

    def run(name: str, worker: int) -> bool:
        log = logdir / (name.replace("/", "_") + ".log")
        start = time.monotonic()
        for attempt in range(tries):
            with open(log, "w") as fh:       # dvc passes the stage's output on (in blocks, not line by line)
                rc = subprocess.run(command + [name], env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
            if rc == 0 or not any(r in log.read_text(errors="replace") for r in RETRY):
                break
            time.sleep(pause)                # another worker holds dvc's lock for a moment: try again
        seconds = time.monotonic() - start
        ok = rc == 0
        with lock:
            rows.append((name, name.split("@", 1)[0], seconds, start - t0, worker, "ok" if ok else "failed"))
            print(f"{time.monotonic() - t0:8.1f}s  worker {worker}  {'done' if ok else 'FAILED'}  {name}  "
                  f"({seconds:.0f} s; log {log})", flush=True)
        return ok

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="per stage (default: cores // jobs, at least 1)")
    ap.add_argument("--only", nargs="+", metavar="PATTERN", help="these stages and their upstream (plan.py)")
    ap.add_argument("--out", default="reports/repro-timings.tsv")
    ap.add_argument("--no-final", action="store_true", help="skip the closing plain `dvc repro`")
    args = ap.parse_args(argv)
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    plan = dvcplan.load(".")
    names = plan.order(plan.select(args.only) if args.only else None)
    keep = set(names)
    upstream = {n: [u for u in plan.active_upstream(n) if u in keep] for n in names}
    logdir = Path(".dvc/tmp/parallel_repro")
    logdir.mkdir(parents=True, exist_ok=True)
    t0, rows, lock = time.monotonic(), [], threading.Lock()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    print(f"{len(names)} stages, {args.jobs} workers x {threads} threads; {machine()}", flush=True)
    status = schedule(upstream, {n: cost(n) for n in names}, args.jobs, dvc_runner(logdir, threads, t0, rows, lock))
    final = 0
    if not args.no_final and all(s == "ok" for s in status.values()):
        final = subprocess.run(["dvc", "repro"] + (names if args.only else [])).returncode
    total = time.monotonic() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        fh.write("stage\tkind\tseconds\tstart\tworker\tstatus\n")
        for row in sorted(rows, key=lambda r: r[3]):
            fh.write(f"{row[0]}\t{row[1]}\t{row[2]:.1f}\t{row[3]:.1f}\t{row[4]}\t{row[5]}\n")
    bad = {n: s for n, s in status.items() if s != "ok"}
    summary = [f"started {started}; {machine()}; {args.jobs} workers x {threads} threads",
               f"total {total:.0f} s ({total / 60:.1f} min), {len(rows)} stages run, final dvc repro rc {final}",
               f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    summary += [f"{s}: {n}" for n, s in bad.items()]
    out.with_suffix(".txt").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 1 if bad or final else 0


if __name__ == "__main__":
    sys.exit(main())
