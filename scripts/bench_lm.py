"""Language models on IMDB's text: validation perplexity and training speed.

For each config (``lm_word``, ``lm_char`` as shipped, ``data.path`` the IMDB archive:
its training part and unlabeled reviews, validation whole movies) and each ``impl``
(``auto``: the compiled loop; ``torch``: torch.nn.LSTM inside the same layer), one
training run in its own process, under the same wall-time budget (``--minutes``,
training and validation). Reported: validation perplexity and bits per token of the
best checkpoint. Beside them, a unigram model of the same tokens (counts on the training
stream, add-one smoothing) scored on the same validation tokens.

torch.nn's kernels have no DropConnect, so both runs of a config set
``model.weight_drop=0`` (lm_word ships 0.2): the same model on both sides.

Speed: training steps (forward, loss, backward, AdamW step) on the run's own first
training batches, the two impls alternating in this process, median of ``--repeats``
timings; tokens/s and the ratio against ``impl: torch``.

    python scripts/bench_lm.py --data ../shared/data/imdb/aclImdb_train.tar.gz \\
        --out benchmarks/lm.json
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_common import measured, train_in_child, write_json

from rnnzoo.data.sampling import batched
from rnnzoo.models import build_model
from rnnzoo.perf import LoadSampler
from rnnzoo.runs import load_run

IMPLS = ("auto", "torch")


def unigram(task: Any) -> dict[str, float]:
    """Perplexity on validation of add-one smoothed token frequencies of train."""
    train, val = task.dataset("train"), task.dataset("val")
    vocab = task.io.vocab_size
    counts = torch.bincount(train.tokens[1:].long(), minlength=vocab).double() + 1
    log_p = (counts / counts.sum()).log()
    ce = float(-log_p[val.tokens[1:].long()].mean())
    return {"loss": ce, "perplexity": math.exp(ce), "bits_per_token": ce / math.log(2)}


def speed(run_dir: Path, task: Any, steps: int, repeats: int) -> dict[str, Any]:
    """Training tokens/s of both impls on the run's first ``steps`` training batches,
    both starting from the run's best weights."""
    config, _, trained = load_run(run_dir)
    size = config.train.batch_size
    data = batched(task.dataset("train"), size)
    batches = [data.__getitems__([c * size + s for s in range(size)]) for c in range(steps)]
    models = {}
    for impl in IMPLS:
        args = config.model.model_copy(update={"impl": impl})
        model = build_model(args, task.io)
        model.load_state_dict(trained.state_dict())
        models[impl] = (model.train(), torch.optim.AdamW(model.parameters(), lr=1e-4))

    def run(impl: str) -> float:
        model, optimizer = models[impl]
        model.reset_state()
        started = time.perf_counter()
        for batch in batches:
            loss = task.loss(model(batch.inputs, batch.lengths, batch.targets).float(), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - started

    for impl in IMPLS:
        run(impl)  # warm-up
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    with LoadSampler() as sampler:
        for _ in range(repeats):
            for impl in IMPLS:
                times[impl].append(run(impl))
    tokens = sum(b.targets.numel() for b in batches)
    median = {impl: statistics.median(t) for impl, t in times.items()}
    return {
        "tokens_per_timing": tokens,
        "seconds": times,
        "tokens_per_s": {impl: tokens / median[impl] for impl in IMPLS},
        "ratio_vs_torch": median["auto"] / median["torch"],
        "load": sampler.record(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the IMDB archive or folder")
    parser.add_argument("--configs", nargs="+", default=["lm_word", "lm_char"])
    parser.add_argument("--minutes", type=float, default=10.0, help="each run's budget")
    parser.add_argument("--steps", type=int, default=10, help="batches per speed timing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {"minutes": args.minutes}
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            row: dict[str, Any] = {}
            for impl in IMPLS:
                sets = [f"data.path={args.data}", f"model.impl={impl}", "model.weight_drop=0"]
                sets.append(f"train.max_minutes={args.minutes}")
                result = train_in_child(config, sets, Path(tmp), f"{config}-{impl}")
                curve = result["curve"]
                row[impl] = {
                    "val": result["summary"]["val"],
                    "steps": curve[-1]["step"],
                    "epochs": curve[-1]["epoch"],
                    **measured(result),
                }
                print(f"{config} {impl}: val perplexity {row[impl]['val']['perplexity']:.1f}")
            run_dir = Path(tmp) / f"{config}-auto"
            _, task, _ = load_run(run_dir)  # the run's tokenizer, the data read once
            row["unigram"] = unigram(task)
            row["speed"] = speed(run_dir, task, args.steps, args.repeats)
            results[config] = row
            write_json(args.out, "bench_lm.py", results)


if __name__ == "__main__":
    main()
