"""IMDB as a table: ``task: text_classification`` against ``task: imdb`` on the same reviews.

Writes the labeled reviews of the IMDB training archive out as CSV tables (text, a
``sentiment`` label and the star ``rating``), then trains:

1. ``imdb_lstm`` as shipped (``task: imdb``, reading the archive);
2. the same model and training settings as ``task: text_classification`` on the tables
   of the very same train and validation reviews: the binary accuracies should agree;
3. ``text_classifier`` (the shipped baseline for any table) on the 8-class star rating
   (1-4 and 7-10: IMDB has no neutral reviews), with its own seeded, stratified
   validation and test parts of the table. Its test part is never used to select.

Reports validation accuracy per epoch, seconds and peak memory per run, and the 8-class
test accuracy and macro-F1. The official IMDB test split is not used.

    python scripts/bench_text.py --data ../shared/data/imdb/aclImdb_train.tar.gz \\
        --out benchmarks/text_classification.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from bench_common import measured, train_in_child, write_json

from rnnzoo.data import imdb
from rnnzoo.perf import describe_load, merge_load

ROOT = Path(__file__).resolve().parent.parent


def write_tables(source: Path, folder: Path) -> dict[str, Path]:
    """train.csv and val.csv (the imdb task's own split, seed 0, 20 %) and all.csv."""
    reviews = imdb.load_split(source, "train")
    train, val = imdb.train_val_split(reviews, 0.2, 0)
    paths = {}
    for name, part in (("train", train), ("val", val), ("all", reviews)):
        table = pd.DataFrame(
            {
                "id": [r.id for r in part],
                "text": [r.text for r in part],
                "sentiment": ["positive" if r.label else "negative" for r in part],
                "rating": [r.rating for r in part],
            }
        )
        paths[name] = folder / f"{name}.csv"
        table.to_csv(paths[name], index=False)
    return paths


def table_twin(tables: dict[str, Path], folder: Path) -> Path:
    """imdb_lstm.yaml with its task and data read from the tables instead."""
    raw = yaml.safe_load((ROOT / "configs" / "imdb_lstm.yaml").read_text())
    data = {k: v for k, v in raw["data"].items() if k not in ("val_fraction", "seed")}
    raw["task"] = "text_classification"
    raw["data"] = {
        **data,
        "path": str(tables["train"]),
        "val_path": str(tables["val"]),
        "test_fraction": 0,  # no test part: the official test split is kept back
        "text_column": "text",
        "label_column": "sentiment",
    }
    path = folder / "imdb_lstm_table.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def row(label: str, result: dict[str, Any], metric: str = "accuracy") -> dict[str, Any]:
    curve, summary = result["curve"], result["summary"]
    out = {
        "run": label,
        f"val_{metric}": [r[f"val_{metric}"] for r in curve],
        "best_epoch": summary["best_epoch"],
        "val": summary["val"],
        **measured(result),
    }
    if "test" in summary:
        out["test"] = summary["test"]
    print(
        f"{label}: best epoch {summary['best_epoch']}, val {summary['val']}, "
        f"{out['train_seconds']:.0f}s, peak {result['peak_memory_mb']:.0f} MB",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="IMDB archive or folder")
    parser.add_argument("--rating-minutes", type=float, default=8.0, help="8-class budget")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tables = write_tables(args.data, folder)
        sets = [f"data.path={args.data}"]
        rows.append(row("imdb task", train_in_child("imdb_lstm", sets, folder, "imdb")))
        twin = table_twin(tables, folder)
        rows.append(
            row("text_classification, same reviews", train_in_child(twin, [], folder, "table"))
        )
        rating = [
            f"data.path={tables['all']}",
            "data.text_column=text",
            "data.label_column=rating",
            f"train.max_minutes={args.rating_minutes}",
        ]
        result = train_in_child("text_classifier", rating, folder, "rating")
        rows.append(row("text_classifier, 8-class rating", result, "macro_f1"))
    imdb_acc, table_acc = (r["val"]["accuracy"] for r in rows[:2])
    load = merge_load([r["load"] for r in rows])
    print(f"binary val accuracy: imdb task {imdb_acc:.4f}, table {table_acc:.4f}")
    print(describe_load(load))
    results = {
        "load": load,
        "binary_val_accuracy_gap_points": round(100 * (table_acc - imdb_acc), 2),
        "results": rows,
    }
    write_json(args.out, "bench_text.py", results)


if __name__ == "__main__":
    main()
