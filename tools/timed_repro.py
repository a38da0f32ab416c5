"""`dvc repro` with a clock: per-stage wall times, the total, the date and the machine, for docs/speed.md.

dvc prints `Running stage 'NAME':` when a stage starts and nothing when it ends, so a stage's time is from its
line to the next stage's line (the last one: to the end of the run); stages dvc skips (`Stage 'NAME' didn't
change, skipping`) get no time. Every line dvc prints is echoed, prefixed by the seconds since the start.

usage (repo root): python tools/timed_repro.py [--out reports/repro-timings.tsv] [-- DVC REPRO ARGS ...]
Writes the TSV (stage, kind, seconds, start offset) and a short summary (machine, threads, load, total) beside
it as .txt; exits with dvc's status. Prints figures only: nothing here is a test or a stage.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

START = re.compile(r"^Running stage '([^']+)'")


def stage_times(events: list[tuple[float, str]], end: float) -> list[tuple[str, float, float]]:
    """[(stage, seconds, start offset)] from (offset, line) events: each `Running stage` line to the next one,
    the last to `end`."""
    starts = [(t, m.group(1)) for t, line in events if (m := START.match(line))]
    out = []
    for i, (t, name) in enumerate(starts):
        stop = starts[i + 1][0] if i + 1 < len(starts) else end
        out.append((name, stop - t, t))
    return out


def kind_totals(times: list[tuple[str, float, float]]) -> dict[str, tuple[int, float]]:
    """{stage kind (the name before '@'): (count, seconds)} in first-seen order."""
    totals: dict[str, tuple[int, float]] = {}
    for name, seconds, _ in times:
        kind = name.split("@", 1)[0]
        count, total = totals.get(kind, (0, 0.0))
        totals[kind] = (count + 1, total + seconds)
    return totals


def machine() -> str:
    model = platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.platform()}, python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports/repro-timings.tsv")
    ap.add_argument("dvc_args", nargs="*", help="arguments after `--` go to dvc repro")
    args = ap.parse_args()
    out = Path(args.out)
    began, t0 = datetime.datetime.now(datetime.timezone.utc), time.monotonic()
    load_before = os.getloadavg()
    events: list[tuple[float, str]] = []
    proc = subprocess.Popen(["dvc", "repro", *args.dvc_args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        offset = time.monotonic() - t0
        events.append((offset, line.rstrip("\n")))
        print(f"[{offset:8.1f}s] {line}", end="", flush=True)
    status = proc.wait()
    total = time.monotonic() - t0
    times = stage_times(events, total)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w") as f:
        f.write("stage\tkind\tseconds\tstart_s\n")
        for name, seconds, start in times:
            f.write(f"{name}\t{name.split('@', 1)[0]}\t{seconds:.1f}\t{start:.1f}\n")
    tmp.replace(out)
    lines = [f"dvc repro {' '.join(args.dvc_args)}".rstrip() + f": exit {status}",
             f"started {began:%Y-%m-%d %H:%M} UTC, total {total / 60:.1f} min ({total:.0f} s), {len(times)} stages ran",
             f"machine: {machine()}",
             f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f} (1 min)",
             "per stage kind: " + "; ".join(f"{k} x{n} {s / 60:.1f} min" for k, (n, s) in kind_totals(times).items())]
    summary = out.with_suffix(".txt")
    tmp = summary.with_name(f".{summary.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(summary)
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
