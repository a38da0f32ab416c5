"""What the Beauty 5-core part of the study would cost on this machine, stage by stage (issue 19, part 3).

Usage: python benchmarks/bench_beauty.py [--steps 3] [--repeat 1] [--threads 1] [--epochs 20] [--only sasrec ...]

Preprocesses the embedded Beauty 5-core (params `datasets.beauty-5core`, data/embedded/) with the library, in
memory (nothing is written in the repo, no dvc), at the committed params of every other section. Each part runs
in its own process, so its peak RSS is that part's alone, as a dvc stage's would be:
  preprocess        load + filters + the loo split
  similarity        `similarity` as committed (method cosine: the dense (M+1)^2 float32 matrix), and top-k
  <backbone>        sasrec, bert4rec, cbit, srgnn: `--steps` training steps (projected to an epoch) and one
                    validation pass over every user (train_backbone's per-epoch model selection)
  diffusion         train_diffusion's step (projected to an epoch), one validation pass of the T-step reverse
                    chain + fused metrics over every user, and fit_diffusion's closing inference (val + test)
  evaluate          evaluate_run on random score matrices of the real shape (val + test, the controls)
  sweep             run_sweep on random score matrices (gammas x norms, val + test)
  propagate         one chunk of evaluate: the propagated control softmax(y) A (dense and top-k A), one Borda ranking
Models are untrained (a step's cost does not depend on the weights). Timing helpers are benchmarks/bench_study.py's.
Each timing keeps the wall time and the process CPU time. On the project's shared 2-core machine the wall time
says mostly how busy the other jobs kept the cores, and at 2 threads OpenMP's spin-waiting inflates the CPU time
too, so the parts run at `--threads 1` by default: their CPU time is the cost, and the study's stages (2 threads)
take between that and half of it. On an idle machine, `--threads 2` gives the wall times directly.
The projection multiplies the per-unit figures by the study's counts: 4 backbones x 3 seeds, `--epochs` backbone
epochs per run (an assumption: SASRec on ML-1M stopped after 14-17; early stopping decides in the study), the
committed diffusion.epochs and eval_every, one evaluate and one fusion_sweep per run. Stage start-up (interpreter,
imports, reading inputs) and dvc's own overhead are not included. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_study  # noqa: E402
from bench_study import (CPU, DiffusionBench, backbone_validation, fmt_s, load, machine, peak_mib,  # noqa: E402
                         random_scores, tiny_val)
from globaldiff.config.params import dataclass_from, load_params  # noqa: E402
from globaldiff.data.sequences import split_sequences  # noqa: E402
from globaldiff.data.windows import evaluation_sets, sliding_windows  # noqa: E402
from globaldiff.diffusion.similarity import build_similarity, dense_cosine_mb  # noqa: E402
from globaldiff.ingest.loaders import load as load_dataset  # noqa: E402
from globaldiff.ingest.preprocess import build, read_filters  # noqa: E402
from globaldiff.run import backbone as run_backbone  # noqa: E402
from globaldiff.run.device import seed_everything  # noqa: E402

DATASET = "beauty-5core"
BACKBONES = ("sasrec", "bert4rec", "cbit", "srgnn")
PARTS = ("preprocess", "similarity", *BACKBONES, "diffusion", "evaluate", "sweep", "propagate")
CHUNK = 2048                    # users of one ranking chunk (ranking.fused.user_chunks' default)
TARGET_MIN, TARGET_GB = 60, 8
CPU_TIMES: list[float] = []     # process CPU seconds (all threads) of each timing, in order


LONG = 5.0                      # CPU seconds: a call this long is timed once, its warm-up call being the timing


def best_of(fn, repeat: int, warmup: int = 1) -> float:
    """bench_study.best_of (the minimum wall time), also keeping the minimum process CPU time of the timed
    calls in CPU_TIMES: on a shared machine the CPU time is what the part costs, the wall time what it took.
    A call whose warm-up takes LONG CPU seconds or more (a validation pass over every user) is not repeated:
    the warm-up is its timing. Installed as bench_study.best_of, so DiffusionBench's timings keep theirs too."""
    cpu: list[float] = []

    def timed():
        start = time.process_time()
        fn()
        cpu.append(time.process_time() - start)
    for _ in range(warmup):
        start = time.perf_counter()
        timed()
        if cpu[-1] >= LONG:
            CPU_TIMES.append(cpu[-1])
            return time.perf_counter() - start
    cpu.clear()
    wall = _best_of(timed, repeat, 0)
    CPU_TIMES.append(min(cpu))
    return wall


_best_of, bench_study.best_of = bench_study.best_of, best_of


def timed_once(fn) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


# ------------------------------------------------------------------------------------------------ one part

def dataset(params: dict):
    cfg = params["datasets"][DATASET]
    processed = build(DATASET, load_dataset(DATASET, cfg, ROOT / "data/embedded"), read_filters(DATASET, cfg))
    return processed, split_sequences(processed.sequences, "loo", len(processed.raw_items))


def similarity_of(params: dict, split, **override):
    return build_similarity(split.train, split.num_items, **{**params["similarity"], **override})


def part_preprocess(params, args) -> dict:
    out = {}
    wall, cpu = timed_once(lambda: out.update(stats=dataset(params)[0].stats))
    return {**out, "seconds": wall, "cpu": cpu}


def part_similarity(params, args) -> dict:
    _, split = dataset(params)
    out = {"dense_mb": dense_cosine_mb(split.num_items), "memory_mb": params["similarity"]["memory_mb"]}
    out["seconds"], out["cpu"] = timed_once(lambda: similarity_of(params, split))
    out["peak_after_committed"] = peak_mib()
    out["topk_seconds"], out["topk_cpu"] = timed_once(lambda: similarity_of(params, split, method="topk"))
    return out


def part_backbone(name: str, params, args) -> dict:
    _, split = dataset(params)
    val, _ = evaluation_sets(split.train, split.val, split.test, params["max_len"])
    train = params["backbones"][name]["train"]
    windows = sliding_windows(split.train, params["max_len"] + 1, train["stride"])
    size = train["batch_size"]
    generator = seed_everything(0)
    backbone = run_backbone.new_backbone(params, name, split.num_items)
    subset = windows[torch.randperm(len(windows), generator=generator)[:args.steps * size]]
    cfg = dataclass_from(run_backbone.BackboneTraining, {**train, "epochs": 1, "patience": 1},
                         exclude=params["eval"]["exclude"])
    small = tiny_val(val)
    # includes one validation of 64 users (a few ms): not subtracted, as in bench_study
    loop = best_of(lambda: run_backbone.train_backbone(backbone, subset, small, cfg, CPU, generator),
                   args.repeat)
    val_s = best_of(backbone_validation(backbone, val, cfg), args.repeat)
    step_cpu, val_cpu = CPU_TIMES[-2:]
    return {"windows": len(windows), "steps": -(-len(windows) // size), "step": loop / args.steps,
            "validation": val_s, "users": len(val.targets), "step_cpu": step_cpu / args.steps,
            "validation_cpu": val_cpu}


def part_diffusion(params, args) -> dict:
    _, split = dataset(params)
    similarity = similarity_of(params, split)
    bench = DiffusionBench(params, split, similarity, args)
    step = bench.step_seconds(None)
    val_s, val_flops, setup_s = bench.validation_seconds()
    inf_s, inf_flops = bench.inference_seconds()
    step_cpu, val_cpu, inf_cpu = CPU_TIMES[-3:]
    cfg = bench.cfg
    passes = len([e for e in range(1, cfg.epochs + 1) if e % cfg.eval_every == 0 or e == cfg.epochs])
    return {"samples": len(bench.windows), "steps": bench.steps, "step": step, "validation": val_s,
            "validation_gflop": val_flops / 1e9, "setup": setup_s, "inference": inf_s,
            "inference_gflop": inf_flops / 1e9, "epochs": cfg.epochs, "passes": passes, "T": bench.schedule.steps,
            "users": len(bench.val.targets), "step_cpu": step_cpu / args.steps, "validation_cpu": val_cpu,
            "inference_cpu": inf_cpu}


def part_evaluate(params, args) -> dict:
    from globaldiff.ranking.evaluation import evaluate_run
    _, split = dataset(params)
    similarity = similarity_of(params, split)
    scores = random_scores(len(split.val), split.num_items, 0)
    wall, cpu = timed_once(lambda: evaluate_run(params, split, scores, similarity, 0))
    del similarity
    topk = similarity_of(params, split, method="topk")           # the propagated control's y A, sparse
    topk_wall, topk_cpu = timed_once(lambda: evaluate_run(params, split, scores, topk, 0))
    return {"seconds": wall, "cpu": cpu, "controls": list(params.get("controls") or []), "topk_seconds": topk_wall,
            "topk_cpu": topk_cpu}


def part_sweep(params, args) -> dict:
    from globaldiff.ranking.sweep import run_sweep
    _, split = dataset(params)
    val, test = evaluation_sets(split.train, split.val, split.test, params["max_len"])
    scores = random_scores(len(val.targets), split.num_items, 1)
    sw = params["sweep"]
    wall, cpu = timed_once(lambda: run_sweep(
        {p: torch.from_numpy(scores[f"{p}_logits"]) for p in ("val", "test")},
        {p: torch.from_numpy(scores[f"{p}_x0"]) for p in ("val", "test")},
        {"val": val, "test": test}, gammas=sw["gammas"], norms=sw["norms"],
        exclude=params["eval"]["exclude"], select_metric=sw["select_metric"]))
    return {"seconds": wall, "cpu": cpu, "settings": len(sw["gammas"]) * len(sw["norms"])}


def part_propagate(params, args) -> dict:
    """What evaluate's parts cost on one chunk of users: the propagated control softmax(y) A with the dense and
    the top-k A, and one Borda ranking (each opinion's ranks before eq. (8))."""
    from globaldiff.ranking.ensemble import borda_ranks
    _, split = dataset(params)
    y = torch.softmax(torch.randn(CHUNK, split.num_items + 1, generator=torch.Generator().manual_seed(0)), dim=1)
    out = {"users": CHUNK}
    for method in ("cosine", "topk"):
        similarity = similarity_of(params, split, method=method)
        out[f"{method}_seconds"], out[f"{method}_cpu"] = timed_once(lambda: similarity.propagate(y))
        del similarity
    out["borda_seconds"], out["borda_cpu"] = timed_once(lambda: borda_ranks(y))
    return out


def run_part(part: str, args) -> dict:
    torch.set_num_threads(args.threads)
    params = load_params(ROOT / "params.yaml")
    if part in BACKBONES:
        out = part_backbone(part, params, args)
    else:
        out = globals()[f"part_{part}"](params, args)
    return {**out, "peak_mib": peak_mib()}


# ------------------------------------------------------------------------------------------------ main

def child(part: str, args) -> dict:
    cmd = [sys.executable, __file__, "--part", part, "--steps", str(args.steps), "--repeat", str(args.repeat),
           "--threads", str(args.threads)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{part}: exit {done.returncode}\n{done.stderr[-2000:]}")
    line = next(l for l in done.stdout.splitlines()[::-1] if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    print(f"  [{part}: {time.perf_counter() - start:.0f} s in its process; {load()}]", flush=True)
    return result


def gib(mib: float) -> str:
    return f"{mib / 1024:.2f} GiB"


def units(r: dict, cpu: bool) -> dict[str, float]:
    """Seconds of each unit the projection multiplies: wall times as measured, or (cpu) process CPU times. The
    validation cache's set-up (once per diffusion run, a few % of it) is a wall time in both."""
    def t(x: dict, key: str) -> float:
        return x[f"{key}_cpu" if key != "seconds" else "cpu"] if cpu else x[key]
    out = {}
    for part in ("preprocess", "evaluate", "sweep"):
        if part in r:
            out[part] = t(r[part], "seconds")
    if "similarity" in r:
        out["similarity"] = t(r["similarity"], "seconds")
        out["similarity_topk"] = r["similarity"]["topk_cpu" if cpu else "topk_seconds"]
    for name in BACKBONES:
        if name in r:
            x = r[name]
            out[f"{name}_step"], out[f"{name}_validation"] = t(x, "step"), t(x, "validation")
            out[f"{name}_epoch"] = x["steps"] * out[f"{name}_step"] + out[f"{name}_validation"]
    if "diffusion" in r:
        x = r["diffusion"]
        out["diffusion_step"], out["diffusion_validation"] = t(x, "step"), t(x, "validation")
        out["diffusion_inference"] = t(x, "inference")
        out["diffusion_epoch"] = x["steps"] * out["diffusion_step"]
        out["diffusion_run"] = (x["epochs"] * out["diffusion_epoch"] + x["passes"] * out["diffusion_validation"]
                                + x["setup"] + out["diffusion_inference"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="training steps per timing")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions per timing (the minimum is kept)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each part (1: its CPU time is robust to other jobs on shared cores)")
    parser.add_argument("--epochs", type=int, default=20, help="backbone epochs per run assumed in the projection")
    parser.add_argument("--only", nargs="*", default=None, choices=PARTS)
    parser.add_argument("--part", default=None, choices=PARTS, help=argparse.SUPPRESS)   # one part, in a child
    args = parser.parse_args()
    if args.part:
        print("RESULT " + json.dumps(run_part(args.part, args)), flush=True)
        return

    params = load_params(ROOT / "params.yaml")
    study = torch.get_num_threads()          # the stages' torch threads (the default: one per core)
    print(f"bench_beauty {datetime.datetime.now().isoformat(timespec='seconds')}: {machine()}; python "
          f"{platform.python_version()}, torch {torch.__version__}, parts at {args.threads} thread(s), the study's "
          f"stages at {study}; {load()}")
    print(f"command: {' '.join([Path(sys.executable).name] + sys.argv)}")
    r = {part: child(part, args) for part in PARTS if args.only is None or part in args.only}
    wall, cpu = units(r, False), units(r, True)

    def both(key: str) -> str:
        return f"{fmt_s(cpu[key])} CPU ({fmt_s(wall[key])} wall)"

    print(f"\nPer part, each in its own process at {args.threads} thread(s) ({args.steps} steps; a call of "
          f"{LONG:g} CPU s or more timed once, a shorter one min of {args.repeat} after a warm-up): process CPU time, "
          f"then the wall time it took here:")
    if "preprocess" in r:
        s = r["preprocess"]["stats"]
        print(f"  preprocess: {s['users']:,} users, {s['items']:,} items, {s['interactions']:,} interactions: "
              f"{both('preprocess')}, peak {gib(r['preprocess']['peak_mib'])}")
    if "similarity" in r:
        x = r["similarity"]
        print(f"  similarity ({params['similarity']['method']}, committed): dense A needs {x['dense_mb']:.0f} MiB, within"
              f" memory_mb = {x['memory_mb']}; {both('similarity')}, peak {gib(x['peak_after_committed'])}; top-k "
              f"(k = {params['similarity']['topk']}): {both('similarity_topk')}")
    for name in BACKBONES:
        if name in r:
            x = r[name]
            print(f"  train_backbone@{name}: {x['windows']:,} windows, {x['steps']} steps per epoch; step "
                  f"{both(f'{name}_step')}; validation pass ({x['users']:,} users) {both(f'{name}_validation')}; "
                  f"epoch {both(f'{name}_epoch')}; peak {gib(x['peak_mib'])}")
    if "diffusion" in r:
        x = r["diffusion"]
        print(f"  train_diffusion: {x['samples']:,} samples, {x['steps']} steps per epoch; step {both('diffusion_step')};"
              f" epoch {both('diffusion_epoch')}; validation pass (T = {x['T']}, {x['users']:,} users, "
              f"{x['validation_gflop']:.0f} GFLOP) {both('diffusion_validation')}, + {x['setup']:.1f} s wall once per "
              f"run (validation cache); closing inference (val + test) {both('diffusion_inference')}; one run "
              f"({x['epochs']} epochs, {x['passes']} validation passes) {both('diffusion_run')}; peak "
              f"{gib(x['peak_mib'])}")
    for part in ("evaluate", "sweep"):
        if part in r:
            print(f"  {part}: {both(part)}; peak {gib(r[part]['peak_mib'])}")
    if "propagate" in r:
        x = r["propagate"]
        print(f"  one chunk of {x['users']:,} users: softmax(y) A with the dense A {fmt_s(x['cosine_cpu'])} CPU, with "
              f"the top-k A {fmt_s(x['topk_cpu'])} CPU; one Borda ranking {fmt_s(x['borda_cpu'])} CPU")
    if "evaluate" in r:
        x = r["evaluate"]
        print(f"  evaluate with similarity.method topk (controls {', '.join(x['controls'])}): {fmt_s(x['topk_cpu'])} "
              f"CPU ({fmt_s(x['topk_seconds'])} wall)")
    seeds = len(params["study"]["seeds"])
    runs = seeds * len(BACKBONES)
    if "preprocess" in r:
        s = r["preprocess"]["stats"]
        matrix = s["users"] * (s["items"] + 1) * 4 / 2 ** 30
        print(f"  score matrices: {matrix:.2f} GiB each (float32 [users, M+1]); train_diffusion writes 4 per run "
              f"({4 * matrix:.1f} GiB), {runs} runs {4 * matrix * runs:.0f} GiB in scores/, and dvc's cache as much "
              f"again unless it links")

    # At one thread a part's CPU time is its cost, and the study's stages (`study` threads) take between it and
    # it / study. At more threads the CPU time is already spread over them (and inflated by their waiting on
    # each other when other jobs hold the cores): it is then both bounds.
    split_by = study if args.threads == 1 else 1
    print(f"\nProjected Beauty part of the study ({len(BACKBONES)} backbones x {seeds} seeds +- GlobalDiff; "
          f"{args.epochs} backbone epochs per run assumed; stage compute only, no start-up or dvc overhead). "
          f"CPU: the parts' CPU time at {args.threads} thread(s); low: "
          + (f"the same over the study's {study} threads (perfect scaling: the stages' wall time lies between the "
             f"two on an idle machine):" if split_by > 1 else "the same (parts already at several threads):"))
    counts = [("preprocess x1", "preprocess", 1), ("similarity x1", "similarity", 1)]
    counts += [(f"train_backbone@{n} x{seeds}", f"{n}_epoch", seeds * args.epochs) for n in BACKBONES]
    counts += [(f"train_diffusion x{runs}", "diffusion_run", runs), (f"evaluate x{runs}", "evaluate", runs),
               (f"fusion_sweep x{runs}", "sweep", runs)]
    counts = [(label, key, n) for label, key, n in counts if key in wall]
    total = sum(n * cpu[key] for _, key, n in counts)
    print(f"  {'stage kind':<28} {'CPU':>10} {'low':>10} {'wall here':>10}  share")
    for label, key, n in counts:
        print(f"  {label:<28} {fmt_s(n * cpu[key]):>10} {fmt_s(n * cpu[key] / split_by):>10} "
              f"{fmt_s(n * wall[key]):>10}  {100 * n * cpu[key] / total:4.1f}%")
    peak = max(x["peak_mib"] for x in r.values())
    worst = max(r, key=lambda p: r[p]["peak_mib"])
    lower = total / split_by
    print(f"  {'total':<28} {fmt_s(total):>10} {fmt_s(lower):>10} {fmt_s(sum(n * wall[k] for _, k, n in counts)):>10}")
    partial = " (the parts measured only)" if args.only is not None else ""
    verdict = "met" if total <= TARGET_MIN * 60 else "met only at the low figure" if lower <= TARGET_MIN * 60 \
        else "NOT met"
    print(f"  against {TARGET_MIN} min{partial}: {verdict} (the low figure is {lower / 60 / TARGET_MIN:.1f}x the "
          f"target); largest peak RSS {gib(peak)} ({worst}) against {TARGET_GB} GB: "
          f"{'met' if peak * 2 ** 20 <= TARGET_GB * 1e9 else 'NOT met'}")
    print(f"done; {load()}")


if __name__ == "__main__":
    main()
