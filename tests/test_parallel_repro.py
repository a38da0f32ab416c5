"""tools/parallel_repro.py: the scheduler runs each stage once, after its upstream stages, at most `jobs` at a time,
longest chain first; a failure skips only what lies downstream of it; dvc's lock message is retried, nothing else."""

import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import parallel_repro  # noqa: E402
from device import plan as dvcplan  # noqa: E402

# a -> b -> d, a -> c -> d, e alone
UPSTREAM = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}
COSTS = {"a": 1.0, "b": 5.0, "c": 1.0, "d": 1.0, "e": 2.0}


class Recorder:
    def __init__(self, fail=()):
        self.fail, self.lock = set(fail), threading.Lock()
        self.started, self.finished, self.running, self.peak = [], [], 0, 0

    def __call__(self, name, worker):
        with self.lock:
            self.started.append(name)
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
            self.finished.append(name)
        return name not in self.fail


def test_each_stage_once_after_its_upstream_and_at_most_jobs_at_once():
    rec = Recorder()
    status = parallel_repro.schedule(UPSTREAM, COSTS, 2, rec)
    assert status == dict.fromkeys(UPSTREAM, "ok")
    assert sorted(rec.started) == sorted(UPSTREAM)
    for name, ups in UPSTREAM.items():
        assert all(rec.finished.index(u) < rec.started.index(name) for u in ups), name
    assert rec.peak == 2          # a and e start together


def test_one_worker_starts_the_longest_chain_of_work_first():
    rec = Recorder()
    parallel_repro.schedule(UPSTREAM, COSTS, 1, rec)
    # a's chain (1 + 5 + 1) is longer than e's (2); after a, b (5) before c (1); then e (2) before d (1)
    assert rec.started == ["a", "b", "c", "e", "d"]
    assert parallel_repro.priorities(UPSTREAM, COSTS) == {"a": 7.0, "b": 6.0, "c": 2.0, "d": 1.0, "e": 2.0}


def test_a_failure_skips_its_downstream_and_nothing_else():
    rec = Recorder(fail={"b"})
    status = parallel_repro.schedule(UPSTREAM, COSTS, 2, rec)
    assert status == {"a": "ok", "b": "failed", "c": "ok", "d": "skipped", "e": "ok"}
    assert "d" not in rec.started


def test_a_runner_that_raises_is_a_failed_stage_not_a_hang():
    def run(name, worker):
        if name == "a":
            raise RuntimeError("boom")
        return True

    status = parallel_repro.schedule(UPSTREAM, COSTS, 2, run)
    assert status == {"a": "failed", "b": "skipped", "c": "skipped", "d": "skipped", "e": "ok"}


def fake_dvc(tmp_path, body):
    script = tmp_path / "fake_dvc.py"
    script.write_text(body)
    return (sys.executable, str(script))


def test_runner_retries_dvcs_lock_message_and_records_the_stage(tmp_path):
    counter = tmp_path / "tries"
    command = fake_dvc(tmp_path, f"""
import os, sys
from pathlib import Path
p = Path({str(counter)!r})
n = int(p.read_text()) + 1 if p.exists() else 1
p.write_text(str(n))
print("threads", os.environ["OMP_NUM_THREADS"], "stage", sys.argv[1])
if n < 3:
    print("ERROR: Unable to acquire lock. Most likely another DVC process is running")
    sys.exit(1)
""")
    rows = []
    run = parallel_repro.dvc_runner(tmp_path, 1, time.monotonic(), rows, threading.Lock(), pause=0.0, command=command)
    assert run("train_backbone@x-sasrec-0", 0)
    assert counter.read_text() == "3"
    assert (tmp_path / "train_backbone@x-sasrec-0.log").read_text().startswith("threads 1 stage train_backbone@x")
    assert [(r[0], r[1], r[4], r[5]) for r in rows] == [("train_backbone@x-sasrec-0", "train_backbone", 0, "ok")]


def test_runner_does_not_retry_a_real_failure(tmp_path):
    counter = tmp_path / "tries"
    command = fake_dvc(tmp_path, f"""
import sys
from pathlib import Path
p = Path({str(counter)!r})
p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))
print("ERROR: failed to reproduce 'x': ConfigError")
sys.exit(1)
""")
    rows = []
    run = parallel_repro.dvc_runner(tmp_path, 1, time.monotonic(), rows, threading.Lock(), pause=0.0, command=command)
    assert not run("x", 1)
    assert counter.read_text() == "1" and rows[0][5] == "failed"


def test_the_committed_dag_schedules_completely():
    plan = dvcplan.load(ROOT)
    names = plan.order()
    upstream = {n: plan.active_upstream(n) for n in names}
    assert all(u in upstream for ups in upstream.values() for u in ups)
    order = []
    status = parallel_repro.schedule(upstream, {n: parallel_repro.cost(n) for n in names}, 2,
                                     lambda n, w: order.append(n) or True)
    assert set(status.values()) == {"ok"} and sorted(order) == sorted(names)
    assert order.index("summary") == len(order) - 1
    # the longest training stages start first
    assert order[2].startswith("train_backbone@ml-1m-cbit-")
