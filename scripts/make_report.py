"""Measure the claims rnnzoo teaches and write them up: ``docs/REPORT.md``.

Each claim is checked by small runs on this machine, at the same budget per run, and
the report gives the measured number, the verdict and the command behind it:

1. a tanh RNN fails the adding and copy tasks at T = 100 while LSTM and GRU solve
   them (with the gradient-flow figure of the adding runs);
2. a GRU step is cheaper than an LSTM step (time and parameters, same hidden size);
3. on IMDB, a bidirectional and a 2-layer LSTM against a single-layer one;
4. on ETTh1, recurrent forecasters against the naive and linear baselines;
5. the other shapes: tagging (bidirectional against left-to-right), sequence-to-sequence
   (attention, beam search) and a conditional generator (validation perplexity);
6. the zoo's variants (LayerNorm LSTM/GRU, AWD-style regularised LSTM, IndRNN, minGRU,
   peephole and CIFG LSTMs, minLSTM) beside LSTM and GRU on IMDB and ETTh1;
7. part-of-speech tagging on UD English EWT, bidirectional against left-to-right.

    python scripts/make_report.py --imdb ../shared/data/imdb/aclImdb_train.tar.gz \\
        --etth1 ../shared/data/timeseries/ETTh1.csv --budget-minutes 2 \\
        --ud-train ../shared/data/ud/en_ewt-ud-train.conllu \\
        --ud-dev ../shared/data/ud/en_ewt-ud-dev.conllu

Runs go to ``--work`` (default ``runs/report``); a run finished by an earlier,
interrupted invocation is reused. Sections whose data is not given are skipped.

Beside the report it writes ``docs/report.json``: every number the report shows, as
computed (``scripts/check_claims.py`` checks the report against it), and the machine's
load sampled while each comparison trained and while section 2 timed its steps.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from rnnzoo.compare import compare
from rnnzoo.diagnostics import diagnose
from rnnzoo.layers import Recurrent
from rnnzoo.perf import LoadSampler, describe_load, merge_load, tune_cpu_allocator
from rnnzoo.runs import evaluate, load_run
from rnnzoo.tasks.base import PredictRequest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
SOLVED_MSE = 0.01  # adding problem: solved below this test MSE (the mean predictor: 0.167)
SOLVED_RECALL = 0.9  # copy task: solved when 90 % of the recalled symbols are right
REMEMBERING = 0.95  # copy task: ce / memoryless below this means the cell uses memory
STEP = {"seq_len": 100, "batch": 64, "input_size": 64, "hidden_size": 128}  # section 2
PUBLISHED = {  # ETTh1, M, horizon 96, test MSE (DLinear and SegRNN papers)
    "repeat": 1.295, "DLinear": 0.375, "SegRNN": 0.351,
}  # fmt: skip


def run_compare(
    name: str, configs: list[Path], overrides: list[str], args: Any, minutes: float | None = None
) -> list[dict[str, Any]]:
    budget = minutes or args.budget_minutes
    load_file = args.work / name / "load.json"  # the load sampled while its runs trained
    trains = not (args.work / name / "compare.json").is_file()  # else its runs are reused
    with LoadSampler() as sampler:
        folder = compare(configs, overrides, 1, budget, args.work / name, echo=_quiet)
    if trains:
        load_file.write_text(json.dumps(sampler.record()))
    load = json.loads(load_file.read_text()) if load_file.is_file() else None
    if not isinstance(load, dict):  # trained by a version that sampled only before and after
        args.unknown_load.append(name)
        load = None
    rows = json.loads((folder / "compare.json").read_text())["rows"]
    args.train_seconds += sum(r["seconds"] for r in rows)
    args.facts.setdefault("comparisons", {})[name] = {
        "budget_minutes": budget, "rows": rows, "load": load,
    }  # fmt: skip
    if load is not None:
        args.load.append(load)
    shutil.copyfile(folder / "compare.png", args.figures / f"compare_{name}.png")
    return rows


def run_folder(comparison: Path, label: str, seed: int = 0) -> Path:
    """The folder of the run of ``label`` with ``seed`` in a comparison folder, as its
    ``compare.json`` records it.

    compare names a run folder after its resolved config (``<label>-seed<N>-<hash>``,
    ``-2`` on a clash, or the ``<stem>-seed<N>`` an older version trained), so only the
    comparison knows where a run went."""
    path = comparison / "compare.json"
    runs = json.loads(path.read_text())["runs"]
    found = [r["run_dir"] for r in runs if r["label"] == label and r["seed"] == seed]
    if len(found) != 1:
        held = ", ".join(f"{r['label']} (seed {r['seed']})" for r in runs) or "none"
        raise LookupError(f"{path} has {len(found)} runs of {label} seed {seed}; it has {held}")
    return Path(found[0])


def curves(name: str) -> list[str]:
    """Markdown for the validation curves ``run_compare`` copied next to the report."""
    return [
        "Validation metric against epoch and against wall time:",
        "",
        f"![{name} validation curves](figures/compare_{name}.png)",
        "",
    ]


def _quiet(line: str) -> None:
    print(line, flush=True)


def table(rows: list[dict[str, Any]], test_label: str = "test") -> list[str]:
    lines = [
        f"| config | cell | layers | bidirectional | parameters | best val {rows[0]['metric']} "
        f"| {test_label} | epochs' wall time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        test = "-" if r["test"] is None else f"{r['test']:.4g}"
        lines.append(
            f"| {r['label']} | {r['cell']} | {r['layers']} | {r['bidirectional']} "
            f"| {r['parameters']:,} | {r['best_val']:.4g} | {test} | {r['seconds']:.0f} |"
        )
    return lines


def memory_section(args: Any, out: list[str]) -> None:
    cells = ("rnn", "lstm", "gru")
    adding = run_compare(
        "adding", [CONFIGS / f"adding_{c}.yaml" for c in cells], ["train.lr=3e-3"], args
    )
    # No early stop: the copy task sits on the memoryless plateau for a long time first.
    no_stop = ["train.patience=100000", "train.epochs=100000"]
    copy_configs = [CONFIGS / f"copy_{c}.yaml" for c in cells]
    copy = run_compare("copy", copy_configs, no_stop, args, args.copy_minutes)
    runs = [run_folder(args.work / "adding", f"adding_{c}") for c in cells]
    diagnose(runs, args.figures, "best")
    (args.figures / "gradient_flow.png").replace(args.figures / "gradient_flow_adding.png")
    flows = {
        c: json.loads((r / "gradient_flow.json").read_text())
        for c, r in zip(cells, runs, strict=True)
    }

    mse = {r["cell"]: r["test"] for r in adding}
    recall, versus = {}, {}  # copy task: recall accuracy, cross-entropy / memoryless
    for cell, c in zip(cells, ("rnn_tanh", "lstm", "gru"), strict=True):
        summary = _summary(args, "copy", f"copy_{cell}")
        recall[c] = summary["test"]["recall_accuracy"]
        versus[c] = summary["test"]["ce_vs_baseline"]
    rnn_fails = mse["rnn_tanh"] >= SOLVED_MSE and recall["rnn_tanh"] < SOLVED_RECALL
    gated_solve = {c: mse[c] < SOLVED_MSE and recall[c] >= SOLVED_RECALL for c in ("lstm", "gru")}
    verdict = "holds" if rnn_fails and all(gated_solve.values()) else "does not fully hold"
    out += [
        "## 1. Long-range memory: tanh RNN against LSTM and GRU",
        "",
        f"**Claim:** a tanh RNN fails the adding and copy tasks at T = 100 while LSTM and GRU "
        f"solve them. **Measured: the claim {verdict}** at this budget.",
        "",
        f"Solved means test MSE below {SOLVED_MSE} on the adding problem (predicting the mean "
        f"scores 0.167) and at least {SOLVED_RECALL:.0%} of the recalled symbols right on the "
        "copy task (the memoryless answer: 12.5 %, cross-entropy 10 ln 8 / 120 = 0.173).",
        "",
        "Adding problem, T = 100 (`configs/adding_*.yaml`, learning rate 3e-3 as `make "
        "demo-adding` uses; test MSE):",
        "",
        *table(adding),
        "",
        *curves("adding"),
        f"Copy task, T = 100 (`configs/copy_*.yaml`; cross-entropy per step, the memoryless "
        f"answer's is 0.173), {args.copy_minutes:g} minutes per run and no early stopping "
        "(`--set train.patience=100000 --set train.epochs=100000`): the loss sits on the "
        "memoryless plateau for a long time before memory pays off, and stopping after five "
        "flat epochs would end every run there:",
        "",
        *table(copy, "test ce"),
        "",
        *curves("copy"),
        "| cell | adding test MSE | copy recall accuracy (test) | copy ce / memoryless "
        "| solved both |",
        "|---|---|---|---|---|",
    ]
    for c in ("rnn_tanh", "lstm", "gru"):
        solved = mse[c] < SOLVED_MSE and recall[c] >= SOLVED_RECALL
        out.append(
            f"| {c} | {mse[c]:.4g} | {recall[c]:.1%} | {versus[c]:.3f} "
            f"| {'yes' if solved else 'no'} |"
        )
    remembering = [c for c in versus if versus[c] < REMEMBERING]  # clearly below the plateau
    out += [
        "",
        "On the copy task, cells whose cross-entropy is clearly below the memoryless "
        f"answer's (ratio < {REMEMBERING}) have begun to use memory: "
        f"{', '.join(remembering) or 'none'}"
        f"; {', '.join(c for c in versus if c not in remembering) or 'none'} "
        "still answer as if they remembered nothing.",
    ]
    out += ["", "Gradient flow on the adding problem: mean ||d loss / d h_t|| over a validation "
            "batch, at initialisation (dashed) and after training (solid):", "",
            "![gradient flow](figures/gradient_flow_adding.png)", ""]  # fmt: skip
    for cell, f in flows.items():
        initial, trained = f["initial"], f["trained"]
        out.append(
            f"- {cell}: from the last step back to the first, ||dL/dh_t|| falls by a factor "
            f"of {_ratio(initial)} at initialisation and {_ratio(trained)} trained; clipping "
            f"fired on {f['clipped_fraction']:.0%} of training steps."
        )
    fall = {c: _fall(f["trained"]) or math.inf for c, f in flows.items()}
    gated = max(fall["lstm"], fall["gru"])
    if fall["rnn"] > 1e6 and gated < 1e3:
        reading = (
            f"Trained, LSTM and GRU carry the gradient back over all {len(flows['rnn']['trained'])}"
            f" steps (it falls by at most {gated:.3g}x), while the tanh RNN's still vanishes "
            f"({fall['rnn']:.3g}x): the vanishing-gradient picture. At initialisation all "
            "three vanish: small initial weights shrink the state's influence at every step, "
            "and an LSTM's forget gate starts near one half, halving its cell state each step, "
            "until training opens the gates."
        )
    else:
        reading = (
            "These runs do not show the textbook picture (a trained tanh RNN's gradient "
            "vanishing while the gated cells' does not); see the numbers above."
        )
    out += ["", reading, ""]
    args.facts["memory"] = {
        "solved_mse": SOLVED_MSE,
        "solved_recall": SOLVED_RECALL,
        "remembering_ratio": REMEMBERING,
        "mean_predictor_mse": 1 / 6,  # the variance of the sum of two U(0, 1) numbers
        "memoryless_recall": 1 / 8,  # guessing one of 8 symbols
        "memoryless_ce": 10 * math.log(8) / 120,  # 10 symbols of ln 8 over T + 20 steps
        "copy_minutes": args.copy_minutes,
        "adding_test_mse": mse,
        "copy_recall": recall,
        "copy_ce_vs_memoryless": versus,
        "gradient_fall": {
            c: {"initial": _fall(f["initial"]), "trained": _fall(f["trained"]),
                "clipped_fraction": f["clipped_fraction"]}
            for c, f in flows.items()
        },
    }  # fmt: skip


def _fall(flow: list[float]) -> float | None:
    """How many times smaller ||dL/dh_t|| is at the first step than at the last (None:
    it reaches 0, infinitely smaller)."""
    return None if flow[0] == 0 else flow[-1] / flow[0]


def _ratio(flow: list[float]) -> str:
    last, first = flow[-1], flow[0]
    return "inf (it reaches 0)" if first == 0 else f"{last / first:.3g}"


def step_cost_section(args: Any, out: list[str]) -> None:
    """Forward+backward time of one layer of the ``STEP`` shape, GRU against LSTM in turns."""
    x = torch.randn(STEP["seq_len"], STEP["batch"], STEP["input_size"])  # (T, B, I)
    layers = {c: Recurrent(c, STEP["input_size"], STEP["hidden_size"]) for c in ("lstm", "gru")}
    times: dict[str, list[float]] = {c: [] for c in layers}
    with LoadSampler(interval_s=1.0) as sampler:
        for _ in range(args.repeats):
            for cell, layer in layers.items():  # interleaved: both see the same machine load
                start = time.perf_counter()
                out_, _ = layer(x)
                out_.sum().backward()
                times[cell].append(time.perf_counter() - start)
    median = {c: statistics.median(t[2:]) for c, t in times.items()}
    load = sampler.record()
    args.load.append(load)
    params = {c: sum(p.numel() for p in layer.parameters()) for c, layer in layers.items()}
    ratio = median["gru"] / median["lstm"]
    verdict = "holds" if ratio < 1 and params["gru"] < params["lstm"] else "does not hold"
    out += [
        "## 2. Cost per step: GRU against LSTM",
        "",
        f"**Claim:** a GRU step is cheaper than an LSTM step at the same hidden size. "
        f"**Measured: the claim {verdict}.**",
        "",
        f"| cell | parameters (input {STEP['input_size']}, hidden {STEP['hidden_size']}) "
        f"| forward+backward, T={STEP['seq_len']} B={STEP['batch']} (median ms) |",
        "|---|---|---|",
        *(f"| {c} | {params[c]:,} | {1000 * median[c]:.1f} |" for c in layers),
        "",
        f"GRU / LSTM time: {ratio:.2f} (median of {args.repeats - 2} interleaved repeats after "
        "2 warm-ups, the default fused implementation; "
        f"{describe_load(load)}); parameters 3/4 by construction (3 gate blocks against 4).",
        "",
    ]
    args.facts["step_cost"] = {
        "median_s": median, "times_s": times, "ratio": ratio, "parameters": params,
        "repeats": args.repeats, "shape": STEP, "load": load,
    }  # fmt: skip


def imdb_section(args: Any, out: list[str]) -> None:
    names = ("imdb_lstm", "imdb_bilstm", "imdb_deep_lstm")
    rows = run_compare(
        "imdb", [CONFIGS / f"{n}.yaml" for n in names], [f"data.path={args.imdb}"], args
    )
    base = rows[0]["best_val"]
    scores = ", ".join(f"{r['label']} {r['best_val']:.2%}" for r in rows)
    gains = ", ".join(f"{r['label']} {100 * (r['best_val'] - base):+.2f} points" for r in rows[1:])
    helps = all(r["best_val"] > base for r in rows[1:])
    args.facts["imdb"] = {
        "gain_points": {r["label"]: r["best_val"] - base for r in rows[1:]},
        "val_fraction": yaml.safe_load((CONFIGS / f"{names[0]}.yaml").read_text())["data"][
            "val_fraction"
        ],
    }
    verdict = "They help here." if helps else "At this budget the claim does not hold."
    out += [
        "## 3. IMDB: bidirectional and 2-layer LSTMs against one layer, equal budget",
        "",
        f"**Claim:** deep and bidirectional stacks help. **Measured:** validation accuracy "
        f"{scores}; against one layer: {gains}. {verdict}",
        "",
        _imdb_splits(rows, args.facts["imdb"]["val_fraction"]),
        "",
        *table(rows),
        "",
        *curves("imdb"),
        *_imdb_converged(names),
    ]


def _imdb_splits(rows: list[dict[str, Any]], val_fraction: float) -> str:
    """What the IMDB table's scores are on: the test column is empty when the data given
    (``aclImdb_train.tar.gz``) holds no test split, filled with the official tarball."""
    validation = f"validation (a seeded {val_fraction:.0%} of train, used for model selection)"
    if all(r["test"] is None for r in rows):
        return f"The data given holds no test split, so only {validation} is reported."
    return f"The verdict is on {validation}; the table adds the official test split."


def _imdb_converged(names: tuple[str, ...]) -> list[str]:
    """The same configs trained to their early stop, from benchmarks/imdb.json."""
    path = ROOT / "benchmarks" / "imdb.json"
    if not path.is_file():
        return []
    bench = json.loads(path.read_text())
    best = {r["config"]: r for r in bench["results"] if r["config"] in names}
    if len(best) != len(names):
        return []
    scores = ", ".join(
        f"{n} {best[n]['best_val_accuracy']:.2%} ({best[n]['train_seconds'] / 60:.0f} min)"
        for n in names
    )
    return [
        f"Without the budget, trained until early stopping (`{bench['command']}`, "
        f"benchmarks/imdb.json): {scores}.",
        "",
    ]


def etth1_section(args: Any, out: list[str]) -> None:
    naive = args.work / "etth1_repeat_last.yaml"
    config = yaml.safe_load((CONFIGS / "etth1_linear.yaml").read_text())
    config["model"] = {"name": "repeat_last"}
    naive.parent.mkdir(parents=True, exist_ok=True)
    naive.write_text(yaml.safe_dump(config))
    configs = [naive, *(CONFIGS / f"etth1_{n}.yaml" for n in ("linear", "gru", "lstm", "segrnn"))]
    rows = run_compare("etth1", configs, [f"data.path={args.etth1}"], args)
    by = {r["label"]: r for r in rows}
    rnn = [by[n] for n in ("etth1_gru", "etth1_lstm", "etth1_segrnn")]
    beat_naive = all(r["test"] < by["etth1_repeat_last"]["test"] for r in rnn)
    beat_linear = [r["label"] for r in rnn if r["test"] < by["etth1_linear"]["test"]]
    args.facts["etth1"] = {"published": PUBLISHED}
    published = ", ".join(f"{k} {v}" for k, v in PUBLISHED.items())
    out += [
        "## 4. ETTh1: recurrent forecasters against naive and linear baselines",
        "",
        "**Claim:** RNN forecasters done right beat the naive forecast and a linear model. "
        f"**Measured:** every RNN beats repeat-last: {'yes' if beat_naive else 'no'}; RNNs "
        f"that beat the linear model: {', '.join(beat_linear) or 'none'}.",
        "",
        "All 7 columns in and out (M), horizon 96, test MSE on standard-scaled values (the "
        f"field's convention; published: {published}). The full grid of horizons and settings "
        "is in benchmarks/RESULTS.md.",
        "",
        *table(rows),
        "",
        *curves("etth1"),
    ]


def _load_note(load: dict[str, Any], unknown: list[str]) -> list[str]:
    """Say whether other work shared the cores: a wall-time budget buys less under load."""
    missing = (
        f" (not recorded for the {', '.join(unknown)} runs, trained by an earlier version "
        "of this script)"
        if unknown
        else ""
    )
    if not load["samples"]:
        return [f"The machine's load was not recorded{missing}.", ""]
    numbers = (
        f"1-minute load average sampled while runs trained and timed: at most {load['max']:.1f}, "
        f"mean {load['mean']:.1f}, on {load['cores']} cores{missing}"
    )
    if load["idle"]:
        return [f"The machine was otherwise idle ({numbers}).", ""]
    return [
        f"**Warning:** measured under load ({numbers}): other work shared the machine, so "
        "budget-limited runs trained for less than their budget, their times are inflated, "
        "and they are not comparable with each other.",
        "",
    ]


def _summary(args: Any, section: str, config: str) -> dict[str, Any]:
    """The summary.json of a comparison's seed-0 run."""
    return json.loads((run_folder(args.work / section, config) / "summary.json").read_text())


def tagging_section(args: Any, out: list[str]) -> None:
    names = ("tagging_lstm", "tagging_bilstm")
    rows = run_compare("tagging", [CONFIGS / f"{n}.yaml" for n in names], [], args)
    test = {n: _summary(args, "tagging", n)["test"] for n in names}
    uni, bi = (test[n] for n in names)
    k = yaml.safe_load((CONFIGS / "tagging_lstm.yaml").read_text())["data"]["num_tags"]
    ceiling = 0.5 + 0.5 / k
    gain = bi["accuracy"] - uni["accuracy"]
    verdict = "holds" if gain > 0.01 else "does not hold"
    args.facts["tagging"] = {"test": test, "gain": gain, "ceiling": ceiling, "chance": 1 / k}
    out += [
        "## 5. Tagging (many-to-many, same length): what a bidirectional stack buys",
        "",
        "**Claim:** a tagger that reads the words after each word (bidirectional) beats a "
        f"left-to-right one where the tag depends on right context. **Measured: the claim "
        f"{verdict}:** test accuracy {uni['accuracy']:.1%} left-to-right, "
        f"{bi['accuracy']:.1%} bidirectional ({100 * gain:+.1f} points); on the ambiguous words, "
        f"tagged by both neighbours, {uni['ambiguous_accuracy']:.1%} against "
        f"{bi['ambiguous_accuracy']:.1%} (chance: {1 / k:.0%}). Whole sentences right: "
        f"{uni['sentence_accuracy']:.1%} against {bi['sentence_accuracy']:.1%}.",
        "",
        f"The generated task (`rnnzoo/data/tagging.py`, K = {k} tags) caps a left-to-right "
        f"tagger near {ceiling:.1%}: on the ambiguous half of the words it cannot know the "
        "next word. Both taggers have two layers: an ambiguous word's tag is its neighbours' "
        "classes added mod K, which one linear layer over the two directions side by side "
        "cannot compute (with one layer, runs by hand before commit c2edc88 stayed at the "
        "left-to-right ceiling).",
        "",
        *table(rows),
        "",
        *curves("tagging"),
    ]


def seq2seq_section(args: Any, out: list[str]) -> None:
    names = ("numbers_gru", "numbers_gru_attention")
    direction = ["data.direction=digits_to_words"]  # long outputs: where attention matters
    rows = run_compare(
        "seq2seq", [CONFIGS / f"{n}.yaml" for n in names], direction, args, args.seq2seq_minutes
    )
    greedy = {n: _summary(args, "seq2seq", n)["test"] for n in names}
    beam = {n: evaluate(run_folder(args.work / "seq2seq", n), "test", beam_width=4) for n in names}
    plain, attention = (greedy[n]["exact_match"] for n in names)
    args.facts["seq2seq"] = {"minutes": args.seq2seq_minutes, "greedy": greedy, "beam4": beam}
    verdict = "holds" if attention > plain else "does not hold"
    out += [
        "## 6. Sequence-to-sequence: attention and beam search",
        "",
        "**Claim:** an encoder-decoder with attention beats one that must squeeze the input "
        f"into its final state, on outputs longer than the input. **Measured: the claim "
        f"{verdict}:** test exact match {plain:.1%} without attention, {attention:.1%} with "
        f"Luong attention, both GRUs at {args.seq2seq_minutes:g} minutes.",
        "",
        "The task: digits to English words (`configs/numbers_*.yaml` with "
        '`--set data.direction=digits_to_words`: "342007" -> "three hundred forty-two '
        'thousand seven", up to 64 characters out of 6 in), character by character; the '
        "test numbers never occur in training.",
        "",
        "| config | test exact match, greedy | beam 4 | token accuracy, greedy | beam 4 |",
        "|---|---|---|---|---|",
        *(
            f"| {n} | {greedy[n]['exact_match']:.1%} | {beam[n]['exact_match']:.1%} "
            f"| {greedy[n]['token_accuracy']:.2%} | {beam[n]['token_accuracy']:.2%} |"
            for n in names
        ),
        "",
        "Beam 4: `rnnzoo eval RUN --split test --beam-width 4` on the same checkpoints.",
        "",
        *(
            f"{r['label']} stopped before its budget: its validation exact match did not "
            "improve for `train.patience` epochs.\n"
            for r in rows
            if r["seconds"] < 0.9 * 60 * args.seq2seq_minutes
        ),
        *table(rows),
        "",
        *curves("seq2seq"),
    ]


@torch.no_grad()
def generator_section(args: Any, out: list[str]) -> None:
    name = "imdb_generator"
    rows = run_compare(
        "generator", [CONFIGS / f"{name}.yaml"], [f"data.path={args.imdb}"], args,
        args.generator_minutes,
    )  # fmt: skip
    run = run_folder(args.work / "generator", name)
    _, task, model = load_run(run)
    model.eval()
    train, val = task.dataset("train"), task.dataset("val")
    vocab = task.io.output_size
    # The unigram baseline: character frequencies of the training targets (add-one).
    counts = torch.ones(vocab, dtype=torch.float64)
    for batch in _batches(train):
        counts += torch.bincount(batch.targets[batch.targets != 0], minlength=vocab)
    counts[0] = 0  # padding is never a target
    log_p = (counts / counts.sum()).log()
    nll = {"unigram": 0.0, "model": 0.0, "swapped": 0.0}
    chars = 0
    for batch in _batches(val):
        valid = batch.targets != 0
        chars += int(valid.sum())
        nll["unigram"] -= float(log_p[batch.targets[valid]].sum())
        swapped = batch.inputs.clone()
        swapped[:, 0] = 1 - swapped[:, 0]  # the other sentiment
        for key, inputs in (("model", batch.inputs), ("swapped", swapped)):
            ce, _ = task.metrics(model(inputs, batch.lengths), batch)["ce"]
            nll[key] += float(ce)
    ce = {k: v / chars for k, v in nll.items()}
    samples = {
        label: task.predict(
            model, PredictRequest(run, label=label, max_len=200, temperature=0.8, seed=0)
        )[1]
        for label in ("pos", "neg")
    }
    gap = ce["swapped"] - ce["model"]
    args.facts["generator"] = {
        "minutes": args.generator_minutes,
        "ce_per_char": ce,
        "perplexity": {k: math.exp(v) for k, v in ce.items()},
        "bits_per_char": {k: v / math.log(2) for k, v in ce.items()},
        "label_swap_gap": gap,
        "samples": samples,
    }
    reading = (
        "at this budget the model writes reviews, hardly positive or negative ones."
        if gap < 0.005
        else "the model writes differently for each sentiment."
    )
    out += [
        "## 7. One-to-many: review openings conditioned on sentiment",
        "",
        f"`configs/imdb_generator.yaml`, {args.generator_minutes:g} minutes: a character-level "
        "LSTM whose initial state is a learned vector per label writes the first 200 "
        f"characters of a review. **Validation perplexity {math.exp(ce['model']):.2f}** "
        f"({ce['model'] / math.log(2):.2f} bits per character), against "
        f"{math.exp(ce['unigram']):.1f} ({ce['unigram'] / math.log(2):.2f} bits) for "
        "character frequencies counted on train.",
        "",
        "Does the label matter? Scoring each validation opening under the other sentiment "
        f"changes the cross-entropy by {gap:+.4f} nats per character: {reading}",
        "",
        "Samples (`rnnzoo predict RUN --label pos --max-len 200 --temperature 0.8 --seed 0`, "
        "and `--label neg`):",
        "",
        "```text",  # generated text: its digits are no measurements
        *(f"{label}: {text!r}" for label, text in samples.items()),
        "```",
        "",
        *table(rows),
        "",
    ]


def zoo_section(args: Any, out: list[str]) -> None:
    """The zoo's variants beside the plain cells, reusing the plain runs above."""
    plain = run_folder(args.work / "imdb", "imdb_lstm")
    imdb = run_compare(
        "zoo_imdb", [plain, *(CONFIGS / f"imdb_{n}.yaml" for n in ("layernorm_lstm", "awd_lstm"))],
        [f"data.path={args.imdb}"], args,
    )  # fmt: skip
    plain_etth1 = [run_folder(args.work / "etth1", f"etth1_{n}") for n in ("gru", "lstm")]
    variants = [CONFIGS / f"etth1_{n}.yaml" for n in ("layernorm_gru", "indrnn", "mingru")]
    etth1 = run_compare("zoo_etth1", [*plain_etth1, *variants], [f"data.path={args.etth1}"], args)
    lstms = [CONFIGS / f"etth1_{n}.yaml" for n in ("peephole_lstm", "cifg_lstm", "minlstm")]
    etth1_lstms = run_compare(
        "zoo_etth1_lstm", [plain_etth1[1], *lstms], [f"data.path={args.etth1}"], args
    )

    def best(rows: list[dict[str, Any]], key: str, lower: bool) -> str:
        pick = (min if lower else max)(rows, key=lambda r: r[key])
        return str(pick["label"])

    out += [
        "## 8. The zoo: variants beside LSTM and GRU, equal budget",
        "",
        "IMDB (validation accuracy; `imdb_awd_lstm`: weight-drop 0.3 on the recurrent "
        "weights, locked input dropout 0.2, word dropout 0.1) and ETTh1 (M, horizon 96, "
        f"test MSE), {args.budget_minutes:g} minutes per run; the plain runs are sections 3 "
        f"and 4's. Best here: {best(imdb, 'best_val', lower=False)} on IMDB, "
        f"{best(etth1, 'best_val', lower=True)} on ETTh1 (both by validation).",
        "",
        *table(imdb),
        "",
        *curves("zoo_imdb"),
        *table(etth1),
        "",
        *curves("zoo_etth1"),
        f"The LSTM's variants on ETTh1 (best by validation: "
        f"{best(etth1_lstms, 'best_val', lower=True)}):",
        "",
        *table(etth1_lstms),
        "",
        *curves("zoo_etth1_lstm"),
    ]


def ud_section(args: Any, out: list[str]) -> None:
    """Section 5's claim on real text: UD English EWT, selected on its dev file."""
    names = ("ud_pos_lstm", "ud_pos_bilstm")
    sets = [f"data.path={args.ud_train}", f"data.val_path={args.ud_dev}"]
    rows = run_compare(
        "ud_pos", [CONFIGS / f"{n}.yaml" for n in names], sets, args, args.ud_minutes
    )
    dev = {n: _summary(args, "ud_pos", n)["val"] for n in names}
    uni, bi = (dev[n] for n in names)
    gain = bi["accuracy"] - uni["accuracy"]
    verdict = "holds" if gain > 0.005 else "does not hold"
    args.facts["ud_pos"] = {"dev": dev, "gain": gain, "minutes": args.ud_minutes}
    out += [
        "## 9. Tagging real text: bidirectional against left-to-right on UD English EWT",
        "",
        "**Claim:** on real sentences too, reading the words after each word helps to tag "
        f"it. **Measured: the claim {verdict}:** dev UPOS accuracy {uni['accuracy']:.2%} "
        f"left-to-right, {bi['accuracy']:.2%} bidirectional ({100 * gain:+.2f} points); on "
        f"words unseen in training {uni['unseen_accuracy']:.2%} against "
        f"{bi['unseen_accuracy']:.2%}; whole sentences {uni['sentence_accuracy']:.1%} against "
        f"{bi['sentence_accuracy']:.1%}. Both taggers read each word's characters and differ "
        f"only in direction; {args.ud_minutes:g} minutes each, best epoch selected on dev (the "
        "EWT test file is kept back, so the dev score is also the one selected on).",
        "",
        *table(rows, test_label="test (kept back)"),
        "",
        *curves("ud_pos"),
    ]


def _batches(data: Any, size: int = 256) -> Any:
    for start in range(0, len(data), size):
        yield data.__getitems__(list(range(start, min(start + size, len(data)))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imdb", type=Path, help="aclImdb_v1.tar.gz (or a train-only copy)")
    parser.add_argument("--etth1", type=Path, help="ETTh1.csv")
    parser.add_argument("--ud-train", type=Path, help="UD English EWT en_ewt-ud-train.conllu")
    parser.add_argument("--ud-dev", type=Path, help="UD English EWT en_ewt-ud-dev.conllu")
    parser.add_argument(
        "--ud-minutes", type=float, default=5.0, help="wall time per EWT tagging run"
    )
    parser.add_argument("--budget-minutes", type=float, default=2.0, help="wall time per run")
    parser.add_argument(
        "--copy-minutes", type=float, default=5.0, help="wall time per copy-task run"
    )
    parser.add_argument(
        "--seq2seq-minutes", type=float, default=4.0, help="wall time per seq2seq run"
    )
    parser.add_argument(
        "--generator-minutes", type=float, default=5.0, help="wall time of the generator run"
    )
    parser.add_argument("--repeats", type=int, default=12, help="timing repeats (section 2)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "report")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "REPORT.md")
    args = parser.parse_args()
    tune_cpu_allocator()
    args.figures = args.out.parent / "figures"
    args.figures.mkdir(parents=True, exist_ok=True)
    args.load = []  # load records of each comparison's training and of section 2's timing
    args.train_seconds = 0.0  # wall time of every training run in the report
    args.unknown_load = []  # comparisons whose load was not recorded
    args.facts = {}  # every number the report shows, for docs/report.json
    started = time.perf_counter()
    body: list[str] = []
    memory_section(args, body)
    step_cost_section(args, body)
    if args.imdb is not None:
        imdb_section(args, body)
    if args.etth1 is not None:
        etth1_section(args, body)
    tagging_section(args, body)
    if args.ud_train is not None and args.ud_dev is not None:
        ud_section(args, body)
    seq2seq_section(args, body)
    if args.imdb is not None:
        generator_section(args, body)
    if args.imdb is not None and args.etth1 is not None:
        zoo_section(args, body)
    seconds = time.perf_counter() - started
    minutes = seconds / 60
    load = merge_load(args.load)
    evidence = args.out.with_name("report.json")
    head = [
        "# What the measurements say",
        "",
        f"Generated by `python scripts/make_report.py {' '.join(sys.argv[1:])}` on "
        f"{dt.date.today()} ({platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, {'CUDA' if torch.cuda.is_available() else 'CPU'}). Budget: "
        f"{args.budget_minutes:g} minutes of wall time per training run "
        f"({args.copy_minutes:g} on the copy task, {args.seq2seq_minutes:g} on "
        f"sequence-to-sequence, {args.generator_minutes:g} for the generator; `rnnzoo compare "
        "--budget-minutes`), one "
        "seed (0), best checkpoint selected on "
        f"validation; {args.train_seconds / 60:.0f} minutes of training in all (this "
        f"invocation: {minutes:.0f} minutes; finished runs are reused). Small budgets: each "
        "verdict is about "
        "these runs, not a general law.",
        "",
        f"Every number below is in `docs/{evidence.name}`, which the same command wrote.",
        "",
        *_load_note(load, args.unknown_load),
    ]
    report = {
        "command": f"python scripts/make_report.py {' '.join(sys.argv[1:])}",
        "date": str(dt.date.today()),
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": "CUDA" if torch.cuda.is_available() else "CPU",
        },
        "budget_minutes": args.budget_minutes,
        "train_seconds": args.train_seconds,
        "invocation_seconds": seconds,
        "load": load,
        "load_not_recorded": args.unknown_load,
        "sections": args.facts,
    }
    evidence.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    args.out.write_text("\n".join(head + body))
    print(f"wrote {args.out} and {evidence}")


def _jsonable(value: Any) -> Any:
    """Tensors and paths as JSON (a metric may come back as a 0-d tensor)."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    main()
