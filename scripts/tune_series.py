"""Choose a forecasting config's settings on validation: each variant over a few seeds.

Trains ``--config`` with each variant's ``--set`` overrides at each horizon and seed,
and records the validation ``rmse_orig`` of each run's best checkpoint (the test split
is scored by every run but never read here). Variants already in ``--out`` are skipped.
The JSON holds the command, the machine, each variant's load and, per horizon, the
variant with the lowest mean (``chosen``).

    python scripts/tune_series.py --config configs/airline_lstm.yaml \\
        --out benchmarks/airline_tuning.json --horizons 12,1 --seeds 3 \\
        --variants '{"logdiff": ["data.transform=[log, difference]", "model.norm=none"]}'
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from bench_common import write_json

from rnnzoo import runs
from rnnzoo.perf import LoadSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", required=True, help="JSON: name -> list of --set")
    parser.add_argument("--horizons", default="", help="data.horizon values; empty: the config's")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    out = json.loads(args.out.read_text()) if args.out.exists() else {"results": {}}
    results = out["results"]
    horizons = [int(h) for h in args.horizons.split(",")] if args.horizons else [None]
    command = "python scripts/tune_series.py " + shlex.join(sys.argv[1:])  # each row's own
    for horizon in horizons:
        for name, sets in json.loads(args.variants).items():
            key = f"{name}|h={horizon}"
            if key in results:
                continue
            scores = []
            with LoadSampler() as sampler:
                for seed in range(args.seeds):
                    overrides = [*sets, f"train.seed={seed}", "train.device=cpu"]
                    overrides += ["output.tensorboard=false"]
                    if horizon is not None:
                        overrides.append(f"data.horizon={horizon}")
                    with tempfile.TemporaryDirectory() as root:
                        run = runs.train(
                            args.config, overrides, out=Path(root), echo=lambda _: None
                        )
                        summary = json.loads((run / "summary.json").read_text())
                    scores.append(summary["val"]["rmse_orig"])
            mean = statistics.mean(scores)
            results[key] = {
                "val_rmse": scores,
                "mean": mean,
                "sets": sets,
                "command": command,
                "load": sampler.record(),
            }
            print(f"{key}: val rmse {[round(s, 2) for s in scores]}, mean {mean:.2f}", flush=True)
            write_json(args.out, "tune_series.py", {"results": results, "chosen": chosen(results)})


def chosen(results: dict[str, dict]) -> dict[str, str]:
    """Per horizon, the variant with the lowest mean validation RMSE."""
    best: dict[str, str] = {}
    for key, row in results.items():
        name, horizon = key.split("|")
        if horizon not in best or row["mean"] < results[f"{best[horizon]}|{horizon}"]["mean"]:
            best[horizon] = name
    return best


if __name__ == "__main__":
    main()
