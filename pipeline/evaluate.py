"""Stage evaluate: Borda fusion at `gamma` (eq. 8) and full-ranking HR/NDCG, from the opinions stage's gamma-free
terms, for the diffusion model and for each control (controls.py) in its place.
No training and no sort happens here, so `dvc exp run -S gamma=0.3` re-runs only this stage and the summary."""

from globaldiff import paths
from globaldiff.cli import run_stage, stage_args
from globaldiff.config.params import load_params
from globaldiff.data.sequences import read_split
from globaldiff.io import atomic_path, load_npy, save_npy, write_json
from globaldiff.ranking.evaluation import fuse_run, opinion_keys


def main() -> None:
    args = stage_args("dataset", "backbone", "seed")
    params = load_params(args.params)
    split = read_split(paths.processed(args.dataset), "loo")
    folder = paths.opinions_dir(args.dataset, args.backbone, args.seed)
    opinions = {name: load_npy(folder / f"{name}.npy") for name in opinion_keys(params)}
    metrics, ranks = fuse_run(params, split, opinions, str(folder))
    with atomic_path(paths.ranks_dir(args.dataset, args.backbone, args.seed)) as tmp:
        tmp.mkdir(parents=True)
        for model, values in ranks.items():
            save_npy(tmp / f"{model}.npy", values)
    write_json(paths.metrics_file(args.dataset, args.backbone, args.seed),
               {"dataset": args.dataset, "backbone": args.backbone, "seed": args.seed, "gamma": params["gamma"],
                "exclude": params["eval"]["exclude"], **metrics})


if __name__ == "__main__":
    run_stage(main)
