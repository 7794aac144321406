"""IMDB sentiment with and without in-domain pretraining, each within its time budget.

Two pipelines, both selected on the movie-grouped validation split (the default):

1. **pretrained**: a language model on IMDB's training reviews and its 50,000 unlabeled
   ones (``imdb_lm``), then a classifier initialised from it (``imdb_pretrained``): the
   two ``rnnzoo train`` commands of the README;
2. **labels only**: the best classifier config trained from scratch (``imdb_best`` by
   default).

Reports each pipeline's best validation accuracy, its wall time in all (reading the
data, fitting the tokenizer and every epoch included: each command's own wall clock) and
its peak memory, with the machine's load while it ran. The official test split is not
used (it is not on this machine).

    python scripts/bench_imdb_pretrained.py --data ../shared/data/imdb/aclImdb_train.tar.gz \\
        --out benchmarks/imdb_pretrained.json

``--keep DIR`` trains into DIR instead of a temporary folder and keeps the runs, with the
language model's record in ``DIR/lm.json``. ``--reuse-lm`` then tries another classifier
setting (``--classifier-set KEY=VALUE``) on that language model without training it
again: the pipeline's time is the kept language model's measured time plus the new
classifier's.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import measured, train_in_child, write_json


def timed(config: str, sets: list[str], out: Path, name: str) -> dict[str, Any]:
    started = time.perf_counter()
    result = train_in_child(config, sets, out, name)
    summary = result["summary"]
    return {
        "config": config,
        "overrides": sets,
        "wall_minutes": round((time.perf_counter() - started) / 60, 2),
        "best_epoch": summary["best_epoch"],
        "val": summary["val"],
        "val_curve": [
            {k: v for k, v in r.items() if k.startswith("val_") or k in ("epoch", "step")}
            for r in result["curve"]
        ],
        **measured(result),
    }


def unused(folder: Path, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``...: the first run folder not yet in ``folder``
    (a kept folder gets one classifier per try)."""
    tries = (name if i == 1 else f"{name}-{i}" for i in itertools.count(1))
    return next(t for t in tries if not (folder / t).exists())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the IMDB archive or folder")
    parser.add_argument("--lm", default="imdb_lm", help="the pretraining config")
    parser.add_argument("--classifier", default="imdb_pretrained")
    parser.add_argument("--labels-only", default="imdb_best")
    parser.add_argument("--skip", choices=["pretrained", "labels_only"], default=None)
    parser.add_argument("--set", action="append", default=[], help="extra override, both")
    parser.add_argument("--classifier-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", type=Path, default=None, help="train into DIR and keep it")
    parser.add_argument("--reuse-lm", action="store_true", help="the language model in --keep")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.reuse_lm and not (args.keep and (args.keep / "lm.json").is_file()):
        parser.error("--reuse-lm needs --keep DIR holding a kept language model (DIR/lm.json)")
    data = [f"data.path={args.data}", *args.set]
    results: dict[str, Any] = {}
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    kept = contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory()
    with kept as folder:
        out = Path(folder)
        if args.skip != "pretrained":
            if args.reuse_lm:
                lm = json.loads((out / "lm.json").read_text())
                lm["reused"] = True
            else:
                lm = timed(args.lm, data, out, "lm")
                if args.keep is not None:
                    (out / "lm.json").write_text(json.dumps(lm))
            init = [*data, *args.classifier_set, f"model.init_from={out / 'lm'}"]
            classifier = timed(args.classifier, init, out, unused(out, "classifier"))
            results["pretrained"] = {
                "language_model": lm,
                "classifier": classifier,
                "val_accuracy": classifier["val"]["accuracy"],
                "wall_minutes": round(lm["wall_minutes"] + classifier["wall_minutes"], 2),
                "peak_memory_mb": max(lm["peak_memory_mb"], classifier["peak_memory_mb"]),
            }
            print(f"pretrained: {results['pretrained']['val_accuracy']:.4f}")
            write_json(args.out, "bench_imdb_pretrained.py", results)
        if args.skip != "labels_only":
            alone = timed(args.labels_only, data, out, "labels_only")
            results["labels_only"] = {
                **alone,
                "val_accuracy": alone["val"]["accuracy"],
            }
            print(f"labels only: {alone['val']['accuracy']:.4f}")
    write_json(args.out, "bench_imdb_pretrained.py", results)


if __name__ == "__main__":
    main()
