"""Part-of-speech tagging on CoNLL-U treebanks: a tag for every word (many-to-many)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from rnnzoo.config import Section
from rnnzoo.data import conllu
from rnnzoo.data.batches import Batch
from rnnzoo.data.pos import TaggedSentences, Vocab
from rnnzoo.data.sampling import sorted_batches
from rnnzoo.data.tagging import IGNORE
from rnnzoo.errors import ConfigError, DataError
from rnnzoo.tasks.base import TASKS, ModelIO, PredictRequest, Sums, Task

VOCAB_FILE = "pos_vocab.json"


@TASKS.register("pos_tagging")
class PosTaggingTask(Task):
    """Tag each word of a treebank's sentences with its UPOS or XPOS column.

    The vocabulary, the character set and the tag set are fitted on ``path`` (train)
    only. A val/test tag that train never had is kept as an "unseen tag": the model
    cannot predict it, so it always counts wrong (and adds nothing to the loss); the
    run's notes say how many there are. ``unseen_accuracy`` is the accuracy on words
    whose form, as written, never occurs in train.
    """

    class Data(Section):
        path: Path = Field(Path("en_ewt-ud-train.conllu"), description="train, CoNLL-U")
        val_path: Path | None = Field(
            Path("en_ewt-ud-dev.conllu"), description="null: a seeded part of path"
        )
        test_path: Path | None = None
        column: Literal["upos", "xpos"] = "upos"
        min_frequency: int = Field(1, ge=1, description="of a lowercased word to get an id")
        max_word_len: int = Field(20, ge=1, description="characters spelled (head and tail)")
        val_fraction: float = Field(0.1, gt=0, lt=1, description="of path, without val_path")
        seed: int = 0
        bucket: int = Field(50, ge=1, description="batches per length-sorted chunk (1: off)")

        @field_validator("path", "val_path", "test_path")
        @classmethod
        def _absolute(cls, path: Path | None) -> Path | None:
            # A run folder's config names the files wherever eval and predict run later.
            return None if path is None else path.expanduser().absolute()

    metric = "accuracy"
    headline: ClassVar[tuple[str, ...]] = ("accuracy", "unseen_accuracy")
    missing_text = 'give a sentence to tag, e.g. "The old man the boat ." or --file'
    modes: ClassVar[dict[str, Literal["min", "max"]]] = {
        "loss": "min", "accuracy": "max", "unseen_accuracy": "max",
        "sentence_accuracy": "max",
    }  # fmt: skip

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.vocab: Vocab | None = None
        self._docs: dict[str, list[conllu.Sentence]] = {}

    # -- data ---------------------------------------------------------------------

    def _sentences(self, split: str) -> list[conllu.Sentence]:
        self.check_split(split)
        if split not in self._docs:
            d = self.data
            if split in ("train", "val") and d.val_path is None:
                train = self._read(d.path, "data.path")
                self._docs["train"], self._docs["val"] = _split(train, d.val_fraction, d.seed)
            elif split == "train":
                self._docs["train"] = self._read(d.path, "data.path")
            elif split == "val":
                self._docs["val"] = self._read(d.val_path, "data.val_path")
            elif d.test_path is None:
                raise ConfigError("data.test_path is not set", "set it to a .conllu file")
            else:
                self._docs["test"] = self._read(d.test_path, "data.test_path")
        return self._docs[split]

    def _read(self, path: Path, key: str) -> list[conllu.Sentence]:
        doc = conllu.read(path, self.data.column, what=f"{key} file")
        if not doc.sentences:
            raise DataError(f"{key} file {path} has no sentences")
        return doc.sentences

    def has_split(self, split: str) -> bool:
        return split != "test" or self.data.test_path is not None

    def prepare(self) -> None:
        train = self._sentences("train")
        forms, tags = [s.forms for s in train], [s.tags for s in train]
        self.vocab = Vocab.fit(forms, tags, self.data.min_frequency)
        for split in ("val", "test"):
            if self.has_split(split):
                self._note_unseen_tags(split)

    def _note_unseen_tags(self, split: str) -> None:
        assert self.vocab is not None
        unseen: dict[str, int] = {}
        for sentence in self._sentences(split):
            for tag in sentence.tags:
                if tag not in self.vocab.tag_ids:
                    unseen[tag] = unseen.get(tag, 0) + 1
        if unseen:
            listed = ", ".join(f"{t} ({n})" for t, n in sorted(unseen.items()))
            self.notes.append(f"{split} has tags that train never had, counted wrong: {listed}")

    def save_state(self, run_dir: Path) -> None:
        assert self.vocab is not None, "prepare() first"
        self.vocab.save(run_dir / VOCAB_FILE)

    def load_state(self, run_dir: Path) -> None:
        self.vocab = Vocab.load(run_dir / VOCAB_FILE)

    def _fitted(self) -> Vocab:
        if self.vocab is None:
            raise RuntimeError("the vocabulary is not fitted: call prepare() or load_state()")
        return self.vocab

    def dataset(self, split: str) -> Dataset[Batch]:
        vocab, d = self._fitted(), self.data
        sentences = self._sentences(split)
        inputs = [vocab.encode_words(s.forms, d.max_word_len) for s in sentences]
        targets = [vocab.encode_targets(s.forms, s.tags) for s in sentences]
        return TaggedSentences(inputs, targets, bucket=d.bucket)

    @property
    def io(self) -> ModelIO:
        vocab = self._fitted()
        return ModelIO(
            input_size=0, output_size=len(vocab.tags), vocab_size=vocab.word_vocab_size,
            output="per_step", char_vocab_size=vocab.char_vocab_size,
        )  # fmt: skip

    @property
    def nominal_io(self) -> ModelIO:
        # Before reading a treebank: UD's 17 UPOS tags; sizes enough to build the model.
        tags = 17 if self.data.column == "upos" else 50
        return ModelIO(
            input_size=0, output_size=tags, vocab_size=1000, output="per_step",
            char_vocab_size=100,
        )  # fmt: skip

    # -- loss and metrics ---------------------------------------------------------

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Mean cross-entropy over the valid words with a known tag; output (B, T, K)."""
        tags = batch.targets[..., 0]  # (B, T)
        known = tags.masked_fill(tags >= output.shape[-1], IGNORE)
        return F.cross_entropy(output.flatten(0, 1), known.flatten(), ignore_index=IGNORE)

    def loss_weight(self, batch: Batch) -> Tensor:
        tags = batch.targets[..., 0]
        return ((tags != IGNORE) & (tags < len(self._fitted().tags))).sum()

    def metrics(self, output: Tensor, batch: Batch) -> Sums:
        tags, unseen = batch.targets[..., 0], batch.targets[..., 1].bool()  # (B, T) each
        valid = tags != IGNORE
        right = (output.argmax(-1) == tags) & valid
        whole = (right | ~valid).all(dim=1)
        return {
            "accuracy": (right.sum(), valid.sum()),
            "unseen_accuracy": ((right & unseen).sum(), (valid & unseen).sum()),
            "sentence_accuracy": (whole.sum(), torch.tensor(len(batch), device=output.device)),
        }

    # -- predict ------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, model: nn.Module, request: PredictRequest) -> list[str]:
        """Tagged text as ``word/TAG`` pairs, or a CoNLL-U ``--file`` with the column filled
        (written to ``--out``, else printed)."""
        model.eval()
        if request.file is not None and request.file.suffix.lower() == ".conllu":
            return self._predict_conllu(model, request.file, request.out)
        if request.out is not None:
            raise ConfigError(
                "--out writes a tagged CoNLL-U file; it needs --file FILE.conllu",
                "without --out the tagged sentences are printed",
            )
        if not request.texts:
            raise ConfigError(self.missing_text)
        sentences = [text.split() for text in request.texts]
        tags = self._tag(model, sentences)
        return [
            " ".join(f"{w}/{t}" for w, t in zip(words, sent_tags, strict=True))
            for words, sent_tags in zip(sentences, tags, strict=True)
        ]

    def _predict_conllu(self, model: nn.Module, file: Path, out: Path | None) -> list[str]:
        from rnnzoo.run_folder import write_atomic

        doc = conllu.read(file, self.data.column, what="--file")
        if not doc.sentences:
            raise DataError(f"--file {file} has no sentences")
        if out is not None and out.absolute().resolve() == file.absolute().resolve():
            raise ConfigError(
                f"--out {out} is the input file", "write the tagged file under another name"
            )
        filled = doc.filled(self.data.column, self._tag(model, [s.forms for s in doc.sentences]))
        if out is None:
            return filled.splitlines()
        write_atomic(out, filled.encode("utf-8", errors="surrogateescape"))
        words = sum(len(s.forms) for s in doc.sentences)
        return [f"wrote {out} ({len(doc.sentences)} sentences, {words} words tagged)"]

    def _tag(self, model: nn.Module, sentences: list[list[str]], batch_size: int = 64):
        """The model's tag for each word of each sentence, in the sentences' order;
        batched by length (little padding)."""
        vocab = self._fitted()
        tags: list[list[str]] = [[] for _ in sentences]
        for indices in sorted_batches([len(s) for s in sentences], batch_size):
            chunk = [sentences[i] for i in indices]
            inputs = [vocab.encode_words(s, self.data.max_word_len) for s in chunk]
            dummy = [torch.zeros(len(s), 2, dtype=torch.long) for s in chunk]
            batch = TaggedSentences(inputs, dummy).__getitems__(range(len(chunk)))
            best = model(batch.inputs, batch.lengths).argmax(-1)  # (B, T)
            for i, row, sent in zip(indices, best.tolist(), chunk, strict=True):
                tags[i] = [vocab.tags[t] for t in row[: len(sent)]]
        return tags


def _split(
    sentences: list[conllu.Sentence], fraction: float, seed: int
) -> tuple[list[conllu.Sentence], list[conllu.Sentence]]:
    """A seeded (train, val) split of sentences, val taking ``fraction`` of them."""
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(fraction * len(sentences)))
    if n_val >= len(sentences):
        raise DataError(
            f"{len(sentences)} sentences cannot be split into train and val",
            "give data.val_path",
        )
    val = set(order[:n_val].tolist())
    return (
        [s for i, s in enumerate(sentences) if i not in val],
        [s for i, s in enumerate(sentences) if i in val],
    )
