"""ETTh1 long-horizon forecasting: baselines against the recurrent forecasters.

Trains the shipped ETTh1 configs (``configs/etth1_*.yaml``, plus ``repeat_last``) at
each horizon, setting (M: all 7 columns; S: OT alone) and input length, and reports
the test MSE/MAE (on standard-scaled values, the field's convention) of each run's
best checkpoint, selected on validation, with the training time.

    python scripts/bench_forecast.py --data ../shared/data/timeseries/ETTh1.csv \\
        --out benchmarks/forecast.json
    python scripts/bench_forecast.py --data ETTh1.csv --models linear,segrnn --horizons 96

Runs already in ``--out`` are kept and skipped, so an interrupted benchmark picks up
where it stopped. Each run records the load average sampled while it trained
(``rnnzoo.perf.LoadSampler``). ``--epochs``/``--patience`` cap every trained config's budget.

``--small`` instead trains the configs of the small series (``airline_lstm`` over
``--seeds`` seeds, ``sunspots_gru`` and ``temperatures_lstm`` once) beside the naive forecasts
on the same test windows, with ``--series-dir`` holding the sunspot and temperature CSVs:

    python scripts/bench_forecast.py --small --series-dir ../shared/data/timeseries \
        --seeds 5 --out benchmarks/forecast_small.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import write_json

from rnnzoo import runs
from rnnzoo.perf import LoadSampler, describe_load, tune_cpu_allocator

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
MODELS = {  # name in the table -> (config, input lengths, first = main; overrides)
    "repeat_last": ("etth1_linear", (96,), ["model={name: repeat_last}"]),
    "linear": ("etth1_linear", (336, 96), []),
    "lstm": ("etth1_lstm", (96, 336), []),
    "gru": ("etth1_gru", (96, 336), []),
    "gru_no_norm": ("etth1_gru", (96,), ["model.norm=none"]),  # what norm: last buys
    "seq2seq": ("etth1_seq2seq", (96,), []),
    "seq2seq_residual": ("etth1_seq2seq", (96,), ["model.residual=true"]),
    # free-running training (never fed the true hour), kept only where validation prefers it
    "seq2seq_residual_tf0": (
        "etth1_seq2seq",
        (96,),
        ["model.residual=true", "model.teacher_forcing=0"],
    ),
    "seasonal_naive": ("etth1_linear", (96,), ["model={name: seasonal_naive, period: 24}"]),
    # fitted anew on each window of each column, on standard-scaled values (additive forms)
    "theta": (
        "etth1_linear",
        (336,),
        ["model={name: theta}", "train.epochs=1", "data.stride=100000"],
    ),
    "ets": ("etth1_linear", (336,), ["model={name: ets}", "train.epochs=1", "data.stride=100000"]),
    "segrnn": ("etth1_segrnn", (720,), []),
    # issue 18's tries at SegRNN's targets, each to be kept only if validation prefers it
    "segrnn_revin": ("etth1_segrnn", (720,), ["model.norm=revin"]),
    "segrnn_lr3e-4": ("etth1_segrnn", (720,), ["train.lr=3.0e-4"]),
    "segrnn_ens3": ("etth1_segrnn", (720,), []),
}
ENSEMBLES = {"segrnn_ens3": 3}  # model -> seeds (--seed on) of its config, forecasts averaged
PUBLISHED = {  # ETTh1, M, horizon 96, test MSE (DLinear and SegRNN papers)
    "repeat": 1.295, "DLinear": 0.375, "PatchTST": 0.370, "SegRNN": 0.351, "GRU": 1.135,
}  # fmt: skip


def bench_one(model: str, setting: str, horizon: int, input_len: int, args: Any) -> dict[str, Any]:
    config, _, extra = MODELS[model]
    overrides = [
        *extra,
        f"data.path={args.data}",
        f"data.mode={setting}",
        f"data.horizon={horizon}",
        f"data.input_len={input_len}",
        f"train.seed={args.seed}",
        f"output.name={model}-{setting}-L{input_len}-H{horizon}",
        "output.tensorboard=false",
    ]
    if setting == "S":
        overrides.append("data.features=[]")
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.patience is not None:
        overrides.append(f"train.patience={args.patience}")
    started = time.perf_counter()
    members: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as root, LoadSampler() as sampler:
        if model in ENSEMBLES:  # the seeds, trained here, then averaged on the same windows
            folders, curve = [], []
            for seed in range(args.seed, args.seed + ENSEMBLES[model]):
                member = [*overrides, f"train.seed={seed}", f"output.name=member-{seed}"]
                folders.append(
                    runs.train(CONFIGS / f"{config}.yaml", member, out=Path(root), echo=_quiet)
                )
                curve += _curve(folders[-1])
                score = json.loads((folders[-1] / "summary.json").read_text())
                members.append(
                    {"seed": seed, "val_mse": score["val"]["mse"], "test_mse": score["test"]["mse"]}
                )
            runs_list = ", ".join(map(str, folders))
            overrides += [f"model={{name: ensemble, runs: [{runs_list}]}}", "train.epochs=1"]
        run_dir = runs.train(CONFIGS / f"{config}.yaml", overrides, out=Path(root), echo=_quiet)
        summary = json.loads((run_dir / "summary.json").read_text())
        if model not in ENSEMBLES:
            curve = _curve(run_dir)
    return {
        "model": model,
        "setting": setting,
        "horizon": horizon,
        "input_len": input_len,
        "config": f"configs/{config}.yaml",
        "test_mse": summary["test"]["mse"],
        "test_mae": summary["test"]["mae"],
        "val_mse": summary["val"]["mse"],
        "best_epoch": summary["best_epoch"],
        "epochs": summary["epochs"],
        "train_seconds": sum(r["seconds"] for r in curve),  # an ensemble's: its members'
        **({"members": members} if members else {}),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load": sampler.record(),
        "command": "python scripts/bench_forecast.py " + " ".join(sys.argv[1:]),
    }


SMALL = {  # config -> (data file in --series-dir or None, naive model, its YAML)
    "airline_lstm": (None, "{name: seasonal_naive, period: 12}"),
    "sunspots_gru": ("monthly-sunspots.csv", "{name: repeat_last}"),
    "temperatures_lstm": ("daily-min-temperatures.csv", "{name: repeat_last}"),
}


def bench_small(args: Any) -> list[dict[str, Any]]:
    """Each small-series config over seeds, and its naive forecast, on the test split."""
    rows = []
    for config, (file, naive) in SMALL.items():
        base = [] if file is None else [f"data.path={args.series_dir / file}"]
        for label, extra, seeds in (
            (config, [], range(args.seeds if config == "airline_lstm" else 1)),
            (f"{config} -> {naive}", [f"model={naive}"], range(1)),
        ):
            for seed in seeds:
                overrides = [*base, *extra, f"train.seed={seed}", "output.tensorboard=false"]
                with tempfile.TemporaryDirectory() as root, LoadSampler() as sampler:
                    run = runs.train(
                        CONFIGS / f"{config}.yaml", overrides, out=Path(root), echo=_quiet
                    )
                    summary = json.loads((run / "summary.json").read_text())
                rows.append({"run": label, "seed": seed, "seconds": summary["seconds"],
                             "val": summary["val"], "test": summary["test"],
                             "load": sampler.record()})  # fmt: skip
                print(
                    f"{label} seed {seed}: test rmse_orig {summary['test']['rmse_orig']:.4g}, "
                    f"{describe_load(rows[-1]['load'])}"
                )
                write_results(args.out, rows)
    return rows


def _curve(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _quiet(line: str) -> None:
    if line.startswith(("best epoch", "test")):
        print("   ", line[:150], flush=True)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per (setting, model, input), test MSE/MAE per horizon; the
    input length chosen on validation is marked with *."""
    horizons = sorted({r["horizon"] for r in rows})
    lines = [
        "| setting | model | input | " + " | ".join(f"H={h} MSE / MAE" for h in horizons)
        + " | train s (H=96) |",
        "|---|---|---|" + "---|" * len(horizons) + "---|",
    ]  # fmt: skip
    best_input = {}
    for r in rows:
        key = (r["setting"], r["model"], r["horizon"])
        if key not in best_input or r["val_mse"] < best_input[key]["val_mse"]:
            best_input[key] = r
    keys = sorted({(r["setting"], r["model"], r["input_len"]) for r in rows}, key=_order)
    for setting, model, input_len in keys:
        cells, seconds = [], ""
        for h in horizons:
            match = [r for r in rows if _key(r) == (setting, model, input_len, h)]
            if not match:
                cells.append("")
                continue
            r = match[0]
            star = "*" if best_input[(setting, model, h)] is r else ""
            cells.append(f"{r['test_mse']:.3f} / {r['test_mae']:.3f}{star}")
            if h == 96:
                seconds = f"{r['train_seconds']:.0f}"
        lines.append(
            f"| {setting} | {model} | {input_len} | " + " | ".join(cells) + f" | {seconds} |"
        )
    return "\n".join(lines)


def _key(r: dict[str, Any]) -> tuple[str, str, int, int]:
    return r["setting"], r["model"], r["input_len"], r["horizon"]


def _order(key: tuple[str, str, int]) -> tuple[int, int, int]:
    setting, model, input_len = key
    return ("MS".index(setting), list(MODELS).index(model), input_len)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="ETTh1.csv")
    parser.add_argument("--out", type=Path, help="JSON with every run (read first: done runs skip)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--settings", default="M,S")
    parser.add_argument("--horizons", default="96,192,336,720")
    parser.add_argument("--first-input", action="store_true", help="each model's main input only")
    parser.add_argument("--epochs", type=int, help="cap every config's epochs")
    parser.add_argument("--patience", type=int, help="early-stopping patience for every config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", action="store_true", help="print the table of --out and stop")
    parser.add_argument("--small", action="store_true", help="the small series instead")
    parser.add_argument("--series-dir", type=Path, help="sunspot and temperature CSVs")
    parser.add_argument("--seeds", type=int, default=5, help="--small: seeds per config")
    args = parser.parse_args()
    tune_cpu_allocator()
    if args.small:
        write_results(args.out, bench_small(args))
        return

    rows: list[dict[str, Any]] = []
    if args.out is not None and args.out.exists():
        rows = json.loads(args.out.read_text())["results"]
    if args.table:
        print(table(rows))
        return
    if args.data is None:
        parser.error("--data ETTh1.csv is required")
    done = {(r["model"], r["setting"], r["horizon"], r["input_len"]) for r in rows}
    for setting in args.settings.split(","):
        for horizon in (int(h) for h in args.horizons.split(",")):
            for model in args.models.split(","):
                lengths = MODELS[model][1]
                for input_len in lengths[:1] if args.first_input else lengths:
                    if (model, setting, horizon, input_len) in done:
                        continue
                    print(f"{model} {setting} L={input_len} H={horizon}", flush=True)
                    rows.append(bench_one(model, setting, horizon, input_len, args))
                    print(f"    {describe_load(rows[-1]['load'])}", flush=True)
                    write_results(args.out, rows)
    print(table(rows))


def write_results(path: Path | None, rows: list[dict[str, Any]]) -> None:
    write_json(path, "bench_forecast.py", {"published_etth1_M_96": PUBLISHED, "results": rows})


if __name__ == "__main__":
    main()
