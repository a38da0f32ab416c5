"""What each stage kind of the committed study costs on this machine, against its FLOP floor.

Usage: python benchmarks/bench_study.py [--steps 6] [--repeat 3] [--threads N] [--only gemm sasrec ...]
                                        [--precisions fp32 bf16] [--no-kmeans]

Needs `dvc repro preprocess@ml-1m similarity@ml-1m` first (data/processed/ml-1m, models/ml-1m/similarity.pt).
Everything timed is the library's own code (run/, ranking/, diffusion/), on the real ML-1M shapes, with
untrained models (the time of a step does not depend on the weights); each figure is the minimum over
`--repeat` repetitions of a few steps, never a full training. Per stage kind it prints the wall time of one
step and one pass, the epochs the committed study took (README, Table 2's Time table), the FLOPs of each part
(counted by torch.utils.flop_counter from the shapes: matrix products, convolutions and attention; element-wise
work is not counted), the achieved GFLOP/s, the floor (FLOPs / the GEMM rate measured here at the output layer's
shape [256*10, 64] x [64, 3527]) and how far above it the stage runs. The last table adds the stages up to a
full `dvc repro` of the committed study. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from globaldiff import paths  # noqa: E402
from globaldiff.config.params import dataclass_from, load_params, variant_params  # noqa: E402
from globaldiff.data.sequences import read_split  # noqa: E402
from globaldiff.data.windows import EvalSet, evaluation_sets, last_windows, sliding_windows  # noqa: E402
from globaldiff.diffusion.similarity import ItemSimilarity, build_similarity  # noqa: E402
from globaldiff.io import load_torch  # noqa: E402
from globaldiff.run import backbone as run_backbone  # noqa: E402
from globaldiff.run import diffusion as run_diffusion  # noqa: E402
from globaldiff.run.device import seed_everything  # noqa: E402

# epochs each seed of the committed study trained (README, "Time on this 2-core CPU": early stopping or the cap)
EPOCHS = {"sasrec": [17, 14, 16], "bert4rec": [43, 39, 52], "cbit": [20, 20, 20], "srgnn": [13, 11, 9]}
LONGTERM_EPOCHS = 16        # not recorded in the README: SASRec's mean on the loo split
CPU = torch.device("cpu")
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


# ------------------------------------------------------------------------------------------------ helpers

def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    return f"{model}, {os.cpu_count()} cores{', avx512_bf16' if 'avx512_bf16' in flags else ''}"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load avg {one:.2f} (1 min) {five:.2f} (5 min)"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(fn, repeat: int, warmup: int = 1) -> float:
    """Minimum wall time of fn() over at least `repeat` calls after `warmup` untimed ones; while fewer than two
    calls came within 10% of the minimum (a burst of another job's work), up to 4 x `repeat` calls."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeat or (len(times) < 4 * repeat and
                                  sum(t <= 1.1 * min(times) for t in times) < min(2, repeat)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def flops_of(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


class Report:
    def __init__(self, rates: dict[str, float]):
        self.rates = rates
        self.total: dict[str, dict[str, float]] = {}     # stage kind -> {precision: seconds for the whole study}

    def row(self, label: str, seconds: float, flops: float, extra: str = "") -> None:
        floor = flops / self.rates["fp32"] if flops else 0.0
        rate = flops / seconds / 1e9 if flops and seconds else 0.0
        ratio = f"{seconds / floor:5.1f}x" if floor else "    -"
        strict = f"{seconds / (flops / self.rates['peak']):5.1f}x" if flops else "    -"
        print(f"  {label:<44} {seconds * 1e3:10.1f} ms {flops / 1e9:10.1f} GFLOP {rate:7.1f} GFLOP/s "
              f"floor {floor * 1e3:9.1f} ms {ratio} {strict}  {extra}", flush=True)

    def add(self, kind: str, precision: str, seconds: float) -> None:
        self.total.setdefault(kind, {})[precision] = seconds


# ------------------------------------------------------------------------------------------------ GEMM rate

def gemm_rates(repeat: int) -> dict[str, float]:
    m, k, n = 256 * 10, 64, 3527
    print(f"GEMM at the output layer's shape [{m}, {k}] x [{k}, {n}] (torch.mm into a preallocated output; "
          f"min of {repeat} x 10 products):")
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        out = torch.empty(m, n, dtype=dtype)
        seconds = best_of(lambda: [torch.mm(a, b, out=out) for _ in range(10)], max(repeat, 5), warmup=2) / 10
        rates[name] = 2 * m * k * n / seconds
        fresh = best_of(lambda: [a @ b for _ in range(10)], repeat) / 10
        w = torch.randn(n, k).to(dtype)
        linear = best_of(lambda: [torch.nn.functional.linear(a, w) for _ in range(10)], repeat) / 10
        print(f"  {name}: {rates[name] / 1e9:6.1f} GFLOP/s ({seconds * 1e3:.2f} ms); into a fresh output "
              f"{2 * m * k * n / fresh / 1e9:6.1f}; as nn.Linear (x W^T, fresh output) "
              f"{2 * m * k * n / linear / 1e9:6.1f}", flush=True)
    a, b = torch.randn(1024, 3527), torch.randn(3527, 512)
    out = torch.empty(1024, 512)
    big = best_of(lambda: [torch.mm(a, b, out=out) for _ in range(5)], repeat) / 5
    rates["peak"] = 2 * 1024 * 3527 * 512 / big
    print(f"  fp32 at the denoiser's shape [1024, 3527] x [3527, 512]: {rates['peak'] / 1e9:.1f} GFLOP/s (the last "
          f"column: wall / (FLOPs at this rate), a stricter floor)")
    return rates


# ------------------------------------------------------------------------------------------------ backbones

def tiny_val(val: EvalSet, users: int = 64) -> EvalSet:
    return EvalSet(val.windows[:users], val.targets[:users], val.histories[:users] if val.histories else None)


def bench_backbone(name: str, params: dict, split, val: EvalSet, args, report: Report) -> None:
    train = params["backbones"][name]["train"]
    windows = sliding_windows(split.train, params["max_len"] + 1, train["stride"])
    size = train["batch_size"]
    steps = -(-len(windows) // size)
    generator = seed_everything(0)
    backbone = run_backbone.new_backbone(params, name, split.num_items)
    order = torch.randperm(len(windows), generator=generator)
    subset = windows[order[:args.steps * size]]
    batch = subset[:size]
    small = tiny_val(val)
    print(f"train_backbone@{name}: {len(windows):,} windows, {steps} steps of {size} per epoch, "
          f"epochs per seed {EPOCHS[name]} (committed study); {load()}")

    def one_step_flops() -> float:
        optim = torch.optim.Adam(backbone.parameters(), lr=1e-3)
        backbone.train()

        def step():
            loss = backbone.training_loss(batch, generator)
            optim.zero_grad()
            loss.backward()
        return flops_of(step)

    step_flops = one_step_flops()
    val_flops = flops_of(lambda: run_backbone.backbone_outputs(backbone, val.windows, 1024, CPU))
    cfg = dataclass_from(run_backbone.BackboneTraining, {**train, "epochs": 1, "patience": 1},
                         exclude=params["eval"]["exclude"])
    val_seconds = best_of(backbone_validation(backbone, val, cfg), args.repeat)
    report.row("validation pass (5,180 users, fp32)", val_seconds, val_flops)
    for precision in args.precisions:
        dtype = DTYPES[precision]
        # the loop includes one validation of 64 users (a few ms, < 1% of the steps): not subtracted, since
        # under contention a separately timed subtrahend can exceed its share
        loop = best_of(lambda: run_backbone.train_backbone(backbone, subset, small, cfg, CPU, generator,
                                                           precision=dtype), args.repeat)
        step = loop / args.steps
        report.row(f"training step ({precision})", step, step_flops)
        epoch = steps * step + val_seconds
        report.row(f"epoch = {steps} steps + validation ({precision})", epoch, steps * step_flops + val_flops)
        seeds = sum(EPOCHS[name])
        report.add(f"train_backbone@{name} x{len(EPOCHS[name])}", precision, seeds * epoch)
        print(f"    -> {seeds} epochs over {len(EPOCHS[name])} seeds: {fmt_s(seeds * epoch)} ({precision})")
    print(f"    peak RSS so far {peak_mib():.0f} MiB", flush=True)


def backbone_validation(backbone, val: EvalSet, cfg):
    """A function running one of train_backbone's validation passes (its per-epoch model-selection metrics);
    what train_backbone builds once per run (the exclusion mask) is built here, outside the timing."""
    if hasattr(run_backbone, "BackboneValidation"):
        validate = run_backbone.BackboneValidation(val, backbone.num_items, cfg.exclude)
        return lambda: validate(backbone, CPU)

    def old():
        scores, _, _ = run_backbone.backbone_outputs(backbone, val.windows, 1024, CPU)
        return run_backbone.evaluate_scores(scores, val, cfg.exclude)
    return old


# ------------------------------------------------------------------------------------------------ diffusion

class DiffusionBench:
    """train_diffusion's parts on SASRec (untrained: the denoiser's cost does not depend on the backbone's
    weights, and SASRec's guidance forward is the cheapest) for one set of params."""

    def __init__(self, params: dict, split, similarity: ItemSimilarity, args):
        self.params, self.split, self.args = params, split, args
        generator = seed_everything(0)
        self.generator = generator
        self.backbone = run_backbone.new_backbone(params, "sasrec", split.num_items).eval()
        self.denoiser = run_diffusion.new_denoiser(params, self.backbone)
        self.schedule = run_diffusion.schedule_from_params(params)
        self.cfg = dataclass_from(run_diffusion.DiffusionTraining, params["diffusion"],
                                  norm=params["ensemble"]["norm"], exclude=params["eval"]["exclude"])
        self.inf = run_diffusion.inference_from_params(params)
        self.similarity = similarity
        self.windows = last_windows(split.train, params["max_len"])
        self.val, self.test = evaluation_sets(split.train, split.val, split.test, params["max_len"])
        self.logits, self.h, self.mean = run_backbone.backbone_outputs(self.backbone, self.val.windows,
                                                                       self.inf.batch_size, CPU)

    @property
    def steps(self) -> int:
        return -(-len(self.windows) // self.cfg.batch_size)

    def step_seconds(self, dtype) -> float:
        size = self.cfg.batch_size
        subset = self.windows[:self.args.steps * size]
        small = tiny_val(self.val)
        cfg = replace(self.cfg, epochs=1, eval_every=1)

        def loop():
            run_diffusion.train_diffusion(self.backbone, self.denoiser, self.schedule, self.similarity, subset,
                                          small, cfg, self.inf, CPU, self.generator, precision=dtype)
        # includes train_diffusion's closing validation of 64 users (not subtracted, as for the backbones)
        return best_of(loop, self.args.repeat) / self.args.steps

    def step_flops(self) -> float:
        """One training step (forward and backward), counted on train_diffusion's own step at one batch."""
        cfg = replace(self.cfg, epochs=1, eval_every=10 ** 6)
        small = tiny_val(self.val, 1)
        subset = self.windows[:self.cfg.batch_size]
        total = flops_of(lambda: run_diffusion.train_diffusion(self.backbone, self.denoiser, self.schedule,
                                                               self.similarity, subset, small, cfg, self.inf,
                                                               CPU, self.generator))
        logits, h, mean = run_backbone.backbone_outputs(self.backbone, small.windows, 1024, CPU)
        return total - flops_of(lambda: self.validation(small, logits, h, mean, self.validator(small, logits))) - \
            flops_of(lambda: run_backbone.backbone_outputs(self.backbone, small.windows, 1024, CPU))

    def validator(self, val: EvalSet, logits):
        """What train_diffusion builds once per run for its validation passes (None before that cache)."""
        fused = getattr(run_diffusion, "FusedValidation", None)
        return fused(logits, val, self.cfg.exclude) if fused is not None else None

    def validation(self, val: EvalSet, logits, h, mean, validator=None):
        """One of train_diffusion's validation passes: the reverse chain for every user, then the fused metrics."""
        x0_hat = run_diffusion.diffusion_predict(self.denoiser, self.schedule, logits, h, mean, self.inf, CPU)
        if validator is not None:
            return validator.metrics(x0_hat, self.cfg.select_gamma, self.cfg.norm)
        return run_diffusion.evaluate_all(logits, x0_hat, val, self.cfg.select_gamma, self.cfg.norm, self.cfg.exclude)

    def repeats(self) -> tuple[int, int]:
        """(repeat, warmup) for the passes: long chains (T >= 100) are timed once."""
        return (self.args.repeat, 1) if self.schedule.steps < 100 else (1, 0)

    def validation_seconds(self) -> tuple[float, float, float]:
        """(seconds of one validation pass, its FLOPs, seconds of the once-per-run validation set-up)."""
        start = time.perf_counter()
        validator = self.validator(self.val, self.logits)
        setup = time.perf_counter() - start
        fn = lambda: self.validation(self.val, self.logits, self.h, self.mean, validator)  # noqa: E731
        part = tiny_val(self.val, 1024)
        flops = flops_of(lambda: self.validation(part, self.logits[:1024], self.h[:1024], self.mean[:1024],
                                                 self.validator(part, self.logits[:1024])))
        return best_of(fn, *self.repeats()), flops * len(self.val.targets) / 1024, setup

    def inference_seconds(self) -> tuple[float, float]:
        """fit_diffusion's closing pass: backbone outputs and the reverse chain on validation and test."""
        def fn(users=None):
            for evalset in (self.val, self.test):
                logits, h, mean = run_backbone.backbone_outputs(self.backbone, evalset.windows[:users],
                                                                self.inf.batch_size, CPU)
                run_diffusion.diffusion_predict(self.denoiser, self.schedule, logits, h, mean, self.inf, CPU)
        repeat, _ = self.repeats()
        flops = flops_of(lambda: fn(1024)) * len(self.val.targets) / 1024
        return best_of(fn, max(1, repeat - 1), warmup=0), flops


def diffusion_run(bench: DiffusionBench, report: Report, label: str, precisions) -> dict[str, float]:
    """Seconds of one fit_diffusion per precision (the validation and inference stay float32)."""
    cfg = bench.cfg
    passes = len([e for e in range(1, cfg.epochs + 1) if e % cfg.eval_every == 0 or e == cfg.epochs])
    print(f"{label}: {len(bench.windows):,} samples, {bench.steps} steps of {cfg.batch_size} per epoch, "
          f"{cfg.epochs} epochs, {passes} validation passes, T = {bench.schedule.steps}, "
          f"network {bench.params['denoiser']['network']}; {load()}")
    step_flops = bench.step_flops()
    val_s, val_f, setup_s = bench.validation_seconds()
    report.row("validation pass (reverse chain + fused metrics)", val_s, val_f,
               f"(+ {setup_s:.2f} s once per run: validation cache)" if setup_s > 1e-3 else "")
    inf_s, inf_f = bench.inference_seconds()
    report.row("closing inference (val + test)", inf_s, inf_f)
    out = {}
    for precision in precisions:
        step = bench.step_seconds(DTYPES[precision])
        report.row(f"training step ({precision})", step, step_flops)
        total = cfg.epochs * bench.steps * step + passes * val_s + setup_s + inf_s
        flops = cfg.epochs * bench.steps * step_flops + passes * val_f + inf_f
        report.row(f"one run ({precision} training)", total, flops)
        out[precision] = total
    print(f"    peak RSS so far {peak_mib():.0f} MiB", flush=True)
    return out


# ------------------------------------------------------------------------------------------------ no training

def random_scores(users: int, items: int, seed: int) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    return {f"{part}_{kind}": (torch.randn(users, items + 1, generator=g) if kind == "logits"
                               else torch.rand(users, items + 1, generator=g)).numpy()
            for part in ("val", "test") for kind in ("logits", "x0")}


def stage_startup(modules: list[str], repeat: int) -> float:
    """Seconds for a fresh interpreter to import a stage's modules (what each dvc stage pays before working)."""
    code = "import " + ", ".join(modules)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def run():
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    return best_of(run, repeat, warmup=1)


# ------------------------------------------------------------------------------------------------ main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--steps", type=int, default=5, help="training steps per timing")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per timing (the minimum is kept)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    parser.add_argument("--only", nargs="*", default=None,
                        choices=["gemm", "sasrec", "bert4rec", "cbit", "srgnn", "diffusion", "ablation",
                                 "longterm", "evaluate", "sweep"])
    parser.add_argument("--no-kmeans", action="store_true", help="skip timing the three K-means builds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wanted = lambda part: args.only is None or part in args.only  # noqa: E731
    print(f"bench_study {datetime.datetime.now().isoformat(timespec='seconds')}: {machine()}; python "
          f"{platform.python_version()}, torch {torch.__version__}, {args.threads} threads; {load()}")
    print(f"command: {' '.join([Path(sys.executable).name] + sys.argv)}")
    rates = gemm_rates(args.repeat)
    report = Report(rates)
    print("columns: wall time (min of repeats), FLOPs, achieved rate, floor = FLOPs / fp32 GEMM rate at the output "
          "layer's shape, wall / floor, wall / (FLOPs / fp32 rate at the denoiser's shape)")
    params = load_params(ROOT / "params.yaml")
    split = read_split(ROOT / paths.processed(args.dataset), "loo")
    val, test = evaluation_sets(split.train, split.val, split.test, params["max_len"])
    similarity = ItemSimilarity.from_state_dict(load_torch(ROOT / paths.similarity(args.dataset)))

    for name in ("sasrec", "bert4rec", "cbit", "srgnn"):
        if wanted(name):
            bench_backbone(name, params, split, val, args, report)

    main_run = None
    if wanted("diffusion") or wanted("ablation") or wanted("longterm"):
        main_run = diffusion_run(DiffusionBench(params, split, similarity, args), report,
                                 "train_diffusion (main recipe)", args.precisions)
        if wanted("diffusion"):
            for precision, seconds in main_run.items():
                report.add("train_diffusion x12", precision, 12 * seconds)

    if wanted("evaluate") or wanted("ablation"):
        scores = random_scores(len(val.targets), split.num_items, 0)
        import tempfile
        from globaldiff.io import load_npy, save_npy
        from globaldiff.ranking.evaluation import evaluate_run, fuse_run, run_opinions
        opinions = run_opinions(params, split, scores, similarity, 0)
        opinions_s = best_of(lambda: run_opinions(params, split, scores, similarity, 0), args.repeat)
        fuse_s = best_of(lambda: fuse_run(params, split, opinions), args.repeat)
        with tempfile.TemporaryDirectory() as tmp:   # what the evaluate stage reads: the opinions stage's files
            for name, array in opinions.items():
                save_npy(f"{tmp}/{name}.npy", array)
            read_s = best_of(lambda: [load_npy(f"{tmp}/{name}.npy") for name in opinions], args.repeat)
        megabytes = sum(a.nbytes for a in opinions.values()) / 2**20
        startup = stage_startup(["torch", "globaldiff.ranking.evaluation", "globaldiff.data.sequences",
                                 "globaldiff.io", "globaldiff.config.params"], args.repeat)
        load_s = best_of(lambda: (read_split(ROOT / paths.processed(args.dataset), "loo"),
                                  ItemSimilarity.from_state_dict(load_torch(ROOT / paths.similarity(args.dataset)))),
                         args.repeat)
        split_s = best_of(lambda: read_split(ROOT / paths.processed(args.dataset), "loo"), args.repeat)
        print(f"opinions: run_opinions (val + test, 3 controls) {opinions_s:.2f} s, {megabytes:.0f} MiB of .npy; "
              f"interpreter start + imports {startup:.2f} s; reading split + similarity {load_s:.2f} s; {load()}")
        print(f"evaluate: fuse_run at gamma (val + test, 3 controls) {fuse_s:.2f} s; reading the opinions "
              f"{read_s:.2f} s; reading the split {split_s:.2f} s")
        per_opinions = opinions_s + startup + load_s
        per = fuse_s + read_s + startup + split_s
        print(f"    -> one opinions stage ~{per_opinions:.2f} s, one evaluate stage ~{per:.2f} s (+ dvc's own "
              f"overhead); 12 of each {fmt_s(12 * per_opinions)}, {fmt_s(12 * per)} (a gamma change: the evaluates)")
        for precision in args.precisions:
            report.add("opinions x12", precision, 12 * per_opinions)
            report.add("evaluate x12", precision, 12 * per)
        at_selection = {**params, "gamma": params["diffusion"]["select_gamma"], "controls": []}
        ablation_eval = best_of(lambda: evaluate_run(at_selection, split, scores, similarity, 0), args.repeat)
    if wanted("sweep"):
        from globaldiff.ranking.sweep import run_sweep
        scores = random_scores(len(val.targets), split.num_items, 1)
        sw = params["sweep"]
        fn = lambda: run_sweep({p: torch.from_numpy(scores[f"{p}_logits"]) for p in ("val", "test")},  # noqa: E731
                               {p: torch.from_numpy(scores[f"{p}_x0"]) for p in ("val", "test")},
                               {"val": val, "test": test}, gammas=sw["gammas"], norms=sw["norms"],
                               exclude=params["eval"]["exclude"], select_metric=sw["select_metric"])
        sweep_s = best_of(fn, max(1, args.repeat - 1), warmup=0)
        print(f"fusion_sweep: run_sweep ({len(sw['gammas'])} gammas x {len(sw['norms'])} norms, val + test) "
              f"{sweep_s:.2f} s; {load()}")
        for precision in args.precisions:
            report.add("fusion_sweep x12", precision, 12 * sweep_s)

    if wanted("ablation"):
        ab = params["ablations"]
        totals = {p: 0.0 for p in args.precisions}
        cache: dict[tuple, dict[str, float]] = {}
        for variant in ab["run"]:
            merged = variant_params(params, variant)
            sim_cfg = merged["similarity"]
            key = (merged["T"], merged["denoiser"]["network"], merged["denoiser"]["guidance"],
                   merged["diffusion"]["loss"], merged["inference"]["noise"], merged["inference"]["input"])
            sim_s = 0.0
            if sim_cfg != params["similarity"]:
                if sim_cfg["method"] == "kmeans" and args.no_kmeans:
                    sim_s = float("nan")
                else:
                    start = time.perf_counter()
                    build_similarity(split.train, split.num_items, **sim_cfg)
                    sim_s = time.perf_counter() - start
            if key not in cache:
                bench = DiffusionBench(merged, split, similarity, args)
                cache[key] = diffusion_run(bench, report, f"ablation@{variant} (diffusion run)", args.precisions)
            sim_note = "" if sim_s == 0.0 else f" + similarity {sim_s:.1f} s"
            print(f"ablation@{variant}: diffusion run as {key}{sim_note} + evaluation {ablation_eval:.1f} s")
            for precision in args.precisions:
                totals[precision] += cache[key][precision] + (0.0 if np.isnan(sim_s) else sim_s) + ablation_eval
        for precision in args.precisions:
            report.add(f"ablation x{len(ab['run'])}", precision, totals[precision])

    if wanted("longterm") and main_run is not None:
        lt = read_split(ROOT / paths.processed(params["longterm"]["dataset"]), "longterm")
        train = params["backbones"]["sasrec"]["train"]
        windows = sliding_windows(lt.train, params["max_len"] + 1, train["stride"])
        ratio = len(windows) / len(sliding_windows(split.train, params["max_len"] + 1, train["stride"]))
        start = time.perf_counter()
        build_similarity(lt.train, lt.num_items, **params["similarity"])
        sim_s = time.perf_counter() - start
        sas = report.total.get("train_backbone@sasrec x3", {})
        for precision in args.precisions:
            if precision not in sas:
                continue
            backbone_s = sas[precision] / sum(EPOCHS["sasrec"]) * LONGTERM_EPOCHS * ratio
            report.add("longterm x1", precision, backbone_s + sim_s + main_run[precision])
        print(f"longterm: {len(windows):,} SASRec windows ({ratio:.3f} x the loo split's), {LONGTERM_EPOCHS} epochs "
              f"assumed; similarity {sim_s:.1f} s; plus one diffusion run (as train_diffusion above)")

    gemm_rates(args.repeat)
    print("  (the GEMM rates again at the end, for the drift under contention; the floors above use the first)")
    print(f"\nEstimated full `dvc repro` of the committed study (stage compute only: dvc's per-stage overhead, "
          f"download/preprocess/similarity and summary, ~1 min together, not included); {load()}")
    for precision in args.precisions:
        total = sum(v.get(precision, 0.0) for v in report.total.values())
        print(f"  training in {precision}: {fmt_s(total)}")
        for kind, values in report.total.items():
            if precision in values:
                print(f"    {kind:<36} {fmt_s(values[precision]):>10}  ({100 * values[precision] / total:4.1f}%)")
    print(f"peak RSS {peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
