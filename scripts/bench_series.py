"""Small series: every model against ETS, ARIMA, Theta and a naive forecast, same windows.

For each series and horizon (1 and 12 steps by default) this trains the recurrent
forecaster, the linear model, the naive forecast and the three statistical baselines,
and records the test RMSE and MASE (original units) of each run's best checkpoint,
chosen on validation, with the training time and the load sampled during the run.

Airline, sunspots and temperatures are the series the shipped configs were chosen on
(``airline_lstm``, ``sunspots_gru``, ``temperatures_lstm``: their own data keys). The
others were never used to choose anything: each gets the recipe of the shipped config
for its kind of data (``airline_lstm`` for monthly and yearly series, ``temperatures_lstm``
for daily ones) with only its data keys replaced (file, columns, season, splits, window;
the airline recipe's seasonal difference takes the series' season, or is dropped when
it has none). The linear model reads the same data keys as the recurrent one:

    python scripts/bench_series.py --series-dir ../shared/data/timeseries \\
        --out benchmarks/forecast_series.json
    python scripts/bench_series.py --series-dir DIR --series airline --horizons 1 --seeds 5

Runs already in ``--out`` are kept and skipped. Every model of a (series, horizon) sees
the same test windows: a split owns the rows its forecasts fall in, whatever the window's
length, so the statistical models may read a longer history than the networks.
``linear_plain`` is the same linear model on the untransformed data (NLinear: each
window less its last value). The
``quantiles`` row is the recurrent recipe forecasting the 0.1, 0.5 and 0.9 quantiles
(its point scores are the median's; ``coverage``: the % of true values inside the
0.1-0.9 band, nominal 80). The ``ensemble`` model averages the forecasts of the
recurrent recipe's ``--seeds`` seeds (trained again for it, then scored as one model).

On the untuned series, ``--models variants`` also trains the recipe with each other
transform a forecaster would try first (``variants``: first differences alone, the
seasonal difference alone, both, or none with the window normalised to its last value),
and the tables' ``chosen`` column is, per series and horizon, the one of these (the
recipe included) with the lowest mean validation RMSE over the seeds: a choice made on
validation alone, whose test scores are then reported. The summary names the variant.
``--models chosen_ensemble`` (with ``--choose-from`` the JSONs holding those rows) is the
ensemble of the chosen variant's seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import write_json

from rnnzoo import runs
from rnnzoo.perf import LoadSampler, describe_load

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# name -> data keys. "recipe": the shipped config whose model and training it takes;
# "tuned": the shipped configs were chosen on it. splits are rows (train, val, test).
SERIES: dict[str, dict[str, Any]] = {
    "airline": {"recipe": "airline_lstm", "tuned": True, "stat_len": 72},
    "sunspots": {"recipe": "sunspots_gru", "tuned": True, "file": "monthly-sunspots.csv",
                 "stat_len": 120},
    "temperatures": {"recipe": "temperatures_lstm", "tuned": True,
                     "file": "daily-min-temperatures.csv", "stat_len": 56},
    "births": {"recipe": "temperatures_lstm", "file": "daily-total-female-births.csv",
               "date": "Date", "target": "Births", "season": 7, "splits": [255, 37, 73],
               "input_len": 28, "stat_len": 84},
    "robberies": {"recipe": "airline_lstm", "file": "monthly-robberies.csv", "date": "Month",
                  "target": "Robberies", "season": 12, "splits": [70, 24, 24],
                  "input_len": 24, "stat_len": 48},
    "shampoo": {"recipe": "airline_lstm", "file": "monthly-shampoo-sales.csv", "date": None,
                "target": "Sales", "season": 1, "splits": [24, 6, 6], "input_len": 6,
                "stat_len": 12},
    "champagne": {"recipe": "airline_lstm", "file": "monthly_champagne_sales.csv",
                  "date": "Month", "target": "Sales", "season": 12, "splits": [57, 24, 24],
                  "input_len": 24, "stat_len": 36},
    "writing_paper": {"recipe": "airline_lstm", "file": "monthly-writing-paper-sales.csv",
                      "date": None, "target": "Sales", "season": 12, "splits": [99, 24, 24],
                      "input_len": 24, "stat_len": 72},
    "water": {"recipe": "airline_lstm", "file": "yearly-water-usage.csv", "date": "Year",
              "target": "Water", "season": 1, "splits": [43, 12, 24], "input_len": 12,
              "stat_len": 24},
    "mean_temperature": {"recipe": "airline_lstm", "file": "monthly-mean-temp.csv",
                         "date": "Month", "target": "Temperature", "season": 12,
                         "splits": [192, 24, 24], "input_len": 24, "stat_len": 72},
}  # fmt: skip
STATISTICAL = ("ets", "arima", "theta")


def data_keys(name: str, args: Any, horizon: int) -> list[str]:
    """--set overrides that point the series' recipe at it, at this horizon."""
    s = SERIES[name]
    keys = [f"data.horizon={horizon}"]
    if "file" in s:
        keys.append(f"data.path={args.series_dir / s['file']}")
    if s.get("tuned"):
        return keys
    date = "null" if s["date"] is None else s["date"]
    return [
        *keys,
        f"data.date_column={date}",
        f"data.target={s['target']}",
        f"data.season={s['season']}",
        "data.protocol=counts",
        f"data.splits={s['splits']}",
        f"data.input_len={s['input_len']}",
        "data.missing=error",
        f"data.transform={recipe_transform(name)}",
    ]


def recipe_transform(name: str) -> str:
    """The transform ``data_keys`` gives an untuned series: the recipe's, at its season."""
    s = SERIES[name]
    if s["recipe"] != "airline_lstm":
        return "[]"
    season = s["season"]
    return "[log, difference" + (f", {{difference: {season}}}]" if season > 1 else "]")


def variants(name: str) -> dict[str, list[str]]:
    """The recipe's other transforms on an untuned series, as overrides, less those the
    same as the recipe (or, without a season, as one another); none on the tuned ones."""
    s = SERIES[name]
    if s.get("tuned"):
        return {}
    first = ["log"] if s["recipe"] == "airline_lstm" else []
    season = s["season"]
    steps = {
        "diff": [*first, "difference"],
        "seasonal_diff": [*first, f"{{difference: {season}}}"],
        "diff_seasonal_diff": [*first, "difference", f"{{difference: {season}}}"],
        "window_norm": first,
    }
    seen = {recipe_transform(name) + " none"}
    out = {}
    for label, transform in steps.items():
        if season == 1 and "seasonal" in label:
            continue
        norm = "last" if label == "window_norm" else "none"
        key = f"[{', '.join(transform)}] {norm}"
        if key not in seen:
            seen.add(key)
            out[label] = [f"data.transform=[{', '.join(transform)}]", f"model.norm={norm}"]
    return out


def season_of(name: str) -> int:
    s = SERIES[name]
    if "season" in s:
        return int(s["season"])
    from rnnzoo.config import load_config

    return int(load_config(CONFIGS / f"{s['recipe']}.yaml").data.season)


def models(name: str) -> dict[str, list[str]]:
    """model label -> overrides on top of the recipe and its data keys."""
    season, stat_len = season_of(name), SERIES[name]["stat_len"]
    naive = f"{{name: seasonal_naive, period: {season}}}" if season > 1 else "{name: repeat_last}"
    # Scored, not trained: one training window is enough (stride applies to train only).
    stat = [f"data.input_len={stat_len}", "data.scaler=none", "data.transform=[]",
            "data.stride=1000000", "train.epochs=1"]  # fmt: skip
    return {
        "recurrent": [],
        "quantiles": ["model.quantiles=[0.1, 0.5, 0.9]"],  # the recipe, probabilistic
        "linear": ["model={name: linear, norm: last}"],
        # NLinear on the data as it is: the line a user would draw first
        "linear_plain": ["model={name: linear, norm: last}", "data.transform=[]"],
        "naive": [f"model={naive}", "data.transform=[]", "train.epochs=1"],  # on the data itself
        **{m: [f"model={{name: {m}}}", *stat] for m in STATISTICAL},
        **{f"variant:{label}": keys for label, keys in variants(name).items()},
    }


def bench_one(
    series: str, horizon: int, model: str, seed: int, args: Any, variant: str = "recipe"
) -> dict[str, Any]:
    """One run's row; ``variant``: which of ``variants`` a ``chosen_ensemble``'s members are."""
    recipe = SERIES[series]["recipe"]
    common = [*data_keys(series, args, horizon), "output.tensorboard=false", "train.device=cpu"]
    ensembled = model in ("ensemble", "chosen_ensemble")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root, LoadSampler() as sampler:
        if ensembled:  # the recipe's (or the variant's) seeds, trained here, averaged
            members = []
            extra = [] if variant == "recipe" else variants(series)[variant]
            for s in range(args.seeds):
                member = [*common, *extra, f"train.seed={s}", f"output.name=member-{s}"]
                members.append(
                    runs.train(CONFIGS / f"{recipe}.yaml", member, out=Path(root), echo=_quiet)
                )
            ensemble = f"model={{name: ensemble, runs: [{', '.join(map(str, members))}]}}"
            # the members' data keys too: the ensemble must read the windows they read
            overrides = [*common, *extra, ensemble, "train.epochs=1", "output.name=ensemble"]
        else:
            overrides = [*common, *models(series)[model], f"train.seed={seed}"]
        run = runs.train(CONFIGS / f"{recipe}.yaml", overrides, out=Path(root), echo=_quiet)
        summary = json.loads((run / "summary.json").read_text())
    if ensembled:  # the members' folders were temporary
        overrides = [
            *common, *extra, f"model={{name: ensemble, runs: <seeds 0-{args.seeds - 1}>}}"
        ]  # fmt: skip
    keep = [
        k
        for k in ("rmse_orig", "mae_orig", "mase", "mse", "coverage", "pinball")
        if k in summary["test"]
    ]
    return {
        "series": series,
        "tuned_on": bool(SERIES[series].get("tuned")),
        "horizon": horizon,
        "model": model,
        **({"variant": variant} if model == "chosen_ensemble" else {}),
        "seed": seed,
        "config": f"configs/{recipe}.yaml",
        "overrides": overrides,
        "val": {k: summary["val"][k] for k in keep},
        "test": {k: summary["test"][k] for k in keep},
        "best_epoch": summary["best_epoch"],
        "train_seconds": summary["seconds"],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load": sampler.record(),
    }


def _quiet(line: str) -> None:
    pass


def chosen(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (series, horizon), the rows of the recipe or variant with the lowest mean
    validation RMSE over its seeds, relabelled ``chosen`` (``variant`` says which)."""
    groups: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        if r["model"] == "recurrent" or r["model"].startswith("variant:"):
            groups.setdefault((r["series"], r["horizon"]), {}).setdefault(r["model"], []).append(r)
    picked = []
    for candidates in groups.values():
        best = min(
            candidates,
            key=lambda m: statistics.mean(r["val"]["rmse_orig"] for r in candidates[m]),
        )
        variant = "recipe" if best == "recurrent" else best.removeprefix("variant:")
        picked += [{**r, "model": "chosen", "variant": variant} for r in candidates[best]]
    return picked


def means(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each (series, horizon, model)'s test scores, the mean over its seeds: the cells of
    the tables, as ``--summary`` saves them."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["series"], r["horizon"], r["model"]), []).append(r)
    return [
        {"series": series, "horizon": h, "model": m, "seeds": [r["seed"] for r in group],
         **({"variant": group[0]["variant"]} if "variant" in group[0] else {}),
         **{"val_rmse_orig_mean": statistics.mean(r["val"]["rmse_orig"] for r in group)},
         **{f"test_{k}_mean": statistics.mean(r["test"][k] for r in group)
            for k in group[0]["test"]}}
        for (series, h, m), group in groups.items()
    ]  # fmt: skip


def table(rows: list[dict[str, Any]], metric: str = "rmse_orig") -> str:
    """Markdown: one line per (series, horizon), test ``metric`` per model (the mean
    over seeds where there are several)."""
    names = ["recurrent", "chosen", "ensemble", "chosen_ensemble", "linear", "linear_plain",
             "naive", *STATISTICAL]  # fmt: skip
    lines = [
        "| series | tuned on | H | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    keys = sorted(
        {(r["series"], r["horizon"]) for r in rows}, key=lambda k: (list(SERIES).index(k[0]), k[1])
    )
    for series, h in keys:
        cells = []
        for m in names:
            vals = [
                r["test"][metric]
                for r in rows
                if (r["series"], r["horizon"], r["model"]) == (series, h, m)
            ]
            mean = statistics.mean(vals) if vals else None
            cells.append("" if mean is None else f"{mean:.0f}" if mean >= 1000 else f"{mean:.3g}")
        tuned = "yes" if SERIES[series].get("tuned") else "no"
        lines.append(f"| {series} | {tuned} | {h} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="JSON with every run (read first: done runs skip)")
    parser.add_argument("--series", default=",".join(SERIES))
    parser.add_argument("--horizons", default="1,12")
    parser.add_argument(
        "--models", default="recurrent,ensemble,linear,naive," + ",".join(STATISTICAL)
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the trained models")
    parser.add_argument("--table", action="store_true", help="print the tables of --out and stop")
    parser.add_argument(
        "--merge", type=Path, action="append", default=[],
        help="--table: rows of another run's JSON, replacing --out's of the same series, "
        "horizon and model",
    )  # fmt: skip
    parser.add_argument("--summary", type=Path, help="--table: save its cells (means) here")
    parser.add_argument(
        "--choose-from", type=Path, action="append", default=[],
        help="--models chosen_ensemble: JSONs whose recipe and variant rows pick the variant",
    )  # fmt: skip
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    if args.out is not None and args.out.exists():
        rows = json.loads(args.out.read_text())["results"]
    if args.table:
        for extra in args.merge:
            more = json.loads(extra.read_text())["results"]
            replaced = {(r["series"], r["horizon"], r["model"]) for r in more}
            rows = [r for r in rows if (r["series"], r["horizon"], r["model"]) not in replaced]
            rows += more
        rows += chosen(rows)
        print(table(rows), "\n\nMASE\n", table(rows, "mase"), sep="\n")
        print("\nchosen on validation:", *(f"{c['series']} H={c['horizon']}: {c['variant']}"
              for c in means(rows) if c["model"] == "chosen"), sep="\n  ")  # fmt: skip
        if args.summary is not None:
            sources = [str(p) for p in [args.out, *args.merge]]
            write_json(args.summary, "bench_series.py", {"from": sources, "cells": means(rows)})
        return
    done = {(r["series"], r["horizon"], r["model"], r["seed"]) for r in rows}
    candidates = [r for path in args.choose_from for r in json.loads(path.read_text())["results"]]
    picks = {(c["series"], c["horizon"]): c["variant"] for c in chosen(candidates + rows)}
    for series in args.series.split(","):
        for horizon in (int(h) for h in args.horizons.split(",")):
            if horizon > SERIES[series].get("splits", [99, 99, 99])[1]:
                print(f"{series} H={horizon}: validation holds no window; skipped")
                continue
            asked = args.models.split(",")
            if "variants" in asked:
                asked[asked.index("variants") : asked.index("variants") + 1] = [
                    f"variant:{label}" for label in variants(series)
                ]
            for model in asked:
                seeded = ("recurrent", "linear", "linear_plain", "quantiles")  # an ensemble: once
                trained = model in seeded or model.startswith("variant:")
                for seed in range(args.seeds if trained else 1):
                    if (series, horizon, model, seed) in done:
                        continue
                    variant = picks.get((series, horizon), "recipe")
                    rows.append(bench_one(series, horizon, model, seed, args, variant))
                    r = rows[-1]
                    print(
                        f"{series} H={horizon} {model} seed {seed}: val rmse "
                        f"{r['val']['rmse_orig']:.4g}, test rmse {r['test']['rmse_orig']:.4g} "
                        f"mase {r['test']['mase']:.3g}, {r['train_seconds']:.0f}s, "
                        f"{describe_load(r['load'])}",
                        flush=True,
                    )
                    write_results(args.out, rows)
    print(table(rows))


def write_results(path: Path | None, rows: list[dict[str, Any]]) -> None:
    write_json(path, "bench_series.py", {"results": rows})


if __name__ == "__main__":
    main()
