"""task: text_classification on tables and class folders, from reader to predict.

Fixtures are tiny tables the tests write: three classes with words of their own, so a
small model learns them in a couple of epochs.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from rnnzoo.data.batches import Batch
from rnnzoo.data.tables import read_examples, stratified_split
from rnnzoo.distributed import World
from rnnzoo.errors import DataError
from rnnzoo.evaluation import Totals
from rnnzoo.tasks import TASKS
from rnnzoo.tasks.text import macro_f1
from tests.test_bad_input import assert_user_error, invoke, unchanged

WORDS = {
    "sport": "goal match team win score",
    "tech": "code chip cpu software data",
    "food": "pizza taste salt bread soup",
}


def rows(n: int, weights: tuple[int, ...] = (1, 1, 1), seed: int = 0) -> list[dict]:
    """``n`` rows id/title/body/label, classes drawn in the proportions ``weights``."""
    rng = random.Random(seed)
    names = [name for name, w in zip(WORDS, weights, strict=True) for _ in range(w)]
    out = []
    for i in range(n):
        label = names[i % len(names)]
        words = WORDS[label].split()
        body = " ".join(rng.choices([*words, "the", "a"], k=6))
        out.append({"id": i, "title": rng.choice(words), "body": body, "label": label})
    return out


def write_csv(path: Path, data: list[dict]) -> Path:
    pd.DataFrame(data).to_csv(path, index=False)
    return path


def config(path: Path, runs: Path, **data: object) -> dict:
    return {
        "task": "text_classification",
        "data": {"path": str(path), "text_column": "body", "label_column": "label",
                 "vocab_size": 40, "min_frequency": 1, "max_len": 12, **data},
        "model": {"name": "sequence_classifier", "cell": "gru", "embedding_dim": 8,
                  "hidden_size": 8, "bidirectional": True, "pooling": "concat"},
        "train": {"epochs": 3, "batch_size": 8, "lr": 0.02, "device": "cpu"},
        "output": {"tensorboard": False, "dir": str(runs)},
    }  # fmt: skip


def write_config(root: Path, table: Path, **data: object) -> Path:
    path = root / "tc.yaml"
    path.write_text(yaml.safe_dump(config(table, root / "runs", **data)))
    return path


def task_for(table: Path, **data: object):
    cfg = config(table, table.parent / "runs", **data)
    return TASKS.get("text_classification")(TASKS.get("text_classification").Data(**cfg["data"]))


# -- readers ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_table_format_reads_the_same_examples(tmp_path: Path, suffix: str):
    data = rows(9)
    data[0]["label"] = 7  # an integer label among strings is read as its text
    frame = pd.DataFrame(data)
    path = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        frame["label"] = frame["label"].astype(str)
        frame.to_parquet(path)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    got = read_examples(path, ["title", "body"], "label", separator=" | ")
    assert got.texts == [f"{r['title']} | {r['body']}" for r in rows(9)]
    assert got.labels == ["7", *[r["label"] for r in rows(9)[1:]]]


def test_a_folder_is_one_subfolder_per_class_in_sorted_order(tmp_path: Path):
    for label, name, text in [("b", "2.txt", "two"), ("b", "1.txt", "one"), ("a", "x.txt", "ex")]:
        (tmp_path / label).mkdir(exist_ok=True)
        (tmp_path / label / name).write_text(text + "\n")
    (tmp_path / "b" / ".hidden.txt").write_text("never read")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("never read")
    got = read_examples(tmp_path, ["text"], "label")
    assert (got.texts, got.labels) == (["ex", "one", "two"], ["a", "b", "b"])


def test_bad_bytes_are_replaced_and_counted(tmp_path: Path):
    path = tmp_path / "t.csv"
    # two invalid sequences, and a U+FFFD that was in the file as valid UTF-8
    path.write_bytes(b"text,label\ncaf\xe9 \xff ok,a\n\xef\xbf\xbd real,b\n")
    got = read_examples(path, ["text"], "label")
    assert got.replaced == 2
    assert got.texts == ["caf\ufffd \ufffd ok", "\ufffd real"]


def test_empty_rows_are_an_error_or_dropped_and_counted(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nfine,a\n,b\nalso fine,\nok,a\n")
    with pytest.raises(DataError, match=r"t.csv, row 2 .*the text is empty"):
        read_examples(path, ["text"], "label")
    got = read_examples(path, ["text"], "label", drop_empty=True)
    assert (got.texts, got.dropped) == (["fine", "ok"], 2)


# -- the split --------------------------------------------------------------------------


def test_the_split_is_stratified_seeded_and_covers_every_class():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 3 + ["d"] * 2
    val, test, train = stratified_split(labels, [0.1, 0.2], seed=3)
    assert sorted(val + test + train) == list(range(len(labels)))
    for part in (val, test, train):
        assert {labels[i] for i in part} >= {"a", "b", "c"}  # c has just enough
    assert [labels[i] for i in val].count("a") == 6 and [labels[i] for i in test].count("b") == 6
    assert all(labels[i] != "d" for i in val + test)  # too few: train keeps them
    assert stratified_split(labels, [0.1, 0.2], seed=3) == [val, test, train]
    assert stratified_split(labels, [0.1, 0.2], seed=4) != [val, test, train]


def test_a_zero_fraction_carves_nothing_and_the_run_has_no_test_split(tmp_path: Path):
    labels = ["a"] * 20 + ["b"] * 10
    val, test, train = stratified_split(labels, [0.2, 0.0], seed=0)
    assert test == [] and len(val) == 6 and len(train) == 24
    task = task_for(write_csv(tmp_path / "t.csv", rows(30)), test_fraction=0)
    task.prepare()
    assert task.has_split("val") and not task.has_split("test")


# -- metrics and loss -------------------------------------------------------------------


def test_macro_f1_adds_up_across_uneven_batches(tmp_path: Path):
    task = task_for(write_csv(tmp_path / "t.csv", rows(9)))
    true = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 0, 1])
    pred = torch.tensor([0, 1, 0, 1, 0, 2, 2, 0, 2, 0, 1])
    totals = Totals(torch.device("cpu"))
    for lo, hi in [(0, 2), (2, 7), (7, 11)]:  # batches of 2, 5 and 4
        batch = Batch(
            torch.ones(hi - lo, 3, dtype=torch.long), true[lo:hi], torch.full((hi - lo,), 3)
        )
        for name, (s, n) in task.metrics(F.one_hot(pred[lo:hi], 3).float(), batch).items():
            totals.add(name, s, n)
    got = task.finish(totals.means(World()))
    # by hand: class 0 tp 3 fp 2 fn 1, class 1 tp 2 fp 1 fn 1, class 2 tp 3 fp 0 fn 1
    f1 = [2 * 3 / (6 + 3), 2 * 2 / (4 + 2), 2 * 3 / (6 + 1)]
    assert got["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert got["accuracy"] == pytest.approx(8 / 11)
    assert not any(k.startswith("f1/") for k in got)  # the counts are internal
    # scikit-learn's formula: the mean over classes of 2PR / (P + R)
    precision, recall = [3 / 5, 2 / 3, 3 / 3], [3 / 4, 2 / 3, 3 / 4]
    harmonic = [2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)]
    assert got["macro_f1"] == pytest.approx(sum(harmonic) / 3)


def test_macro_f1_leaves_out_classes_never_true_nor_predicted():
    tp, fp, fn = torch.tensor([2.0, 0, 1]), torch.tensor([0.0, 0, 1]), torch.tensor([0.0, 0, 0])
    assert macro_f1(tp, fp, fn) == pytest.approx((1.0 + 2 / 3) / 2)


def test_balanced_class_weights_weigh_the_loss_as_the_formula_says(tmp_path: Path):
    table = write_csv(tmp_path / "t.csv", rows(60, weights=(4, 1, 1)))
    task = task_for(table, class_weights="balanced")
    task.prepare()
    counts = torch.tensor(task.class_counts, dtype=torch.float32)
    assert task.classes == ["food", "sport", "tech"] and counts.tolist() == [8, 32, 8]
    expected_w = counts.sum() / (3 * counts)  # n / (k * count_c)
    torch.testing.assert_close(task.class_weights, expected_w)
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2, 2, 1, 2])
    batch = Batch(torch.ones(5, 2, dtype=torch.long), y, torch.full((5,), 2))
    per_text = F.cross_entropy(logits, y, reduction="none")
    w = expected_w[y]
    assert float(task.loss(logits, batch)) == pytest.approx(float((w * per_text).sum() / w.sum()))
    assert float(task.loss_weight(batch)) == pytest.approx(float(w.sum()))
    plain = task_for(table)
    plain.prepare()
    assert float(plain.loss(logits, batch)) == pytest.approx(float(per_text.mean()))


def test_imbalance_selects_on_macro_f1_and_says_so(tmp_path: Path):
    task = task_for(write_csv(tmp_path / "t.csv", rows(60, weights=(4, 1, 1))))
    task.prepare()
    assert task.metric == "macro_f1"
    assert any("imbalanced 4.0:1" in note and "macro_f1" in note for note in task.notes)
    even = task_for(write_csv(tmp_path / "e.csv", rows(60)))
    even.prepare()
    assert even.metric == "accuracy"
    assert not any("imbalanced" in note for note in even.notes)


# -- end to end, through the CLI --------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished run on a 3-class table with string labels; tests take copies."""
    root = tmp_path_factory.mktemp("textcls")
    table = write_csv(root / "reviews.csv", rows(90))
    result = invoke("train", "-c", write_config(root, table), "--set", "output.name=run")
    assert result.exit_code == 0, result.output
    assert "3 classes; texts: train 72, val 9, test 9" in result.output
    return root / "runs" / "run"


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def test_train_writes_both_metrics_and_keeps_the_class_names(trained: Path):
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert {"val_accuracy", "val_macro_f1", "train_macro_f1"} <= set(records[-1])
    summary = json.loads((trained / "summary.json").read_text())
    assert {"accuracy", "macro_f1"} <= set(summary["val"]) and "best_accuracy" in summary
    state = json.loads((trained / "classes.json").read_text())
    assert state == {"classes": ["food", "sport", "tech"], "train_counts": [24, 24, 24]}
    assert summary["val"]["accuracy"] > 0.5  # three separable classes: it learned
    test = json.loads((trained / "eval_test.json").read_text())  # written at the end
    assert set(test["per_class"]) == {"food", "sport", "tech"}
    assert (trained / "confusion_test.png").is_file()


def test_eval_reports_each_class_and_the_confusion_matrix(run: Path):
    result = invoke("eval", run, "--split", "val")
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval_val.json").read_text())
    assert {"accuracy", "macro_f1"} <= set(report)
    assert set(report["per_class"]) == {"food", "sport", "tech"}
    matrix = report["confusion_matrix"]["matrix"]
    assert report["confusion_matrix"]["labels"] == ["food", "sport", "tech"]
    assert [sum(row) for row in matrix] == [c["support"] for c in report["per_class"].values()]
    assert sum(matrix[i][i] for i in range(3)) / 9 == pytest.approx(report["accuracy"])
    f1 = [c["f1"] for c in report["per_class"].values()]
    assert report["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert (run / "confusion_val.png").stat().st_size > 1000


def test_predict_a_text_and_the_top_k(run: Path):
    result = invoke("predict", run, "pizza soup bread taste")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("food (p=")
    result = invoke("predict", run, "goal team", "--top-k", "3")
    assert result.exit_code == 0, result.output
    names = [part.split(" (p=")[0] for part in result.output.strip().split(", ")]
    probs = [float(part.split("(p=")[1].rstrip(")")) for part in result.output.strip().split(", ")]
    assert sorted(names) == ["food", "sport", "tech"] and names[0] == "sport"
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=2e-3)


def test_predict_a_text_file_one_answer_per_line(run: Path, tmp_path: Path):
    (tmp_path / "in.txt").write_text("code chip data\n\ngoal win\n")
    result = invoke("predict", run, "--file", tmp_path / "in.txt")
    assert result.exit_code == 0, result.output
    assert [line.split(" ")[0] for line in result.output.splitlines()] == ["tech", "sport"]


@pytest.mark.parametrize("out_name", ["pred.csv", "pred.jsonl", "pred.parquet"])
def test_predict_a_table_adds_the_label_and_every_probability(
    run: Path, tmp_path: Path, out_name: str
):
    table = write_csv(tmp_path / "new.csv", rows(7, seed=5))
    out = tmp_path / out_name
    result = invoke("predict", run, "--file", table, "--out", out, "--text-column", "title")
    assert result.exit_code == 0, result.output
    got = {".csv": pd.read_csv, ".jsonl": lambda p: pd.read_json(p, lines=True),
           ".parquet": pd.read_parquet}[out.suffix](out)  # fmt: skip
    assert list(got.columns) == [
        "id",
        "title",
        "body",
        "label",
        "predicted_label",
        "p_food",
        "p_sport",
        "p_tech",
    ]
    assert got["title"].tolist() == [r["title"] for r in rows(7, seed=5)]
    probs = got[["p_food", "p_sport", "p_tech"]].to_numpy()
    assert probs.sum(axis=1) == pytest.approx([1.0] * 7, abs=1e-5)
    best = [["food", "sport", "tech"][i] for i in probs.argmax(axis=1)]
    assert got["predicted_label"].tolist() == best
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed


# -- mistakes, through the CLI: exit 2, one line, nothing written -------------------------


def test_a_missing_column_lists_the_columns_the_file_has(tmp_path: Path):
    table = write_csv(tmp_path / "t.csv", rows(30))
    path = write_config(tmp_path, table, text_column="txt")
    with unchanged(tmp_path):
        assert_user_error(invoke("train", "-c", path), "t.csv", "'txt'", "id, title, body, label")


def test_an_empty_row_names_file_and_row(tmp_path: Path):
    data = rows(30)
    data[4]["body"] = ""
    path = write_config(tmp_path, write_csv(tmp_path / "t.csv", data))
    with unchanged(tmp_path):
        assert_user_error(invoke("train", "-c", path), "t.csv", "row 5")


def test_drop_empty_leaves_empty_rows_out_and_says_how_many(tmp_path: Path):
    data = rows(30)
    data[4]["body"] = data[7]["label"] = ""
    path = write_config(tmp_path, write_csv(tmp_path / "t.csv", data), drop_empty=True)
    result = invoke("train", "-c", path, "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    assert "2 row(s) with an empty text or label left out" in result.output


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_label_unseen_in_train_is_named_before_training(tmp_path: Path, split: str):
    table = write_csv(tmp_path / "t.csv", rows(30))
    other = rows(6, seed=1)
    other[2]["label"] = "travel"
    other_path = write_csv(tmp_path / f"{split}.csv", other)
    path = write_config(tmp_path, table, **{f"{split}_path": str(other_path)})
    with unchanged(tmp_path):  # test too: found before the run folder is written
        assert_user_error(invoke("train", "-c", path), f"{split}.csv", "'travel'")


def test_the_shipped_config_says_to_set_the_path(tmp_path: Path):
    shipped = Path(__file__).resolve().parents[1] / "configs" / "text_classifier.yaml"
    with unchanged(tmp_path):
        result = invoke("train", "-c", shipped, "--set", f"output.dir={tmp_path}")
        assert_user_error(result, "data.path is not set")


def test_bad_bytes_are_said_once_when_training(tmp_path: Path):
    table = write_csv(tmp_path / "t.csv", rows(30))
    table.write_bytes(table.read_bytes().replace(b"goal", b"go\xffal", 1))
    result = invoke("train", "-c", write_config(tmp_path, table), "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    assert result.output.count("1 invalid UTF-8 byte sequence(s) replaced") == 1


@pytest.mark.parametrize(
    "args, names",
    [
        (["x", "--top-k", "4"], ["--top-k 4", "3 classes"]),
        (["--file", "{table}", "--out", "{out}", "--text-column", "txt"], ["'txt'", "columns"]),
        (["--file", "{table}"], ["--out"]),
        (["--file", "{table}", "--out", "{table}"], ["input"]),
        (["--file", "{table}", "--out", "{out}", "--top-k", "2"], ["--top-k"]),
        (["x", "--out", "{out}"], ["--out"]),
        (["x", "--text-column", "body"], ["--text-column"]),
    ],
)
def test_predict_refuses_bad_options_up_front(run: Path, tmp_path: Path, args, names):
    table = write_csv(tmp_path / "new.csv", rows(5))
    out = tmp_path / "out.csv"
    args = [a.format(table=table, out=out) for a in args]
    with unchanged(tmp_path):
        assert_user_error(invoke("predict", run, *args), *names)


def test_parquet_without_pyarrow_says_what_to_install(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    table = tmp_path / "new.parquet"
    pd.DataFrame(rows(5)).to_parquet(table)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    with unchanged(tmp_path):
        result = invoke("predict", run, "--file", table, "--out", tmp_path / "p.csv")
        assert_user_error(result, "pip install pyarrow")


def test_an_unknown_table_format_is_named(tmp_path: Path):
    table = tmp_path / "t.xlsx"
    table.write_bytes(b"PK\x03\x04")
    path = write_config(tmp_path, table)
    with unchanged(tmp_path):
        assert_user_error(invoke("train", "-c", path), "t.xlsx", "'.xlsx'", ".csv")
