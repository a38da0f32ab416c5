"""Stage similarity: item-item (or cluster-item) similarity A from the train split (Section 3.3 step 1)."""

from globaldiff import paths
from globaldiff.cli import run_stage, stage_args
from globaldiff.data.sequences import read_split
from globaldiff.io import save_torch
from globaldiff.config.params import load_params
from globaldiff.diffusion.similarity import build_similarity


def main() -> None:
    args = stage_args("dataset")
    params = load_params(args.params)
    split = read_split(paths.processed(args.dataset), "loo")
    similarity = build_similarity(split.train, split.num_items, **params["similarity"])
    save_torch(paths.similarity(args.dataset), similarity.state_dict())


if __name__ == "__main__":
    run_stage(main)
