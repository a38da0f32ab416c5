"""Stage evaluate: Borda fusion at `gamma` (eq. 8) and full-ranking HR/NDCG from the cached score matrices,
for the diffusion model and for each control (controls.py) in its place.
No training happens here, so `dvc exp run -S gamma=0.3` re-runs only this stage and the summary."""

from globaldiff import paths
from globaldiff.cli import run_stage, stage_args
from globaldiff.data.sequences import read_split
from globaldiff.ranking.evaluation import evaluate_run
from globaldiff.io import atomic_path, load_npy, load_torch, save_npy, write_json
from globaldiff.config.params import load_params
from globaldiff.diffusion.similarity import ItemSimilarity


def main() -> None:
    args = stage_args("dataset", "backbone", "seed")
    params = load_params(args.params)
    split = read_split(paths.processed(args.dataset), "loo")
    folder = paths.scores_dir(args.dataset, args.backbone, args.seed)
    scores = {f"{part}_{kind}": load_npy(folder / f"{part}_{kind}.npy") for part in ("val", "test") for kind in ("logits", "x0")}
    similarity_file = paths.similarity(args.dataset)
    similarity = ItemSimilarity.from_state_dict(load_torch(similarity_file), str(similarity_file), split.num_items)
    metrics, ranks = evaluate_run(params, split, scores, similarity, args.seed)
    with atomic_path(paths.ranks_dir(args.dataset, args.backbone, args.seed)) as tmp:
        tmp.mkdir(parents=True)
        for model, values in ranks.items():
            save_npy(tmp / f"{model}.npy", values)
    write_json(paths.metrics_file(args.dataset, args.backbone, args.seed),
               {"dataset": args.dataset, "backbone": args.backbone, "seed": args.seed, "gamma": params["gamma"],
                "exclude": params["eval"]["exclude"], **metrics})


if __name__ == "__main__":
    run_stage(main)
