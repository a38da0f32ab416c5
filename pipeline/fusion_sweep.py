"""Stage fusion_sweep (beyond the paper): eq. (8) over params `sweep` (gamma x normalisation of x0_hat) on the
cached score matrices, a setting chosen on validation, its test ranks. No training; `gamma` is not read, so
`dvc exp run -S gamma=...` never re-runs it."""

import torch

from globaldiff import paths
from globaldiff.cli import run_stage, stage_args
from globaldiff.data.sequences import read_split
from globaldiff.io import atomic_path, load_npy, save_npy, write_json
from globaldiff.config.params import load_params
from globaldiff.ranking.sweep import run_sweep
from globaldiff.data.windows import evaluation_sets


def main() -> None:
    args = stage_args("dataset", "backbone", "seed")
    params = load_params(args.params)
    split = read_split(paths.processed(args.dataset), "loo")
    val, test = evaluation_sets(split.train, split.val, split.test, params["max_len"])
    folder = paths.scores_dir(args.dataset, args.backbone, args.seed)
    logits = {part: torch.from_numpy(load_npy(folder / f"{part}_logits.npy")) for part in ("val", "test")}
    x0_hat = {part: torch.from_numpy(load_npy(folder / f"{part}_x0.npy")) for part in ("val", "test")}
    sweep = params["sweep"]
    summary, tuned_ranks = run_sweep(logits, x0_hat, {"val": val, "test": test}, gammas=sweep["gammas"],
                                     norms=sweep["norms"], exclude=params["eval"]["exclude"],
                                     select_metric=sweep["select_metric"])
    with atomic_path(paths.sweep_dir(args.dataset, args.backbone, args.seed)) as tmp:
        tmp.mkdir(parents=True)
        write_json(tmp / "sweep.json", {"dataset": args.dataset, "backbone": args.backbone, "seed": args.seed,
                                        **summary})
        save_npy(tmp / "tuned_ranks.npy", tuned_ranks)


if __name__ == "__main__":
    run_stage(main)
