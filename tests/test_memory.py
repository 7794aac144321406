"""Memory: length-bucketed evaluation (same metrics, input order kept, less padding).

Fixtures are tiny tables and treebanks the tests write, with lengths that vary a lot,
so that batching in input order pads heavily and batching by length does not.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from rnnzoo.data.sampling import eval_batches, shard_batches
from rnnzoo.distributed import World
from rnnzoo.evaluation import evaluate
from rnnzoo.models import MODELS, build_model
from rnnzoo.tasks import TASKS
from rnnzoo.tasks.text_outputs import probabilities

CPU = torch.device("cpu")
WORDS = {"sport": "goal match team win", "tech": "code chip cpu data"}


def text_task(tmp_path: Path):
    """A fitted two-class text task whose texts run from 1 to 16 words."""
    rng = random.Random(0)
    rows = []
    for i in range(200):
        label = list(WORDS)[i % 2]
        words = rng.choices([*WORDS[label].split(), "the", "a"], k=rng.randint(1, 16))
        rows.append({"text": " ".join(words), "label": label})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    cls = TASKS.get("text_classification")
    data = cls.Data(
        path=tmp_path / "t.csv", text_column="text", label_column="label", vocab_size=20,
        min_frequency=1, max_len=16, val_fraction=0.5, test_fraction=0.1, bucket=50,
    )  # fmt: skip
    task = cls(data)
    task.prepare()
    return task


def classifier(task):
    torch.manual_seed(0)
    args = MODELS.get("sequence_classifier").Args(
        name="sequence_classifier", cell="lstm", embedding_dim=8, hidden_size=8
    )
    return build_model(args, task.io)


def train_a_little(model, task) -> None:
    """A few Adam steps, so that the scores are those of a model that learned."""
    data = task.dataset("train")
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for indices in shard_batches(len(data), 16)[:6]:
        batch = data.__getitems__(indices)
        loss = task.loss(model(batch.inputs, batch.lengths), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()


def unbucketed(data):
    plain = copy.copy(data)
    plain.bucket = 1
    return plain


def test_bucketed_evaluation_gives_the_same_metrics_with_less_padding(tmp_path: Path):
    task = text_task(tmp_path)
    model = classifier(task)
    train_a_little(model, task)
    val = task.dataset("val")  # as the trainer and `rnnzoo eval` get it
    got = evaluate(model, task, val, CPU, 4)
    plain = evaluate(model, task, unbucketed(val), CPU, 4)
    assert 0.5 < got["accuracy"] < 1  # a model that learned something, not a constant
    assert set(got) == set(plain)
    for key in set(got) - {"pad_fraction"}:
        assert got[key] == pytest.approx(plain[key], rel=1e-6, abs=1e-9), key
    assert plain["pad_fraction"] > 0.3
    assert got["pad_fraction"] < plain["pad_fraction"] / 5


def test_the_confusion_matrix_counts_the_same_when_bucketed(tmp_path: Path):
    task = text_task(tmp_path)
    model = classifier(task)
    train_a_little(model, task)
    bucketed = task._confusion(model, "val", CPU, 4)
    task._datasets["val"] = unbucketed(task.dataset("val"))
    assert torch.equal(bucketed, task._confusion(model, "val", CPU, 4))
    assert int(bucketed.sum()) == len(task.dataset("val"))


def test_predicted_probabilities_stay_in_input_order(tmp_path: Path):
    task = text_task(tmp_path)
    model = classifier(task).eval()
    # lengths in no order at all, one text alone in its last batch
    texts = ["goal " * n for n in (3, 15, 1, 9, 2, 16, 5)]
    monkey = pytest.MonkeyPatch()
    monkey.setattr("rnnzoo.tasks.text_outputs.CHUNK", 3)
    try:
        together = probabilities(task, model, texts)
    finally:
        monkey.undo()
    alone = torch.cat([probabilities(task, model, [t]) for t in texts])
    torch.testing.assert_close(together, alone)


def treebank(n: int) -> str:
    """``n`` sentences of 1 to 12 words, tagged by a rule a model can partly learn."""
    rng = random.Random(1)
    out = []
    for i in range(n):
        words = [rng.choice(["dog", "runs", "the", "fast"]) for _ in range(rng.randint(1, 12))]
        lines = [f"# sent_id = {i}"]
        for k, w in enumerate(words, 1):
            tag = {"dog": "NOUN", "runs": "VERB", "the": "DET", "fast": "ADV"}[w]
            lines.append(f"{k}\t{w}\t{w}\t{tag}\t_\t_\t0\tdep\t_\t_")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out) + "\n"


def pos_task_and_model(tmp_path: Path):
    (tmp_path / "train.conllu").write_text(treebank(40))
    (tmp_path / "dev.conllu").write_text(treebank(60))
    cls = TASKS.get("pos_tagging")
    task = cls(cls.Data(path=tmp_path / "train.conllu", val_path=tmp_path / "dev.conllu"))
    task.prepare()
    torch.manual_seed(0)
    args = MODELS.get("sequence_tagger").Args(
        name="sequence_tagger", hidden_size=6, embedding_dim=6, char_encoder="cnn",
        char_embedding_dim=4, char_hidden_size=4,
    )  # fmt: skip
    return task, build_model(args, task.io).eval()


def test_tagging_metrics_are_the_same_when_bucketed(tmp_path: Path):
    task, model = pos_task_and_model(tmp_path)
    val = task.dataset("val")
    got, plain = evaluate(model, task, val, CPU, 4), evaluate(model, task, unbucketed(val), CPU, 4)
    assert set(got) == set(plain)
    for key in got:
        assert got[key] == pytest.approx(plain[key], rel=1e-6, abs=1e-9), key


def test_tagged_sentences_stay_in_input_order(tmp_path: Path):
    task, model = pos_task_and_model(tmp_path)
    sentences = [["dog", "runs"] * n for n in (2, 6, 1, 4, 3)]
    together = task._tag(model, sentences, batch_size=2)
    assert together == [task._tag(model, [s])[0] for s in sentences]


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_bucketed_shards_score_every_sample_once_in_a_fixed_order(size: int):
    lengths = [(i * 37) % 101 + 1 for i in range(103)]
    shards = [shard_batches(103, 4, World(r, size), lengths, bucket=5) for r in range(size)]
    seen = sorted(i for shard in shards for batch in shard for i in batch)
    assert seen == list(range(103))
    assert shards == [shard_batches(103, 4, World(r, size), lengths, 5) for r in range(size)]
    # every process's batches hold similar lengths: far less spread than in input order
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for s in shards for b in s]
    plain = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in sorted_chunks(103)]
    assert sum(spread) / len(spread) < sum(plain) / len(plain) / 3


def sorted_chunks(n: int) -> list[list[int]]:
    return [list(range(i, min(i + 4, n))) for i in range(0, n, 4)]


def test_a_dataset_without_a_bucket_key_is_sorted_and_bucket_1_is_not():
    class Plain:
        lengths = torch.tensor([3, 9, 1, 7])

        def __len__(self) -> int:
            return 4

    assert eval_batches(Plain(), 2) == [[1, 3], [0, 2]]
    off = Plain()
    off.bucket = 1  # type: ignore[attr-defined]
    assert eval_batches(off, 2) == [[0, 1], [2, 3]]


# -- the allocator gives back what the run no longer needs -----------------------------


def test_release_free_memory_gives_freed_heap_back_to_the_kernel(monkeypatch):
    import ctypes
    import ctypes.util

    from rnnzoo import perf

    if perf._malloc_trim() is None:
        pytest.skip("no glibc malloc_trim here")
    monkeypatch.delenv("RNNZOO_MALLOC", raising=False)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    # many 64 KiB blocks (below glibc's default mmap threshold: they come from the
    # heap), touched, then freed but for the last one, which pins the heap's top
    blocks = [libc.malloc(1 << 16) for _ in range(2000)]  # 125 MiB
    for b in blocks:
        ctypes.memset(b, 1, 1 << 16)
    held = rss_kib()
    for b in blocks[:-1]:
        libc.free(b)
    assert perf.release_free_memory() is True
    assert rss_kib() < held - 80 * 1024  # most of the 125 MiB went back
    libc.free(blocks[-1])


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_release_free_memory_is_a_no_op_where_it_should_be(monkeypatch):
    from rnnzoo import perf

    calls: list[int] = []
    monkeypatch.setattr(perf, "_malloc_trim", lambda: lambda pad: calls.append(pad) or 1)
    monkeypatch.setenv("RNNZOO_MALLOC", "system")  # the user left the allocator alone
    assert perf.release_free_memory() is False and calls == []
    monkeypatch.setattr(perf, "_malloc_trim", lambda: None)  # not glibc, not Linux
    monkeypatch.delenv("RNNZOO_MALLOC")
    assert perf.release_free_memory() is False
    monkeypatch.setattr(perf, "_malloc_trim", lambda: lambda pad: calls.append(pad) or 1)
    assert perf.release_free_memory() is True and calls == [0]


def test_the_trainer_releases_memory_after_each_epoch_and_each_evaluation(
    tmp_path: Path, monkeypatch
):
    from rnnzoo import trainer
    from rnnzoo.config import parse_config

    task = text_task(tmp_path)
    config = parse_config(
        {"task": "text_classification", "data": task.data.model_dump(mode="json"),
         "model": {"name": "sequence_classifier", "cell": "lstm", "embedding_dim": 8,
                   "hidden_size": 8},
         "train": {"epochs": 2, "batch_size": 32, "device": "cpu"}}
    )  # fmt: skip
    calls: list[str] = []
    fit = trainer.Trainer(config, task, classifier(task), CPU)
    real_evaluate = trainer.evaluate
    monkeypatch.setattr(trainer, "release_free_memory", lambda: calls.append("release"))
    monkeypatch.setattr(
        trainer, "evaluate", lambda *a, **k: calls.append("evaluate") or real_evaluate(*a, **k)
    )
    fit.after_step.append(lambda t: calls.append("step"))
    fit.fit()
    # per epoch: the steps, a release, the evaluation, a release
    epoch = ["step"] * len(fit.batches) + ["release", "evaluate", "release"]
    assert calls == epoch * 2


def test_texts_are_encoded_a_chunk_at_a_time_with_the_same_ids(monkeypatch):
    from rnnzoo.data import text

    texts = [" ".join(["good film"] * n + ["bad"]) for n in range(7)]
    tok = text.fit_tokenizer(texts, "word", vocab_size=20, min_frequency=1)
    whole = text.encode(tok, texts, 6, "head_tail")

    class Counting:
        """The tokenizer, counting the texts of each encode_batch call."""

        def __init__(self) -> None:
            self.calls: list[int] = []

        def encode_batch(self, batch: list[str]):
            self.calls.append(len(batch))
            return tok.encode_batch(batch)

        def token_to_id(self, token: str):
            return tok.token_to_id(token)

    counting = Counting()
    monkeypatch.setattr(text, "ENCODE_CHUNK", 3)
    chunked = text.encode(counting, texts, 6, "head_tail")  # type: ignore[arg-type]
    assert [t.tolist() for t in chunked] == [t.tolist() for t in whole]
    assert counting.calls == [3, 3, 1]  # never more than a chunk of encodings at once
