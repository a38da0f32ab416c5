"""Stage train_backbone: one backbone on its own objective, early-stopped on validation (Section 3.2)."""

import os

from globaldiff import paths
from globaldiff.cli import CurveLog, run_stage, stage_args
from globaldiff.data.sequences import read_split
from globaldiff.run.backbone import check_backbone_params, fit_backbone
from globaldiff.io import save_torch
from globaldiff.config.params import load_params
from globaldiff.run.device import autocast_dtype, pick_device


def main() -> None:
    args = stage_args("dataset", "backbone", "seed")
    params = load_params(args.params)
    check_backbone_params(params, args.backbone)
    split = read_split(paths.processed(args.dataset), "loo")
    log = CurveLog()
    device = pick_device(os.environ.get("GLOBALDIFF_DEVICE"))
    precision = autocast_dtype(params["precision"], device)
    checkpoint = fit_backbone(params, args.backbone, split, args.seed, device, log, precision)
    out = paths.run_dir(args.dataset, args.backbone, args.seed)
    log.write(out / "backbone_curve.csv")
    save_torch(out / "backbone.pt", checkpoint)


if __name__ == "__main__":
    run_stage(main)
