"""Text classification, the part every text task shares: tokenizer, batches, metrics.

A subclass says only where its labelled texts come from (``examples``) and which classes
there are (``classes``); this class fits the tokenizer on the training texts, encodes
and batches them, scores accuracy and macro-F1, reports per-class scores and the
confusion matrix on ``rnnzoo eval``, and answers ``rnnzoo predict`` for texts and tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import Dataset

from rnnzoo.config import Section
from rnnzoo.data.batches import Batch, TokenBatches
from rnnzoo.data.sampling import eval_batches
from rnnzoo.errors import ConfigError, RunFolderError
from rnnzoo.tasks.base import ModelIO, PredictRequest, Sums, Task

_COUNTS = "f1/"  # prefix of the per-class tp/fp/fn sums that ``finish`` turns into macro-F1


class TokenizerKeys(Section):
    """The ``data:`` keys of how texts become token ids, shared by every text task."""

    tokenizer: Literal["word", "bpe"] = "word"
    vocab_size: int = Field(20_000, ge=10)
    min_frequency: int = Field(2, ge=1)
    max_len: int = Field(256, ge=1, description="tokens kept per text")
    truncation: Literal["head", "tail", "head_tail"] = "head"
    bucket: int = Field(50, ge=1, description="batches per length-sorted chunk (1: off)")


class TextClassification(Task):
    """Many-to-one classification of texts into ``classes`` (see the module docstring)."""

    metric = "accuracy"
    headline: ClassVar[tuple[str, ...]] = ("loss", "accuracy", "macro_f1")  # the epoch line's
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {
        "loss": "min", "accuracy": "max", "macro_f1": "max", "pad_fraction": "min",
    }  # fmt: skip

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.tokenizer: Any = None
        self.classes: list[str] = []
        self.class_weights: Tensor | None = None  # (K,) in the loss, or None: unweighted
        self._datasets: dict[str, Dataset[Batch]] = {}
        self._confusions: dict[str, Tensor] = {}  # split -> (K, K) from ``report``

    # -- what a subclass provides ---------------------------------------------------

    def examples(self, split: str) -> tuple[list[str], Tensor]:
        """The texts of ``split`` and their class ids (N,), indices into ``classes``."""
        raise NotImplementedError

    def clean(self, text: str) -> str:
        """A text given to ``predict``, made like the training texts were when read."""
        return text

    @property
    def text_columns(self) -> list[str]:
        """The table column(s) ``predict --file TABLE`` reads without ``--text-column``."""
        return ["text"]

    @property
    def text_separator(self) -> str:
        """What joins the cells of several text columns."""
        return " "

    # -- fitted on train ------------------------------------------------------------

    def prepare(self) -> None:
        from rnnzoo.data.text import fit_tokenizer

        if self.tokenizer is not None:  # another run's (adopt_state)
            return
        d = self.data
        texts, _ = self.examples("train")
        self.tokenizer = fit_tokenizer(texts, d.tokenizer, d.vocab_size, d.min_frequency)

    def adopt_state(self, run_dir: Path) -> None:
        """The source run's ``tokenizer.json``, whatever its task (a language model, a
        classifier): the data's tokenizer keys of this run are then not used."""
        from rnnzoo.data.text import load_tokenizer

        path = run_dir / "tokenizer.json"
        if not path.is_file():
            raise RunFolderError(
                f"{run_dir} has no tokenizer.json: its task has no word or BPE tokenizer "
                "to share with this one",
                "start from a run of a text task (text_classification, imdb, a language model)",
            )
        self.tokenizer = load_tokenizer(path)
        self.notes.append(
            f"tokenizer from {run_dir} (vocabulary {self.tokenizer.get_vocab_size()}), not "
            "fitted on this run's data (data.tokenizer, vocab_size, min_frequency unused)"
        )

    def save_state(self, run_dir: Path) -> None:
        from rnnzoo.data.text import save_tokenizer

        save_tokenizer(self.tokenizer, run_dir / "tokenizer.json")

    def load_state(self, run_dir: Path) -> None:
        from rnnzoo.data.text import load_tokenizer

        self.tokenizer = load_tokenizer(run_dir / "tokenizer.json")

    # -- data -------------------------------------------------------------------------

    def dataset(self, split: str) -> Dataset[Batch]:
        from rnnzoo.data.batches import TokenBatches

        if split not in self._datasets:  # eval's report and plot share one encoding
            texts, labels = self.examples(split)
            # every split bucketed: training shuffles the sorted chunks, evaluation not
            self._datasets[split] = TokenBatches(
                self._encode(texts), labels, bucket=self.data.bucket
            )
        return self._datasets[split]

    def _encode(self, texts: list[str]) -> list[Tensor]:
        from rnnzoo.data.text import encode

        if self.tokenizer is None:
            raise RuntimeError("the tokenizer is not fitted: call prepare() or load_state()")
        return encode(self.tokenizer, texts, self.data.max_len, self.data.truncation)

    @property
    def io(self) -> ModelIO:
        if self.tokenizer is None:
            raise RuntimeError("the tokenizer is not fitted: call prepare() or load_state()")
        vocab = self.tokenizer.get_vocab_size()
        return ModelIO(input_size=0, output_size=len(self.classes), vocab_size=vocab)

    @property
    def nominal_io(self) -> ModelIO:
        # before the data is read the number of classes is unknown: two stand in for it
        k = len(self.classes) or 2
        return ModelIO(input_size=0, output_size=k, vocab_size=self.data.vocab_size)

    # -- loss and metrics -------------------------------------------------------------

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Cross-entropy; with class weights w, sum_i w[y_i] * loss_i / sum_i w[y_i]."""
        weight = None if self.class_weights is None else self.class_weights.to(output.device)
        return F.cross_entropy(output, batch.targets, weight=weight)

    def loss_weight(self, batch: Batch) -> Tensor | int:
        # a weighted batch mean divides by its weights: the split's loss is then the
        # weighted mean over all its texts, however they are batched
        if self.class_weights is None:
            return len(batch)
        return self.class_weights.to(batch.targets.device)[batch.targets].sum()

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        """Accuracy, padding, and per-class true/false positives and false negatives.

        The counts of each class are summed like any metric (each over the batch size,
        so all share one denominator, which F1's ratio cancels); ``finish`` makes them
        macro-F1. output: (B, K) scores, batch.targets: (B,) class ids."""
        k, device = output.shape[-1], output.device
        pred, true = output.argmax(dim=-1), batch.targets
        n = torch.tensor(len(batch), device=device)
        tp = torch.bincount(true[pred == true], minlength=k)  # (K,)
        fp = torch.bincount(pred, minlength=k) - tp
        fn = torch.bincount(true, minlength=k) - tp
        assert batch.lengths is not None
        cells = torch.tensor(batch.inputs.numel(), device=device)
        sums: Sums = {
            "accuracy": (tp.sum(), n),
            "pad_fraction": (cells - batch.lengths.sum(), cells),
        }
        for c in range(k):
            for name, counts in (("tp", tp), ("fp", fp), ("fn", fn)):
                sums[f"{_COUNTS}{name}/{c}"] = (counts[c], n)
        return sums

    def finish(self, means: dict[str, float]) -> dict[str, float]:
        """``macro_f1`` from the per-class counts, which are then dropped."""
        counts = {k: means.pop(k) for k in [k for k in means if k.startswith(_COUNTS)]}
        if not counts:
            return means
        k = 1 + max(int(key.rsplit("/", 1)[1]) for key in counts)
        tp, fp, fn = (
            torch.tensor([counts[f"{_COUNTS}{name}/{c}"] for c in range(k)], dtype=torch.float64)
            for name in ("tp", "fp", "fn")
        )
        means["macro_f1"] = macro_f1(tp, fp, fn)
        return means

    # -- eval: per class, and the confusion matrix ------------------------------------

    @torch.no_grad()
    def report(
        self, model: nn.Module, split: str, device: torch.device, batch_size: int
    ) -> dict[str, Any]:
        """Per-class precision, recall, F1 and support, and the confusion matrix (rows:
        the true class, columns: the predicted one), for ``eval_<split>.json``."""
        matrix = self._confusion(model, split, device, batch_size)
        self._confusions[split] = matrix
        tp = matrix.diag().double()
        predicted, support = matrix.sum(0).double(), matrix.sum(1)
        precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), 0.0)
        recall = torch.where(support > 0, tp / support.clamp(min=1), 0.0)
        f1 = _f1(tp, predicted - tp, support - tp)
        per_class = {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(self.classes)
        }
        return {
            "per_class": per_class,
            "confusion_matrix": {"labels": self.classes, "matrix": matrix.tolist()},
        }

    def _confusion(
        self, model: nn.Module, split: str, device: torch.device, batch_size: int
    ) -> Tensor:
        data = self.dataset(split)
        k = len(self.classes)
        matrix = torch.zeros(k, k, dtype=torch.long)
        model.eval()
        for indices in eval_batches(data, batch_size):  # length-sorted: little padding
            batch = data.__getitems__(indices).to(device)  # type: ignore[attr-defined]
            pred = model(batch.inputs, batch.lengths).argmax(dim=-1).cpu()
            pairs = batch.targets.cpu() * k + pred
            matrix += torch.bincount(pairs, minlength=k * k).view(k, k)
        return matrix

    def figures(
        self, model: nn.Module, split: str, run_dir: Path, device: torch.device
    ) -> dict[Path, bytes]:
        """``confusion_<split>.png``: the confusion matrix, each row shaded by its share."""
        from rnnzoo.tasks.text_outputs import plot_confusion

        matrix = self._confusions.get(split)
        if matrix is None:
            matrix = self._confusion(model, split, device, 256)
        title = f"{split}: confusion matrix"
        return {run_dir / f"confusion_{split}.png": plot_confusion(matrix, self.classes, title)}

    # -- predict ------------------------------------------------------------------------

    def predict(self, model: nn.Module, request: PredictRequest) -> list[str]:
        """Texts: the class and its probability (``--top-k``: the K best), one line per
        text. A table ``--file``: the table with the predicted label and every class's
        probability added, written to ``--out``."""
        from rnnzoo.tasks.text_outputs import predict_table, probabilities

        if request.file is not None and request.texts is None:
            return predict_table(self, model, request)
        if request.text_column is not None:
            raise ConfigError("--text-column applies to a table --file (.csv .tsv .jsonl .parquet)")
        if request.out is not None:
            raise ConfigError(
                "--out writes a table of predictions: give the texts as a table --file",
                "for text lines, the answers are printed; redirect them to a file",
            )
        k = request.top_k or 1
        if k > len(self.classes):
            raise ConfigError(f"--top-k {k}: this run has only {len(self.classes)} classes")
        if not request.texts:
            raise ConfigError(self.missing_text)
        probs = probabilities(self, model, request.texts)  # (N, K)
        best = probs.topk(k, dim=-1)
        return [
            ", ".join(f"{self.classes[c]} (p={p:.3f})" for p, c in zip(ps, cs, strict=True))
            for ps, cs in zip(best.values.tolist(), best.indices.tolist(), strict=True)
        ]

    def inputs_from_text(self, texts: list[str]) -> Batch:
        return self.text_batches(texts).__getitems__(list(range(len(texts))))

    def text_batches(self, texts: list[str]) -> TokenBatches:
        """Texts given to ``predict``, cleaned and encoded as training texts were, with
        their lengths for batching (labels: all 0, unknown)."""
        from rnnzoo.data.batches import TokenBatches

        seqs = self._encode([self.clean(t) for t in texts])
        return TokenBatches(seqs, torch.zeros(len(seqs), dtype=torch.long))

    def show(self, output: Tensor) -> str:
        p = torch.softmax(output.float(), dim=-1)
        label = int(p.argmax())
        return f"{self.classes[label]} (p={float(p[label]):.3f})"


def _f1(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """Per-class F1 = 2tp / (2tp + fp + fn); 0 where a class is never true nor predicted."""
    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1e-300), 0.0)


def macro_f1(tp: Tensor, fp: Tensor, fn: Tensor) -> float:
    """The unweighted mean of per-class F1 over the classes that are true or predicted
    at least once (scikit-learn's default label set), from (K,) counts or count rates."""
    present = (tp + fp + fn) > 0
    if not present.any():
        return 0.0
    return float(_f1(tp, fp, fn)[present].mean())
