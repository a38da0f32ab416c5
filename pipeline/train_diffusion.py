"""Stage train_diffusion: the denoiser on the frozen backbone (Sections 3.3-3.4), then the val/test score
matrices of the backbone and of the reverse process (Section 3.5), cached for the evaluate stage."""

import os

from globaldiff import paths
from globaldiff.cli import CurveLog, run_stage, stage_args
from globaldiff.data.sequences import read_split
from globaldiff.run.backbone import check_backbone_params, load_backbone
from globaldiff.run.diffusion import fit_diffusion
from globaldiff.io import atomic_path, check_finite, load_torch, save_npy, save_torch
from globaldiff.config.params import load_params
from globaldiff.diffusion.similarity import ItemSimilarity
from globaldiff.run.device import autocast_dtype, pick_device


def main() -> None:
    args = stage_args("dataset", "backbone", "seed")
    params = load_params(args.params)
    check_backbone_params(params, args.backbone)
    split = read_split(paths.processed(args.dataset), "loo")
    run = paths.run_dir(args.dataset, args.backbone, args.seed)
    backbone = load_backbone(params, args.backbone, load_torch(run / "backbone.pt"), split.num_items,
                             str(run / "backbone.pt"))
    similarity_file = paths.similarity(args.dataset)
    similarity = ItemSimilarity.from_state_dict(load_torch(similarity_file), str(similarity_file), split.num_items)
    log = CurveLog()
    device = pick_device(os.environ.get("GLOBALDIFF_DEVICE"))
    precision = autocast_dtype(params["precision"], device)
    checkpoint, scores = fit_diffusion(params, backbone, similarity, split, args.seed, device, log, precision)
    folder = paths.scores_dir(args.dataset, args.backbone, args.seed)
    for name, matrix in scores.items():  # a NaN or inf in any score matrix: refused before anything is written
        check_finite(folder / f"{name}.npy", matrix, "refusing to write")
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for name, matrix in scores.items():
            save_npy(tmp / f"{name}.npy", matrix)
    log.write(run / "diffusion_curve.csv")
    save_torch(run / "diffusion.pt", checkpoint)


if __name__ == "__main__":
    run_stage(main)
