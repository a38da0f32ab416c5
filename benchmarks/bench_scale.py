"""Wall time and peak memory of each heavy step at KuaiRec scale, on synthetic data (benchmarks/synthetic.py).

Usage: python benchmarks/bench_scale.py [--items-scale 10] [--threads N] [--topk 100] [--memory-mb 2048]
                                        [--clusters 500] [--users N] [--only STEP ...] [--step-timeout 600]

Each step runs in a fresh subprocess, so that its peak memory is its own: the figures are the process's
ru_maxrss (interpreter, torch and the data included) and the step's own high-water mark (VmHWM of
/proc/self/status, reset through /proc/self/clear_refs just before the step) above the RSS it started from.
The data are generated once (in a subprocess too) and handed to the steps as an .npz; steps that need a
similarity load the one the similarity step saved. Untrained models: the timings do not depend on the weights.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

TARGET_SECONDS, TARGET_MIB = 10.0, 2048     # similarity at KuaiRec scale on 2 cores (the target)


# ------------------------------------------------------------------------------------------- memory

def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def hwm_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_hwm() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -------------------------------------------------------------------------------------------- steps

def load_split(path: str):
    import numpy as np

    from globaldiff.data.sequences import Split

    z = np.load(path)
    bounds = np.cumsum(z["lengths"])[:-1]
    train = np.split(z["items"], bounds)
    return Split(users=np.arange(len(train)), train=train, val=z["val"], test=z["test"], num_items=int(z["num_items"]))


def read_params() -> dict:
    """params.yaml through the library's own loader (the model sections the steps use)."""
    from globaldiff.config.params import load_params

    return load_params(ROOT / "params.yaml")


def step_data(args) -> dict:
    from dataclasses import replace

    import numpy as np

    from synthetic import KUAIREC, describe, synthetic_sequences
    from globaldiff.data.sequences import split_sequences

    shape = replace(KUAIREC.scaled_items(args.items_scale), **({"users": args.users} if args.users else {}))
    start = time.perf_counter()
    sequences = synthetic_sequences(shape, args.seed)
    seconds = time.perf_counter() - start
    split = split_sequences(sequences, "loo", shape.items)
    np.savez(args.data, items=np.concatenate(split.train), lengths=np.array([len(s) for s in split.train]),
             val=split.val, test=split.test, num_items=shape.items)
    return {"seconds": seconds, "note": describe(sequences, shape.items)}


def _similarity(args, method: str):
    import torch

    from globaldiff import ConfigError
    from globaldiff.diffusion.similarity import build_similarity

    split = load_split(args.data)
    kwargs = {"topk": args.topk, "memory_mb": args.memory_mb, "clusters": args.clusters}
    return split, lambda: build_similarity(split.train, split.num_items, method, **kwargs), ConfigError, torch


def step_similarity(args) -> dict:
    method = args.step.split(":")[1]
    split, build, config_error, torch = _similarity(args, method)
    try:
        sim, measured = timed(build)
    except config_error as err:
        return {"refused": str(err)}
    if method in ("cosine", "topk"):
        torch.save(sim.state_dict(), Path(args.work) / f"similarity-{method}.pt")
    stored = sum(t.numel() * t.element_size() for t in sim.state_dict().values()) / 2 ** 20
    return {**measured, "note": f"stored A: {stored:.0f} MiB ({sim.form}, {' x '.join(map(str, _shape(sim)))})"}


def _shape(sim):
    return tuple((sim.matrix if sim.matrix is not None else sim.values).shape)


def load_similarity(args, form: str):
    import torch

    from globaldiff.diffusion.similarity import ItemSimilarity

    path = Path(args.work) / f"similarity-{form}.pt"
    if not path.exists():
        return None
    return ItemSimilarity.from_state_dict(torch.load(path, weights_only=True))


def _sampling_setup(args, form: str):
    import torch

    from globaldiff.data.windows import last_windows
    from globaldiff.run.backbone import new_backbone

    params = read_params()
    split = load_split(args.data)
    sim = load_similarity(args, form)
    backbone = new_backbone(params, "sasrec", split.num_items)
    windows = last_windows(split.train, params["max_len"])
    valid = backbone.valid_mask_positions(windows)
    keep = valid.any(dim=1)
    return params, split, sim, backbone, windows[keep], valid[keep].float(), torch


def _diffusion_config(params: dict):
    from globaldiff.config.params import dataclass_from
    from globaldiff.run.diffusion import DiffusionTraining

    return dataclass_from(DiffusionTraining, params["diffusion"], norm=params["ensemble"]["norm"],
                          exclude=params["eval"]["exclude"])


def step_samples(args) -> dict:
    """train_diffusion's draws for one batch (run.diffusion.training_batch: eq. 2-4), then for one epoch."""
    from globaldiff.run.diffusion import schedule_from_params, training_batch

    form = args.step.split(":")[1]
    params, split, sim, _, windows, valid, torch = _sampling_setup(args, form)
    if sim is None:
        return {"refused": f"no {form} similarity (its step was refused or failed)"}
    cfg, schedule = _diffusion_config(params), schedule_from_params(params)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(windows), generator=generator)
    size = cfg.batch_size

    def batch_samples(idx):
        return training_batch(windows, valid, idx, sim, schedule, cfg, generator)

    batch_samples(order[:size])                                          # warm-up
    _, one = timed(lambda: batch_samples(order[:size]))

    def epoch_samples():
        for s in range(0, len(order), size):
            batch_samples(order[s:s + size])                             # x_0 dropped, as a training step would

    _, epoch = timed(epoch_samples)
    return {**epoch, "batch_seconds": one["seconds"],
            "note": f"one batch of {size}: {one['seconds'] * 1e3:.1f} ms; one epoch of {len(windows):,} samples: "
                    f"{len(windows) / epoch['seconds']:,.0f} samples/s"}


def step_diffusion(args) -> dict:
    """One epoch of train_diffusion (untrained SASRec, real denoiser and sampling), validation on 8 users only."""
    from dataclasses import replace

    from globaldiff.data.windows import EvalSet, last_windows
    from globaldiff.run.backbone import backbone_outputs
    from globaldiff.run.diffusion import (diffusion_predict, inference_from_params, new_denoiser,
                                          schedule_from_params, train_diffusion)

    form = args.step.split(":")[1]
    params, split, sim, backbone, _, _, torch = _sampling_setup(args, form)
    if sim is None:
        return {"refused": f"no {form} similarity (its step was refused or failed)"}
    windows = last_windows(split.train, params["max_len"])
    schedule, denoiser = schedule_from_params(params), new_denoiser(params, backbone)
    cfg = replace(_diffusion_config(params), epochs=1)
    val = EvalSet(windows[:8], torch.as_tensor(split.val[:8]), split.train[:8])
    cpu, inf = torch.device("cpu"), inference_from_params(params)
    generator = torch.Generator().manual_seed(0)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])            # its first use imports torch._dynamo (~1 s)

    def validation():                                                  # what train_diffusion runs after its epoch
        logits, h, mean = backbone_outputs(backbone, val.windows, inf.batch_size, cpu)
        return diffusion_predict(denoiser, schedule, logits, h, mean, inf, cpu)

    validation()                                                       # warm-up
    _, val_measured = timed(validation)
    _, measured = timed(lambda: train_diffusion(backbone, denoiser, schedule, sim, windows, val, cfg, inf, cpu,
                                                generator))
    epoch = measured["seconds"] - val_measured["seconds"]
    params_m = sum(p.numel() for p in denoiser.parameters()) / 1e6
    return {**measured, "note": f"{len(windows) / epoch:,.0f} samples/s ({len(windows):,} samples, batch "
                                f"{cfg.batch_size}, denoiser {params_m:.1f} M parameters; the wall time includes "
                                f"train_diffusion's closing validation, here 8 users: {val_measured['seconds']:.2f} s)"}


def step_inference(args) -> dict:
    """The evaluate stage's ranking for every test user: the backbone's scores (and the reverse chain's x0_hat),
    then ranking.fused.user_ranks (exclusion mask, eq. 8 fusion, each target's rank), in its user chunks."""
    from globaldiff.data.windows import evaluation_sets
    from globaldiff.ranking.fused import user_ranks
    from globaldiff.run.backbone import backbone_outputs
    from globaldiff.run.diffusion import diffusion_predict, inference_from_params, new_denoiser, schedule_from_params

    part = args.step.split(":")[1]
    params, split, _, backbone, _, _, torch = _sampling_setup(args, "none")
    _, test = evaluation_sets(split.train, split.val, split.test, params["max_len"])
    inf, schedule, denoiser = inference_from_params(params), schedule_from_params(params), new_denoiser(params, backbone)
    cpu = torch.device("cpu")

    def rank():
        logits, h, mean = backbone_outputs(backbone, test.windows, inf.batch_size, cpu)
        x0_hat = logits if part == "backbone" else diffusion_predict(denoiser, schedule, logits, h, mean, inf, cpu)
        return user_ranks(logits, x0_hat, test, params["gamma"], params["ensemble"]["norm"],
                          params["eval"]["exclude"], chunk=args.rank_chunk)["fusion"]

    ranks, measured = timed(rank)
    what = "backbone scores" if part == "backbone" else f"backbone + reverse chain T={params['T']}"
    return {**measured, "note": f"{what} -> user_ranks (eq. 8 fusion, ranks) for {len(ranks):,} users in chunks of "
                                f"{args.rank_chunk}: {len(ranks) / measured['seconds']:,.0f} users/s"}


def timed(fn):
    """(result, {'seconds', 'start_mib', 'step_peak_mib'}): VmHWM reset just before fn when the kernel allows."""
    import gc

    gc.collect()
    start_mib = rss_mib()
    reset = reset_hwm()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    hwm = hwm_mib() if reset else None
    return out, {"seconds": seconds, "start_mib": start_mib,
                 "step_peak_mib": None if hwm is None else max(0.0, hwm - start_mib)}


STEPS = {
    "similarity:cosine": ("similarity: exact cosine, dense (M+1)^2", step_similarity),
    "similarity:topk": ("similarity: exact cosine, top-k rows", step_similarity),
    "similarity:kmeans": ("similarity: k-means cluster-item", step_similarity),
    "samples:cosine": ("samples: rows + eq. 2-3 + Bernoulli (dense A)", step_samples),
    "samples:topk": ("samples: rows + eq. 2-3 + Bernoulli (top-k A)", step_samples),
    "diffusion:cosine": ("diffusion: 1 training epoch (dense A)", step_diffusion),
    "diffusion:topk": ("diffusion: 1 training epoch (top-k A)", step_diffusion),
    "inference:backbone": ("inference: evaluate's ranking, backbone", step_inference),
    "inference:diffusion": ("inference: evaluate's ranking, + diffusion", step_inference),
}


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    fn = step_data if args.step == "data" else STEPS[args.step][1]
    out = fn(args)
    out["peak_mib"] = maxrss_mib()
    print("RESULT " + json.dumps(out), flush=True)


# ------------------------------------------------------------------------------------------- parent

def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            total = int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) / 2 ** 20
        memory = f", {total:.0f} GiB RAM"
    except (OSError, StopIteration):
        memory = ""
    return f"{model}, {os.cpu_count()} logical cores ({usable} usable){memory}, {platform.system()} {platform.release()}"


def run_child(args, step: str, extra: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "OPENBLAS_NUM_THREADS": str(args.threads), "PYTHONPATH": os.pathsep.join(
               [str(ROOT / "src"), str(HERE), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", step, *extra]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.step_timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"no result within --step-timeout {args.step_timeout} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[len("RESULT "):])
            out["process_seconds"] = time.perf_counter() - start
            return out
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"failed": f"exit {done.returncode}: " + " | ".join(tail)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items-scale", type=int, default=1, help="1: KuaiRec (10,596 items); 10: 105,960 items")
    parser.add_argument("--users", type=int, default=0, help="0: KuaiRec's 7,176")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--topk", type=int, default=100)
    parser.add_argument("--memory-mb", type=float, default=2048)
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument("--rank-chunk", type=int, default=2048, help="users per chunk of user_ranks (the pipeline: 2048)")
    parser.add_argument("--only", nargs="*", choices=sorted(STEPS), help="run these steps only")
    parser.add_argument("--step-timeout", type=int, default=600)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    if args.threads is None:
        args.threads = torch.get_num_threads()
    if args.child:
        args.step = args.child
        child(args)
        return

    import numpy
    import scipy

    print(f"machine: {machine()}")
    print(f"python {platform.python_version()}, torch {torch.__version__} ({args.threads} threads, "
          f"{torch.__config__.parallel_info().splitlines()[-1].strip()}), numpy {numpy.__version__}, "
          f"scipy {scipy.__version__}")
    common = ["--items-scale", str(args.items_scale), "--users", str(args.users), "--seed", str(args.seed),
              "--threads", str(args.threads), "--topk", str(args.topk), "--memory-mb", str(args.memory_mb),
              "--clusters", str(args.clusters), "--rank-chunk", str(args.rank_chunk)]
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as work:
        data = str(Path(work) / "data.npz")
        common += ["--data", data, "--work", work]
        out = run_child(args, "data", common)
        if "failed" in out:
            print(f"data generation failed: {out['failed']}")
            return
        print(f"data (synthetic, seed {args.seed}, generated in {out['seconds']:.1f} s): {out['note']}")
        print(f"settings: similarity.topk = {args.topk}, similarity.memory_mb = {args.memory_mb:g}, "
              f"kmeans K = {args.clusters}; steps in fresh processes")
        print(f"{'step':<48} {'wall s':>8} {'peak RSS':>10} {'step peak':>10}   notes")
        print(f"{'':<48} {'':>8} {'MiB':>10} {'MiB':>10}")
        for step in [s for s in STEPS if not args.only or s in args.only]:
            label = STEPS[step][0]
            out = run_child(args, step, common)
            if "refused" in out or "failed" in out:
                print(f"{label:<48} {'-':>8} {'-':>10} {'-':>10}   {out.get('refused') or out.get('failed')}")
                continue
            step_peak = "n/a" if out.get("step_peak_mib") is None else f"{out['step_peak_mib']:.0f}"
            line = f"{label:<48} {out['seconds']:8.2f} {out['peak_mib']:10.0f} {step_peak:>10}   {out['note']}"
            if step.startswith("similarity") and args.items_scale == 1 and not args.users:
                ok = "met" if out["seconds"] < TARGET_SECONDS and out["peak_mib"] < TARGET_MIB else "NOT met"
                line += f"; target < {TARGET_SECONDS:g} s and < {TARGET_MIB / 1024:g} GiB peak: {ok}"
            print(line, flush=True)
    print("peak RSS: the step's whole process (ru_maxrss: interpreter, torch, data, untimed setup included); "
          "step peak: its high-water mark above the RSS it started from.")


if __name__ == "__main__":
    main()
