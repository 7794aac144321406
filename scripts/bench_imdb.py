"""IMDB sentiment: every shipped imdb_*.yaml against a hand-written torch.nn.LSTM classifier.

Each config trains in its own process (so peak memory is its own) on the given copy of
the data, with the config's seeded validation split; the report takes validation
accuracy per epoch, seconds per epoch, tokens/s, peak memory and parameter count from
the run folders. The baseline is what a user writes by hand with torch.nn: the same
tokenizer and data settings, ``nn.Embedding`` -> ``nn.LSTM`` over a packed batch -> the
last hidden state -> linear, Adam, plain shuffled batches.

    python scripts/bench_imdb.py --data ../shared/data/imdb/aclImdb_train.tar.gz \\
        --out benchmarks/imdb.json
    python scripts/bench_imdb.py --data ... --configs imdb_lstm --epochs 1   # a quick look

Only validation data is used: the official test split is kept for independent checks.
Every run records the load average sampled while it trained (``rnnzoo.perf.LoadSampler``);
``--load-only --out FILE`` writes the data-loading times, with their load, as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_common import parameters, train_in_child, write_json
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from rnnzoo.perf import LoadSampler, describe_load, merge_load

ROOT = Path(__file__).resolve().parent.parent


def run_config(name: str, args: argparse.Namespace, out_dir: Path) -> dict[str, object]:
    """Train ``configs/<name>.yaml`` in a child process; summarise its run folder."""
    overrides = [f"data.path={args.data}"]
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    result = train_in_child(ROOT / "configs" / f"{name}.yaml", overrides, out_dir, name)
    params = parameters(result["run_dir"])
    row = summarise(name, result["curve"], result["peak_memory_mb"], params)
    row["load"] = result["load"]
    return row


def summarise(name: str, curve: list[dict], peak_mb: float, params: int) -> dict[str, object]:
    seconds = [r["seconds"] for r in curve]
    return {
        "config": name,
        "val_accuracy": [r["val_accuracy"] for r in curve],
        "best_val_accuracy": max(r["val_accuracy"] for r in curve),
        "seconds_per_epoch": seconds,
        "train_seconds": sum(seconds),
        "samples_per_s": [r.get("samples_per_s") for r in curve],
        "pad_fraction": [r.get("train_pad_fraction") for r in curve],
        "peak_memory_mb": peak_mb,
        "parameters": params,
    }


class HandWrittenLSTM(nn.Module):
    """The classifier a user writes with torch.nn directly."""

    def __init__(self, vocab: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 2)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.embedding(ids), lengths, batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.lstm(packed)
        return self.fc(h[-1])


def run_baseline(args: argparse.Namespace, epochs: int) -> dict[str, object]:
    """torch.nn.LSTM with imdb_lstm.yaml's data settings, a plain training loop."""
    from rnnzoo.config import load_config
    from rnnzoo.tasks import IMDBTask

    config = load_config(ROOT / "configs" / "imdb_lstm.yaml", [f"data.path={args.data}"])
    task = IMDBTask(config.data)
    task.prepare()
    train, val = task.dataset("train"), task.dataset("val")
    torch.manual_seed(0)
    m = config.model
    model = HandWrittenLSTM(task.io.vocab_size or 0, m.embedding_dim, m.hidden_size)  # type: ignore[attr-defined]
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    bs = config.train.batch_size
    curve = []
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(train), bs):
            idx = order[i : i + bs].tolist()
            seqs = [train.seqs[j].long() for j in idx]
            ids = pad_sequence(seqs, batch_first=True)
            lengths = torch.tensor([len(s) for s in seqs])
            loss = nn.functional.cross_entropy(model(ids, lengths), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        seconds = time.perf_counter() - start
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(val), 256):
                b = val.__getitems__(list(range(i, min(i + 256, len(val)))))
                correct += int((model(b.inputs, b.lengths).argmax(-1) == b.targets).sum())
        curve.append({"val_accuracy": correct / len(val), "seconds": seconds})
        print(
            f"  torch.nn.LSTM epoch {epoch + 1}: val acc {correct / len(val):.4f}, {seconds:.0f}s",
            flush=True,
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    params = sum(p.numel() for p in model.parameters())
    return summarise("torch.nn.LSTM (hand-written)", curve, peak_mb, params)


def load_times(data: Path) -> dict[str, float]:
    """Seconds to read, fit the tokenizer on and encode the training reviews: with an
    empty parse cache (in a fresh temporary cache folder), then again from the cache."""
    import os

    from rnnzoo.config import load_config
    from rnnzoo.tasks import IMDBTask

    times: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cache, LoadSampler(interval_s=1.0) as sampler:
        os.environ["XDG_CACHE_HOME"] = cache
        for label in ("first_load_s", "cached_load_s"):
            start = time.perf_counter()
            config = load_config(ROOT / "configs" / "imdb_lstm.yaml", [f"data.path={data}"])
            task = IMDBTask(config.data)
            task.prepare()
            task.dataset("train"), task.dataset("val")
            times[label] = time.perf_counter() - start
        del os.environ["XDG_CACHE_HOME"]
    times["load"] = sampler.record()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="IMDB archive or folder")
    default = sorted(p.stem for p in (ROOT / "configs").glob("imdb_*.yaml"))
    parser.add_argument("--configs", nargs="+", default=default)
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    parser.add_argument("--baseline-epochs", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--load-only", action="store_true", help="only time data loading")
    args = parser.parse_args()
    if args.load_only:
        times = load_times(args.data)
        print(json.dumps(times, indent=2))
        write_json(args.out, "bench_imdb.py", times)
        return

    from rnnzoo.config import load_config
    from rnnzoo.tasks import IMDBTask

    # Every shipped config shares the data settings: count the training tokens once.
    task = IMDBTask(
        load_config(ROOT / "configs" / "imdb_lstm.yaml", [f"data.path={args.data}"]).data
    )
    task.prepare()
    train_tokens = sum(task.dataset("train").lengths)  # type: ignore[attr-defined]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            print(f"{name} ...", flush=True)
            row = run_config(name, args, Path(tmp))
            row["tokens_per_s"] = [train_tokens / s for s in row["seconds_per_epoch"]]  # type: ignore[attr-defined]
            rows.append(row)
            print(
                f"  best val acc {row['best_val_accuracy']:.4f}, "
                f"{row['train_seconds']:.0f}s, per epoch {row['seconds_per_epoch']}",
                flush=True,
            )
    if not args.no_baseline:
        from rnnzoo.perf import tune_cpu_allocator

        tune_cpu_allocator()
        with LoadSampler() as sampler:
            base = run_baseline(args, args.baseline_epochs)
        base["load"] = sampler.record()
        rows.append(base)
        base_epoch = sum(base["seconds_per_epoch"]) / len(base["seconds_per_epoch"])  # type: ignore[arg-type]
        for row in rows[:-1]:
            mean = row["train_seconds"] / len(row["seconds_per_epoch"])  # type: ignore[operator, arg-type]
            row["epoch_time_vs_hand_written_lstm"] = mean / base_epoch
    print(f"\n{'config':32} {'best val acc':>12} {'s/epoch':>8} {'params':>9} {'peak MB':>8}")
    for row in rows:
        per = row["train_seconds"] / len(row["seconds_per_epoch"])  # type: ignore[operator, arg-type]
        print(
            f"{row['config']:32} {row['best_val_accuracy']:>12.4f} {per:>8.0f} "
            f"{row['parameters']:>9} {row['peak_memory_mb']:>8.0f}"
        )
    load = merge_load([r["load"] for r in rows])
    print(describe_load(load))
    write_json(args.out, "bench_imdb.py", {"load": load, "results": rows})


if __name__ == "__main__":
    main()
