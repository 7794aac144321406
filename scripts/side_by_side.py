"""Print the test scores of run folders side by side (what `make demo` ends with).

    python scripts/side_by_side.py runs/demo runs/demo-naive

Reads each run's ``eval_test.json`` (written at the end of training and by ``rnnzoo
eval``) and its ``config.yaml`` for the model's name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

SHOWN = ("rmse_orig", "mae_orig", "mape", "smape", "mase", "mse", "mae")


def main(run_dirs: list[Path]) -> None:
    rows = []
    for run in run_dirs:
        scores = json.loads((run / "eval_test.json").read_text())
        model = yaml.safe_load((run / "config.yaml").read_text())["model"]
        name = model["name"] + (f" ({model['cell']})" if "cell" in model else "")
        rows.append((f"{run.name}: {name}", scores))
    keys = [k for k in SHOWN if all(k in s for _, s in rows)] or sorted(rows[0][1])
    width = max(len(label) for label, _ in rows)
    print(f"{'test split':<{width}}  " + "  ".join(f"{k:>10}" for k in keys))
    for label, scores in rows:
        print(f"{label:<{width}}  " + "  ".join(f"{scores[k]:>10.4g}" for k in keys))


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
