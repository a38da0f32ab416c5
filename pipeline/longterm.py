"""Stage longterm: backbone and diffusion trained on the `longterm` split for one seed, then HR/NDCG of the
P-th future item (P = 1..4) from one fixed input (Figure 3), at diffusion.select_gamma."""

import os

from globaldiff import paths
from globaldiff.cli import CurveLog, run_stage, stage_args
from globaldiff.data.sequences import read_split
from globaldiff.run.backbone import check_backbone_params, fit_backbone, load_backbone
from globaldiff.run.diffusion import fit_diffusion
from globaldiff.io import atomic_path, save_torch, write_json
from globaldiff.ranking.longterm import evaluate_horizons
from globaldiff.config.params import load_params
from globaldiff.diffusion.similarity import build_similarity
from globaldiff.run.device import autocast_dtype, pick_device


def main() -> None:
    args = stage_args("seed")
    params = load_params(args.params)
    check_backbone_params(params, params["longterm"]["backbone"])
    dataset, backbone_name = params["longterm"]["dataset"], params["longterm"]["backbone"]
    split = read_split(paths.processed(dataset), "longterm")
    device = pick_device(os.environ.get("GLOBALDIFF_DEVICE"))
    precision = autocast_dtype(params["precision"], device)
    out = paths.longterm_dir(dataset, backbone_name, args.seed)
    backbone_log, diffusion_log = CurveLog(), CurveLog()
    checkpoint = fit_backbone(params, backbone_name, split, args.seed, device, backbone_log, precision)
    backbone = load_backbone(params, backbone_name, checkpoint, split.num_items, "the backbone just trained")
    similarity = build_similarity(split.train, split.num_items, **params["similarity"])
    diffusion, scores = fit_diffusion(params, backbone, similarity, split, args.seed, device, diffusion_log, precision)
    gamma = params["diffusion"]["select_gamma"]
    horizons = evaluate_horizons(scores, split, params["max_len"], gamma, params["ensemble"]["norm"],
                                 params["eval"]["exclude"])
    with atomic_path(out) as tmp:  # all or nothing
        tmp.mkdir(parents=True)
        backbone_log.write(tmp / "backbone_curve.csv")
        diffusion_log.write(tmp / "diffusion_curve.csv")
        save_torch(tmp / "backbone.pt", checkpoint)
        save_torch(tmp / "diffusion.pt", diffusion)
        write_json(tmp / "metrics.json", {"dataset": dataset, "backbone": backbone_name, "seed": args.seed,
                                          "gamma": gamma, "exclude": params["eval"]["exclude"], "test": horizons})


if __name__ == "__main__":
    run_stage(main)
