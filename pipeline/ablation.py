"""Stage ablation: one variant of params `ablations.variants` for one seed (Figures 4 and 6, Table 3): a
diffusion model retrained on that seed's cached backbone, evaluated at diffusion.select_gamma."""

import os

from globaldiff import paths
from globaldiff.run.ablation import run_variant
from globaldiff.cli import CurveLog, run_stage, stage_args
from globaldiff.data.sequences import read_split
from globaldiff.io import atomic_path, load_torch, save_npy, save_torch, write_json
from globaldiff.config.params import load_params
from globaldiff.run.backbone import check_backbone_params
from globaldiff.run.device import autocast_dtype, pick_device


def main() -> None:
    args = stage_args("variant", "seed")
    params = load_params(args.params)
    check_backbone_params(params, params["ablations"]["backbone"])
    ab = params["ablations"]
    dataset, backbone = ab["dataset"], ab["backbone"]
    split = read_split(paths.processed(dataset), "loo")
    device = pick_device(os.environ.get("GLOBALDIFF_DEVICE"))
    source = paths.run_dir(dataset, backbone, args.seed) / "backbone.pt"
    log = CurveLog()
    checkpoint, metrics, ranks = run_variant(params, args.variant, split, load_torch(source), str(source), args.seed,
                                             device, log, autocast_dtype(params["precision"], device))
    with atomic_path(paths.ablation_dir(dataset, backbone, args.variant, args.seed)) as out:  # all or nothing
        out.mkdir(parents=True)
        log.write(out / "diffusion_curve.csv")
        save_torch(out / "diffusion.pt", checkpoint)
        for model, values in ranks.items():
            save_npy(out / "ranks" / f"{model}.npy", values)
        write_json(out / "metrics.json", {"dataset": dataset, "backbone": backbone, "seed": args.seed,
                                          "variant": args.variant, "overrides": ab["variants"][args.variant],
                                          "gamma": params["diffusion"]["select_gamma"],
                                          "exclude": params["eval"]["exclude"], **metrics})


if __name__ == "__main__":
    run_stage(main)
