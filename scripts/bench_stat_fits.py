"""What a statistical baseline costs on ETTh1: seconds a fit, and fits a horizon.

``ets``, ``arima`` and ``theta`` fit every window of every output column anew, so one
horizon of the ETTh1 grid is (validation windows + test windows) x columns fits. This
times statsforecast's fit on ETTh1's own windows, the way ``rnnzoo.models.statistical``
calls it (``Model(season_length=24).forecast(y=history, h=horizon)``, on standard-scaled
values of ``OT``, 336 hours of history) at ``--fits`` windows spread over the test
split, and multiplies the median by the number of fits each setting needs. It is what
says which rows of ``bench_forecast.py`` fit in a session::

    python scripts/bench_stat_fits.py --data ../shared/data/timeseries/ETTh1.csv \\
        --out benchmarks/stat_fits.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_common import write_json

from rnnzoo.data.timeseries import Scaler, split_borders, window_starts
from rnnzoo.perf import LoadSampler, describe_load

COLUMNS = {"S": 1, "M": 7}  # output columns fitted per window
HORIZONS = (96, 192, 336, 720)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="ETTh1.csv")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--models", default="ets,theta,arima")
    parser.add_argument("--fits", type=int, default=5, help="windows timed per model")
    parser.add_argument("--input-len", type=int, default=336)
    args = parser.parse_args()
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta  # slow import

    make = {"ets": AutoETS, "arima": AutoARIMA, "theta": AutoTheta}
    values = pd.read_csv(args.data)[["OT"]].to_numpy(np.float64)
    borders = split_borders(len(values), "ett_hour")
    train = values[slice(*borders["train"])]
    series = Scaler.fit("standard", train).transform(values)[:, 0]
    windows = {  # validation + test windows per horizon, as the task counts them
        h: sum(len(window_starts(borders[s], args.input_len, h)) for s in ("val", "test"))
        for h in HORIZONS
    }
    starts = window_starts(borders["test"], args.input_len, HORIZONS[0])
    picked = starts[np.linspace(0, len(starts) - 1, args.fits).round().astype(int)].tolist()
    rows: dict[str, dict[str, Any]] = {}
    for name in args.models.split(","):
        seconds = []
        with LoadSampler() as sampler:
            for start in picked:
                history = series[start : start + args.input_len]
                began = time.perf_counter()
                make[name](season_length=24).forecast(y=history, h=HORIZONS[0])
                seconds.append(time.perf_counter() - began)
        median = statistics.median(seconds)
        rows[name] = {
            "seconds_per_fit": seconds,
            "median_seconds": median,
            "hours_per_horizon": {
                f"{setting}-{h}": round(median * windows[h] * c / 3600, 2)
                for setting, c in COLUMNS.items()
                for h in HORIZONS
            },
            "load": sampler.record(),
        }
        print(f"{name}: {median:.3f} s a fit ({describe_load(rows[name]['load'])})", flush=True)
    write_json(
        args.out,
        "bench_stat_fits.py",
        {"input_len": args.input_len, "horizon_timed": HORIZONS[0], "windows": windows,
         "columns": COLUMNS, "models": rows},
    )  # fmt: skip


if __name__ == "__main__":
    main()
