"""Stage opinions: everything of the evaluation that does not depend on `gamma`, from the cached score matrices:
each opinion's eq. (8) term r(x) x (backbone, diffusion model, and on test the controls of controls.py) and the
ranks of the backbone and the diffusion model alone. The sorts and the `propagated` control's product are
here, so the evaluate stage that a gamma change re-runs only weighs and counts."""

from globaldiff import paths
from globaldiff.cli import run_stage, stage_args
from globaldiff.config.params import load_params
from globaldiff.data.sequences import read_split
from globaldiff.diffusion.similarity import ItemSimilarity
from globaldiff.io import atomic_path, load_npy, load_torch, save_npy
from globaldiff.ranking.evaluation import run_opinions


def main() -> None:
    args = stage_args("dataset", "backbone", "seed")
    params = load_params(args.params)
    split = read_split(paths.processed(args.dataset), "loo")
    folder = paths.scores_dir(args.dataset, args.backbone, args.seed)
    scores = {f"{part}_{kind}": load_npy(folder / f"{part}_{kind}.npy") for part in ("val", "test") for kind in ("logits", "x0")}
    similarity_file = paths.similarity(args.dataset)
    similarity = ItemSimilarity.from_state_dict(load_torch(similarity_file), str(similarity_file), split.num_items)
    opinions = run_opinions(params, split, scores, similarity, args.seed)
    with atomic_path(paths.opinions_dir(args.dataset, args.backbone, args.seed)) as tmp:
        tmp.mkdir(parents=True)
        for name, array in opinions.items():
            save_npy(tmp / f"{name}.npy", array)


if __name__ == "__main__":
    run_stage(main)
