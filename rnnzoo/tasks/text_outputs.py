"""What a text classifier gives back: class probabilities, a predicted table, a plot."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from rnnzoo import run_folder
from rnnzoo.errors import ConfigError

if TYPE_CHECKING:
    from rnnzoo.tasks.base import PredictRequest
    from rnnzoo.tasks.text import TextClassification

CHUNK = 256  # texts per forward pass: a large table never becomes one huge batch


@torch.no_grad()
def probabilities(task: TextClassification, model: nn.Module, texts: list[str]) -> Tensor:
    """(N, K) class probabilities of ``texts``, in ``task.classes`` order; row i is
    text i's, although the texts are batched by length (little padding)."""
    from rnnzoo.data.sampling import sorted_batches

    model.eval()
    data = task.text_batches(texts)
    probs = torch.zeros(len(texts), len(task.classes))
    for indices in sorted_batches(data.lengths, CHUNK):
        batch = data.__getitems__(indices)
        probs[indices] = torch.softmax(model(batch.inputs, batch.lengths).float(), dim=-1)
    return probs


def predict_table(task: TextClassification, model: nn.Module, request: PredictRequest) -> list[str]:
    """``predict --file TABLE --out OUT``: the input's rows and columns, plus
    ``predicted_label`` and one ``p_<class>`` column per class, written atomically in
    the format of OUT's extension (or, if it has none of them, the input's)."""
    from rnnzoo.data.tables import (
        TABLES,
        check_columns,
        joined_texts,
        read_table,
        require_pyarrow,
    )

    source = request.file
    assert source is not None
    if request.out is None:
        raise ConfigError(
            f"--file {source} is a table: give --out FILE for the table of predictions"
        )
    if request.out.resolve() == source.resolve():
        raise ConfigError(f"--out {request.out} is the input table; give another file")
    if request.top_k is not None:
        raise ConfigError("--top-k applies to printed answers; a table gets every class's p_")
    columns = [request.text_column] if request.text_column else list(task.text_columns)
    fmt = request.out.suffix.lower() if request.out.suffix.lower() in TABLES else None
    frame, _ = read_table(source, "--file")
    check_columns(frame, columns, source, "--text-column")
    if fmt == ".parquet" or (fmt is None and source.suffix.lower() == ".parquet"):
        require_pyarrow(request.out, "writing")
    texts = joined_texts(frame, columns, task.text_separator)  # as training read them
    probs = probabilities(task, model, texts) if texts else torch.zeros(0, len(task.classes))
    labels: list[Any] = [task.classes[i] for i in probs.argmax(dim=-1).tolist()]
    if all(c.lstrip("+-").isdigit() for c in task.classes):  # integer labels stay integers
        labels = [int(label) for label in labels]
    frame["predicted_label"] = labels
    for i, name in enumerate(task.classes):
        frame[f"p_{name}"] = probs[:, i].numpy()
    _write_table(frame, request.out, fmt or source.suffix.lower())
    return [f"wrote {len(frame)} predictions to {request.out}"]


def _write_table(frame: Any, path: Path, fmt: str) -> None:
    """``frame`` to ``path`` as ``fmt``, through a temporary file renamed at the end."""
    from rnnzoo.errors import os_error
    from rnnzoo.run_folder import atomic_writer

    if fmt == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    elif fmt == ".jsonl":
        data = frame.to_json(orient="records", lines=True, force_ascii=False).encode()
    else:
        data = frame.to_csv(index=False, sep="\t" if fmt == ".tsv" else ",").encode()
    try:
        with atomic_writer(path) as f:
            f.write(data)
    except OSError as err:
        raise os_error(err, "write") from None


def plot_confusion(matrix: Tensor, classes: list[str], title: str) -> bytes:
    """A confusion matrix as a PNG: counts written in, cells shaded by row share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    share = matrix.double() / matrix.sum(1, keepdim=True).clamp(min=1)
    size = max(4.0, 0.6 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if k <= 30:  # beyond that the numbers are unreadable anyway
        for i in range(k):
            for j in range(k):
                color = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=color)
    fig.tight_layout()
    return run_folder.png_bytes(fig)
