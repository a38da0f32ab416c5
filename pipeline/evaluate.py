"""Stage evaluate: Borda fusion at `gamma` (eq. 8) and full-ranking HR/NDCG for every run of the study (dataset x
backbone x seed), from the opinions stage's gamma-free terms, for the diffusion model and for each control
(controls.py) in its place. No training and no sort happens here, and all runs share one process (one interpreter
start), so `dvc exp run -S gamma=0.3` re-runs only this stage and the summary. Every run is fused before any file
is written: a refused input leaves no metrics of the others."""

from globaldiff import paths
from globaldiff.cli import run_stage, stage_args
from globaldiff.config.params import load_params
from globaldiff.data.sequences import read_split
from globaldiff.io import atomic_path, load_npy, save_npy, write_json
from globaldiff.ranking.evaluation import fuse_run, opinion_keys


def main() -> None:
    args = stage_args()
    params = load_params(args.params)
    study = params["study"]
    results = []
    for dataset in study["datasets"]:
        split = read_split(paths.processed(dataset), "loo")
        for backbone in study["backbones"]:
            for seed in study["seeds"]:
                folder = paths.opinions_dir(dataset, backbone, seed)
                opinions = {name: load_npy(folder / f"{name}.npy") for name in opinion_keys(params)}
                metrics, ranks = fuse_run(params, split, opinions, str(folder))
                results.append((dataset, backbone, seed, metrics, ranks))
                del opinions                  # ~0.5 GB a run at ML-1M's size: one run's opinions at a time
    for dataset, backbone, seed, metrics, ranks in results:
        with atomic_path(paths.ranks_dir(dataset, backbone, seed)) as tmp:
            tmp.mkdir(parents=True)
            for model, values in ranks.items():
                save_npy(tmp / f"{model}.npy", values)
        write_json(paths.metrics_file(dataset, backbone, seed),
                   {"dataset": dataset, "backbone": backbone, "seed": seed, "gamma": params["gamma"],
                    "exclude": params["eval"]["exclude"], **metrics})


if __name__ == "__main__":
    run_stage(main)
