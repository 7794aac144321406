"""Part-of-speech tagging on UD English EWT: the BiLSTM tagger against its left-to-right twin.

Trains ``ud_pos_bilstm`` and ``ud_pos_lstm`` (shipped configs, identical but for the
direction) from scratch on the train file, each with the same wall-time budget
(``--minutes``, training and validation together), selecting on the dev file. Reports
dev UPOS accuracy per epoch, the best epoch's accuracy on all words, on words unseen
in training and on whole sentences, training tokens per second, peak memory, and the
load while each run trained. The EWT test file is not used.

    python scripts/bench_pos.py --train ../shared/data/ud/en_ewt-ud-train.conllu \\
        --dev ../shared/data/ud/en_ewt-ud-dev.conllu --out benchmarks/pos.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench_common import measured, train_in_child, write_json

from rnnzoo.perf import describe_load, merge_load

# Published UPOS accuracies on English UD with gold tokenisation, for the table.
REFERENCE = {
    "UDPipe 1.2 (from scratch)": 94.5,
    "Plank et al. 2016 bi-LSTM, words + characters (from scratch)": 94.6,
    "with pretrained embeddings": 95.2,
    "UDPipe 2 + BERT": 97.5,
}


def words_in(path: Path) -> int:
    """Word lines of a CoNLL-U file (integer IDs: no multiword ranges, no empty nodes)."""
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.split("\t", 1)[0].isdigit())


def row(config: str, result: dict[str, Any], train_words: int) -> dict[str, Any]:
    curve, summary = result["curve"], result["summary"]
    full = [r["seconds"] for r in curve if not r["partial_epoch"]]
    out = {
        "config": config,
        "dev_accuracy": [r["val_accuracy"] for r in curve],
        "dev_unseen_accuracy": [r.get("val_unseen_accuracy") for r in curve],
        "best_epoch": summary["best_epoch"],
        "dev": summary["val"],
        "epochs": summary["epochs"],
        # an epoch's seconds include its validation pass: a lower bound on training speed
        "tokens_per_s": round(train_words * len(full) / sum(full)) if full else None,
        **measured(result),
    }
    print(
        f"{config}: best epoch {summary['best_epoch']} dev {summary['val']}, "
        f"{out['train_seconds']:.0f}s, {out['tokens_per_s']} tokens/s",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="en_ewt-ud-train.conllu")
    parser.add_argument("--dev", type=Path, required=True, help="en_ewt-ud-dev.conllu")
    parser.add_argument("--minutes", type=float, default=15.0, help="budget of each run")
    parser.add_argument("--configs", nargs="+", default=["ud_pos_bilstm", "ud_pos_lstm"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sets = [
        f"data.path={args.train}",
        f"data.val_path={args.dev}",
        f"train.max_minutes={args.minutes}",
    ]
    words = words_in(args.train)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            rows.append(row(config, train_in_child(config, sets, Path(tmp), config), words))
    load = merge_load([r["load"] for r in rows])
    print(describe_load(load))
    results = {
        "load": load,
        "train_words": words,
        "minutes": args.minutes,
        "reference_upos_accuracy": REFERENCE,
        "results": rows,
    }
    write_json(args.out, "bench_pos.py", results)


if __name__ == "__main__":
    main()
