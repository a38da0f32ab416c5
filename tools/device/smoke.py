"""A smoke step of each backbone and of the denoiser on the chosen device, at ML-1M's shapes: a few training
steps (ms per step, the epoch it projects to), one validation forward pass, fp32 and bf16 autocast. No data
needed (random windows); params from params.yaml, optionally with profiles applied (as the runner applies them).

usage: python tools/device/smoke.py [--device cuda] [--profile profiles/paper-scale.yaml] [--steps 20]
                                   [--backbones sasrec,cbit] [--precisions fp32,bf16] [--json OUT.json]
On a CPU (tests/test_device_runner.py): --device cpu --items 30 --batch 8 --steps 1 --users 16.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import params_profile  # noqa: E402

# ML-1M as committed (README): 3,526 items, 5,180 users; 57,049 train windows at stride 10, 547,260 at stride 1
ML1M_ITEMS, ML1M_USERS, WINDOWS = 3526, 5180, {10: 57049, 1: 547260}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", action="append", default=[])
    ap.add_argument("--set", action="append", metavar="KEY=VALUE")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backbones", default=None, help="comma-separated (default: study.backbones)")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--items", type=int, default=ML1M_ITEMS)
    ap.add_argument("--users", type=int, default=ML1M_USERS, help="rows of the validation pass")
    ap.add_argument("--batch", type=int, default=None, help="default: each backbone's train.batch_size")
    ap.add_argument("--json", help="write the timings here")
    ap.add_argument("--hang-after-s", type=float, default=0, help="dump every thread's stack after S (0: off)")
    args = ap.parse_args(argv)
    if args.hang_after_s:
        faulthandler.dump_traceback_later(args.hang_after_s, exit=True)

    import torch
    import yaml

    from globaldiff.config.schema import check_schema
    from globaldiff.diffusion.denoiser import guidance_vector
    from globaldiff.run.backbone import check_backbone_params, new_backbone
    from globaldiff.run.device import autocast, autocast_dtype, pick_device
    from globaldiff.run.diffusion import new_denoiser

    params = yaml.safe_load(Path(args.params).read_text())
    overrides = {}
    for path in args.profile:
        overrides.update(params_profile.load_profile(path))
    overrides.update(params_profile.parse_set(args.set))
    params = check_schema(params_profile.apply(params, overrides))   # types and ranges; the models: below
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    names = args.backbones.split(",") if args.backbones else params["study"]["backbones"]
    precisions = [p for p in args.precisions.split(",") if p]
    for name in names:
        check_backbone_params(params, name)
    L, M = params["max_len"], args.items

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def timed(fn, n):
        out = []
        for _ in range(n):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t)
        return out

    gen = torch.Generator().manual_seed(0)
    print(f"smoke: device {device} ({torch.cuda.get_device_name(device) if cuda else 'cpu'}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, items {M}, steps {args.steps}, profiles {args.profile or '-'}", flush=True)
    report: dict = {"device": str(device), "items": M, "backbones": {}}
    for name in names:
        train = params["backbones"][name]["train"]
        batch = args.batch or train["batch_size"]
        per_epoch = math.ceil(WINDOWS.get(train["stride"], WINDOWS[10]) / batch)
        torch.manual_seed(0)
        windows = torch.randint(1, M + 1, (batch, L + 1), generator=gen).to(device)
        entry = report["backbones"][name] = {"model": params["backbones"][name]["model"], "batch": batch,
                                             "batches_per_epoch_ml1m": per_epoch}
        for precision in precisions:
            try:
                dtype = autocast_dtype(precision, device)
            except (RuntimeError, ValueError) as e:
                print(f"  {name:9s} {precision}: skipped ({e})", flush=True)
                continue
            backbone = new_backbone(params, name, M).to(device)
            optim = torch.optim.Adam(backbone.parameters(), lr=train["lr"])
            losses = []

            def step():
                with autocast(device, dtype):
                    loss = backbone.training_loss(windows, generator=None if cuda else gen)
                optim.zero_grad()
                loss.backward()
                optim.step()
                losses.append(loss.item())

            backbone.train()
            first = timed(step, 1)[0]
            timed(step, max(args.warmup - 1, 0))
            ms = statistics.median(timed(step, args.steps)) * 1e3
            assert all(math.isfinite(v) for v in losses), f"{name} {precision}: loss {losses[-1]}"
            backbone.eval()
            history = torch.randint(1, M + 1, (args.users, L), generator=gen)
            with torch.no_grad():
                val = timed(lambda: [backbone.predict(history[i:i + 1024].to(device)) for i in range(0, len(history), 1024)], 1)[0]
            entry[precision] = {"ms_per_step": round(ms, 3), "first_step_s": round(first, 3),
                                "epoch_s_ml1m": round(ms * per_epoch / 1e3, 2), "validation_pass_s": round(val, 3),
                                "loss": round(losses[-1], 4)}
            print(f"  {name:9s} {precision}: {ms:8.2f} ms/step (first {first:.2f}s) -> ~{ms * per_epoch / 1e3:6.1f}s per "
                  f"ML-1M epoch of {per_epoch} batches; validation pass {val:.2f}s; loss {losses[-1]:.4f}", flush=True)
        # the GPU part of one diffusion step on this backbone's guidance (MLP, and the U-Net variant)
        for network in ("mlp", "unet"):
            p = params_profile.apply(params, {"denoiser.network": network})
            backbone = new_backbone(params, name, M).to(device).eval()
            denoiser = new_denoiser(p, backbone).to(device)
            optim = torch.optim.Adam(denoiser.parameters(), lr=params["diffusion"]["lr"])
            hist = windows[:, :L]
            x0 = (torch.rand(batch, M + 1, generator=gen) < 0.05).float().to(device)

            def dstep():
                with torch.no_grad():
                    _, h, hm = backbone.predict(hist)
                t = torch.randint(0, params["T"], (batch,), generator=gen).to(device)
                pred = denoiser(x0 + 0.05 * torch.randn_like(x0), t, guidance_vector(h, hm, denoiser.guidance))
                loss = torch.nn.functional.mse_loss(pred.float(), x0)
                optim.zero_grad()
                loss.backward()
                optim.step()

            timed(dstep, max(args.warmup, 1))
            ms = statistics.median(timed(dstep, args.steps)) * 1e3
            entry[f"denoiser_{network}_ms_per_step"] = round(ms, 3)
            print(f"  {name:9s} denoiser {network}: {ms:8.2f} ms/step (fp32, batch {batch})", flush=True)
    if cuda:
        report["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        print(f"  peak GPU memory {report['peak_gpu_memory_gib']} GiB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
