"""Movie-grouped against random validation: how much a random split flatters IMDB configs.

IMDB's train and test splits hold disjoint movies. A validation split of random reviews
shares movies (names, plot words) with the training part; one grouped by movie does not,
as test does not. This trains each shipped IMDB classifier config twice, with
``data.val_split: movie`` (the default) and ``random``, everything else as shipped, and
reports the best validation accuracy of each side by side. The official test split is
not used (it is not on this machine).

    python scripts/bench_imdb_split.py --data ../shared/data/imdb/aclImdb_train.tar.gz \\
        --out benchmarks/imdb_split.json

``--epochs N`` caps every config at N epochs (the same cap on both sides) to fit a
budget; the JSON records it. ``--splits`` runs one side only (to finish a sweep that
stopped part way, into another JSON). Accuracies do not depend on the machine's load; the
seconds do, and the load is recorded beside them.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench_common import measured, train_in_child, write_json

from rnnzoo.data import imdb

CONFIGS = [
    "imdb_rnn", "imdb_lstm", "imdb_gru", "imdb_bilstm", "imdb_deep_lstm",
    "imdb_layernorm_lstm", "imdb_awd_lstm", "imdb_best",
]  # fmt: skip
SPLITS = ("movie", "random")


def shared_movies(source: Path) -> dict[str, Any]:
    """How many validation reviews of each split have their movie in the training part."""
    reviews = imdb.load_split(source, "train")
    out = {}
    for split in SPLITS:
        train, val = imdb.train_val_split(reviews, 0.2, 0, by_movie=split == "movie")
        seen = {r.movie for r in train}
        out[split] = {
            "val_reviews": len(val),
            "val_reviews_of_a_training_movie": sum(r.movie in seen for r in val),
            "val_movies": len({r.movie for r in val}),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the IMDB archive or folder")
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument("--epochs", type=int, default=None, help="cap every config at N")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    header = {"epochs_cap": args.epochs, "shared_movies": shared_movies(args.data)}
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            for split in args.splits:
                sets = [f"data.path={args.data}", f"data.val_split={split}"]
                if args.epochs is not None:
                    sets.append(f"train.epochs={args.epochs}")
                result = train_in_child(config, sets, Path(tmp), f"{config}-{split}")
                summary = result["summary"]
                accuracy = [r["val_accuracy"] for r in result["curve"]]
                rows.append(
                    {
                        "config": config,
                        "val_split": split,
                        "best_val_accuracy": summary["val"]["accuracy"],
                        "best_epoch": summary["best_epoch"],
                        "val_accuracy_per_epoch": accuracy,
                        **measured(result),
                    }
                )
                print(f"{config:22s} {split:6s} best val accuracy {summary['val']['accuracy']:.4f}")
                # written after every run: a long sweep stopped early keeps what it has
                write_json(args.out, "bench_imdb_split.py", {**header, "runs": rows})


if __name__ == "__main__":
    main()
