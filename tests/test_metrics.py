"""Task metrics against hand counts on tiny batches built here (the adding, tagging,
generation and forecast tasks are counted in their own test files)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rnnzoo.data import number_words as nw
from rnnzoo.data.batches import Batch
from rnnzoo.data.synthetic import copy_baseline, copy_memory
from rnnzoo.tasks import TASKS, CopyTask
from rnnzoo.tasks.base import Decoded


def means(task, output, batch) -> dict[str, float]:
    """The task's metrics of one batch, as the trainer reports them."""
    sums = task.metrics(output, batch)
    return task.finish({k: float(total) / float(n) for k, (total, n) in sums.items()})


def test_copy_metrics_count_the_recall_steps_only():
    delay = 3
    inputs, targets = copy_memory(2, delay, torch.Generator().manual_seed(0))  # (2, 23)
    guess = targets.clone()
    guess[0, -10:-7] = 0  # 3 recall symbols wrong in sequence 0
    guess[1, -1] = 0  # and 1 in sequence 1
    guess[:, :2] = 5  # wrong blanks: cross-entropy sees them, recall accuracy does not
    logits = 3.0 * F.one_hot(guess, 10).float()
    task = CopyTask(CopyTask.Data(delay=delay))
    got = means(task, logits, Batch(inputs, targets))
    assert got["recall_accuracy"] == (20 - 4) / 20
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # mean over all 46 steps
    assert math.isclose(got["ce"], float(ce), rel_tol=1e-6)
    assert math.isclose(got["ce_vs_baseline"], float(ce) / copy_baseline(delay), rel_tol=1e-6)


def test_number_words_metrics_compare_up_to_the_first_eos():
    e, p = nw.EOS, nw.PAD
    targets = torch.tensor([[5, 6, e, p], [7, e, p, p], [8, 9, 10, e]])
    tokens = torch.tensor(
        [
            [5, 6, e, 9],  # exact: what follows the EOS does not count
            [7, 8, e, p],  # goes on past the target's end: not exact; 1 of 2 right
            [8, 9, e, p],  # stops early: not exact; 2 of 4 right
        ]
    )
    task = TASKS.get("number_words")(TASKS.get("number_words").Data())
    batch = Batch(torch.ones(3, 2, dtype=torch.long), targets, torch.tensor([2, 2, 2]))
    for width in (4, 3):  # decoded shorter than the targets: scored as padded
        logits = torch.zeros(3, width, nw.VOCAB_SIZE)
        got = means(task, Decoded(logits, tokens[:, :width]), batch)
        assert got["exact_match"] == 1 / 3
        assert got["token_accuracy"] == (3 + 1 + 2) / (3 + 2 + 4)  # characters and EOS


def test_imdb_accuracy_and_pad_fraction():
    task = TASKS.get("imdb")(TASKS.get("imdb").Data())
    scores = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5], [0.2, 0.1]])  # neg pos neg neg
    targets = torch.tensor([0, 1, 1, 1])
    inputs = torch.ones(4, 5, dtype=torch.long)
    got = means(task, scores, Batch(inputs, targets, torch.tensor([5, 3, 1, 2])))
    assert got["accuracy"] == 2 / 4
    assert got["pad_fraction"] == (20 - 11) / 20


def test_a_metric_that_counted_nothing_is_left_out_not_reported_as_zero():
    from rnnzoo.distributed import World
    from rnnzoo.evaluation import Totals

    totals = Totals(torch.device("cpu"))
    for right, words, unseen_right, unseen in ((3, 4, 0, 0), (2, 5, 0, 0)):
        totals.add("accuracy", torch.tensor(right), words)
        totals.add("unseen_accuracy", torch.tensor(unseen_right), unseen)
    assert totals.means(World()) == {"accuracy": 5 / 9}
