"""Sequence-to-sequence: the number-words generator, the seq2seq model's decoding and
teacher forcing, and a tiny run through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.config import ConfigError, parse_config
from rnnzoo.data import number_words as nw
from rnnzoo.data.batches import Batch
from rnnzoo.models import MODELS, build_model
from rnnzoo.models.seq2seq import Seq2Seq
from rnnzoo.tasks import TASKS, ModelIO

NumberWords = TASKS.get("number_words")
IO = ModelIO(input_size=0, output_size=nw.VOCAB_SIZE, vocab_size=nw.VOCAB_SIZE,
             output="sequence", max_output_len=9)  # fmt: skip

# Small models covering the options: cell, attention, bidirectional encoder, layers.
VARIANTS = {
    "gru": {"cell": "gru", "attention": "none"},
    "gru_luong": {"cell": "gru", "attention": "luong"},
    "bilstm2": {"cell": "lstm", "attention": "luong", "bidirectional": True, "num_layers": 2},
    "birnn_none": {"cell": "rnn_tanh", "attention": "none", "bidirectional": True},
}


def model(variant: str, seed: int = 1, dtype: torch.dtype = torch.float32, **args) -> Seq2Seq:
    """An untrained model with its weights tripled and its EOS score raised, so that its
    outputs depend on the input and end at different steps (an untrained one is nearly
    uniform and rarely says EOS)."""
    torch.manual_seed(seed)
    kwargs = {"hidden_size": 8, "embedding_dim": 6, **VARIANTS[variant], **args}
    m = build_model(MODELS.get("seq2seq").Args(**kwargs), IO).to(dtype).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
        m.head.bias[nw.EOS] += 2.0
    assert isinstance(m, Seq2Seq)
    return m


def task(**data) -> NumberWords:
    return NumberWords(NumberWords.Data(**{"n_train": 200, "n_val": 20, "n_test": 20, **data}))


def batch_of(t: NumberWords, split: str = "val", n: int = 8) -> Batch:
    return t.dataset(split).__getitems__(list(range(n)))


# -- the generator ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (21, "twenty-one"),
        (40, "forty"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (1000, "one thousand"),
        (20_020, "twenty thousand twenty"),
        (342_007, "three hundred forty-two thousand seven"),
        (999_999, "nine hundred ninety-nine thousand nine hundred ninety-nine"),
    ],
)
def test_numbers_are_spelled_american_without_and(n: int, words: str):
    assert nw.number_to_words(n) == words
    assert nw.words_to_number(words) == n


def test_only_0_to_999999_can_be_spelled():
    with pytest.raises(ValueError, match="999999"):
        nw.number_to_words(1_000_000)


@pytest.mark.parametrize("direction", ["words_to_digits", "digits_to_words"])
def test_batches_hold_padded_sources_and_targets_ending_in_eos(direction: str):
    t = task(direction=direction)
    b = batch_of(t, "train", 16)
    assert b.lengths is not None and b.inputs.shape == (16, int(b.lengths.max()))
    for src, n, tgt in zip(b.inputs, b.lengths, b.targets, strict=True):
        assert (src[n:] == nw.PAD).all() and (src[:n] >= len(nw.SPECIALS)).all()
        eos = int((tgt == nw.EOS).nonzero()[0, 0])
        assert (tgt[:eos] >= len(nw.SPECIALS)).all() and (tgt[eos + 1 :] == nw.PAD).all()
        words, digits = nw.decode(src[:n].tolist()), nw.decode(tgt.tolist())
        if direction == "digits_to_words":
            words, digits = digits, words
        assert nw.words_to_number(words) == int(digits)
        assert nw.number_to_words(int(digits)) == words
    longest = int((b.targets != nw.PAD).sum(1).max())
    assert longest <= t.io.max_output_len and t.io.output == "sequence"


@pytest.mark.parametrize("max_number", [2, 21, 999, 1000, 1500, 12_345])
def test_longest_spelling_matches_spelling_them_all(max_number: int):
    brute = max(len(nw.number_to_words(n)) for n in range(max_number + 1))
    assert nw.longest_words(max_number) == brute
    sizes = {"max_number": max_number, "n_train": 1, "n_val": 1, "n_test": 1}
    to_words = task(**sizes, direction="digits_to_words").io.max_output_len
    to_digits = task(**sizes, direction="words_to_digits").io.max_output_len
    assert (to_words, to_digits) == (brute + 1, len(str(max_number)) + 1)  # + EOS


def test_val_and_test_numbers_never_occur_in_train_and_the_seed_fixes_them():
    sets = {s: set(task(max_number=999)._numbers(s).tolist()) for s in ("train", "val", "test")}
    assert [len(v) for v in sets.values()] == [200, 20, 20]
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    again = task(max_number=999).dataset("test").__getitems__(list(range(20)))
    assert torch.equal(again.targets, batch_of(task(max_number=999), "test", 20).targets)
    other = task(max_number=999, seed=1)._numbers("test").tolist()
    assert set(other) != sets["test"]
    # val and test do not move when the training set grows
    bigger = task(max_number=999, n_train=500)
    assert set(bigger._numbers("test").tolist()) == sets["test"]


def test_splits_larger_than_the_numbers_are_a_clear_error():
    raw = {"task": "number_words", "model": {"name": "seq2seq"}}
    data = {"max_number": 999, "n_train": 961, "n_val": 20, "n_test": 20}
    with pytest.raises(ConfigError, match=r"= 1001 distinct numbers, but 0..999 holds only 1000"):
        parse_config({**raw, "data": data})
    with pytest.raises(ConfigError, match="distinct numbers"):  # the library checks too
        nw.held_out_numbers(999, {"train": 1001}, seed=0)


# -- the model ----------------------------------------------------------------------


def log_probability(m: Seq2Seq, b: Batch, tokens: torch.Tensor) -> torch.Tensor:
    """Each output's log-probability under the model, scored teacher-forced: (B,)."""
    logp = torch.log_softmax(m(b.inputs, b.lengths, tokens).logits.double(), -1)
    picked = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return (picked * (tokens != nw.PAD)).sum(1)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_beam_width_1_is_greedy(variant: str):
    m, b = model(variant), batch_of(task())
    with torch.no_grad():
        greedy = m.decode(b.inputs, b.lengths, 1)
        beam = m._beam(*m.encode(b.inputs, b.lengths), len(b), m.max_len, 1)  # not routed
    assert torch.equal(beam.tokens, greedy.tokens)
    torch.testing.assert_close(beam.logits, greedy.logits)
    assert (greedy.tokens == nw.EOS).any()  # the path after EOS is exercised too
    assert greedy.tokens.shape == (len(b), IO.max_output_len)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_beam_search_finds_outputs_at_least_as_likely_as_greedy(variant: str):
    """Not a theorem (a beam can drop the greedy prefix and end lower), so the seeds are
    fixed; on these inputs no width loses and some win."""
    m, b = model(variant), batch_of(task(), n=16)
    with torch.no_grad():
        greedy = log_probability(m, b, m.decode(b.inputs, b.lengths, 1).tokens)
        better = 0
        for k in (2, 3, 4):
            out = m.decode(b.inputs, b.lengths, k)
            beam = log_probability(m, b, out.tokens)
            assert (beam >= greedy - 1e-5).all(), (k, beam - greedy)
            better += int((beam > greedy + 1e-5).sum())
            # the logits returned are the scores along the returned path
            own = torch.log_softmax(out.logits.double(), -1).gather(-1, out.tokens[..., None])
            path = (own[..., 0] * (out.tokens != nw.PAD)).sum(1)
            torch.testing.assert_close(path, beam, atol=1e-5, rtol=0)
    assert better > 0


def test_a_beam_as_wide_as_the_vocabulary_finds_the_best_two_token_output():
    m, b = model("gru_luong"), batch_of(task(), n=3)
    choosable = [i for i in range(nw.VOCAB_SIZE) if i not in (nw.PAD, nw.BOS)]
    firsts = [i for i in choosable if i != nw.EOS]
    every = [[nw.EOS, nw.PAD]] + [[a, z] for a in firsts for z in choosable]  # (N, 2)
    with torch.no_grad():
        beam = m.decode(b.inputs, b.lengths, nw.VOCAB_SIZE, max_len=2).tokens
        for i in range(len(b)):
            one = Batch(b.inputs[i : i + 1].expand(len(every), -1), b.targets, b.lengths[i : i + 1])
            one.lengths = one.lengths.expand(len(every))
            scores = log_probability(m, one, torch.tensor(every))
            assert beam[i].tolist() == every[int(scores.argmax())]


def test_teacher_forcing_gives_the_loss_of_the_decoder_run_by_hand():
    """The one-call teacher-forced pass against a step-by-step loop written out here:
    bridge, Luong attention and masked cross-entropy by their formulas."""
    t = task(max_number=999)
    m = model("bilstm2", dtype=torch.float64).train()  # teacher_forcing 1, no dropout
    b = batch_of(t, n=5)
    loss = t.loss(m(b.inputs, b.lengths, b.targets).float(), b)

    out, (h, c) = m.encoder(m.source_embedding(b.inputs), lengths=b.lengths)  # (B, S, 2H)

    def bridge(s: torch.Tensor, linear: torch.nn.Module) -> torch.Tensor:
        return torch.stack([linear(torch.cat([s[2 * i], s[2 * i + 1]], -1)) for i in range(2)])

    state = (bridge(h, m.bridge[0]), bridge(c, m.bridge[1]))
    previous = torch.full((len(b),), nw.BOS)
    total, count = torch.zeros((), dtype=torch.float64), 0
    for step in range(b.targets.shape[1]):
        s, state = m.decoder.step(m.target_embedding(previous), state)  # (B, H)
        for i in range(len(b)):
            n = int(b.lengths[i])
            scores = torch.stack([s[i] @ m.score.weight @ out[i, j] for j in range(n)])
            context = torch.softmax(scores, 0) @ out[i, :n]
            attended = torch.tanh(m.combine.weight @ torch.cat([s[i], context]))
            logits = m.head.weight @ attended + m.head.bias
            target = int(b.targets[i, step])
            if target != nw.PAD:
                total, count = total - torch.log_softmax(logits, 0)[target], count + 1
        previous = b.targets[:, step]
    torch.testing.assert_close(loss.double(), total / count)


def test_without_teacher_forcing_training_reads_its_own_predictions_as_greedy_does():
    m = model("gru_luong", teacher_forcing=0.0).train()
    b = batch_of(task())
    targets = torch.full((len(b), m.max_len), 5)  # never read
    trained = m(b.inputs, b.lengths, targets)
    greedy = m.eval().decode(b.inputs, b.lengths)
    running = torch.cumsum(greedy.tokens == nw.EOS, 1) - (greedy.tokens == nw.EOS).long() == 0
    assert torch.equal(trained.tokens[running], greedy.tokens[running])
    torch.testing.assert_close(trained.logits[running], greedy.logits[running])


@pytest.mark.parametrize("variant", ["gru_luong", "bilstm2"])
def test_padded_source_steps_change_nothing(variant: str):
    m, b = model(variant), batch_of(task())
    padded = F.pad(b.inputs, (0, 4))
    with torch.no_grad():
        for k in (1, 3):
            one, two = m.decode(b.inputs, b.lengths, k), m.decode(padded, b.lengths, k)
            assert torch.equal(one.tokens, two.tokens)
            torch.testing.assert_close(one.logits, two.logits)
        forced = m(b.inputs, b.lengths, b.targets).logits
        torch.testing.assert_close(m(padded, b.lengths, b.targets).logits, forced)


def test_predict_rejects_characters_outside_the_source_alphabet():
    words, digits = task(), task(direction="digits_to_words")
    b = words.inputs_from_text(["  Seven  Hundred ", "one"])
    assert nw.decode(b.inputs[0].tolist()) == "seven hundred" and b.lengths.tolist() == [13, 3]
    with pytest.raises(ConfigError, match=r"'7'.*reads only a-z, space, hyphen"):
        words.inputs_from_text(["seven", "7"])
    with pytest.raises(ConfigError, match=r"',', '\.'.*reads only 0-9"):
        digits.inputs_from_text(["1,000.5"])


# -- through the command line -------------------------------------------------------


def test_a_tiny_run_trains_evaluates_and_decodes(tmp_path: Path):
    config = {
        "task": "number_words",
        "data": {"max_number": 999, "n_train": 256, "n_val": 32, "n_test": 32},
        "model": {"name": "seq2seq", "cell": "gru", "hidden_size": 16, "embedding_dim": 8},
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "device": "cpu"},
        "output": {"name": "numbers", "tensorboard": False},
    }
    path = tmp_path / "numbers.yaml"
    path.write_text(yaml.safe_dump(config))
    runner, run = CliRunner(), tmp_path / "numbers"
    result = runner.invoke(app, ["train", "-c", str(path), "--set", f"output.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    scores = json.loads((run / "eval_test.json").read_text())
    assert 0 <= scores["exact_match"] <= 1 and 0 <= scores["token_accuracy"] <= 1
    assert scores["loss"] > 0
    result = runner.invoke(app, ["eval", str(run), "--split", "test", "--beam-width", "3"])
    assert result.exit_code == 0, result.output
    beam = json.loads((run / "eval_test_beam3.json").read_text())
    assert json.loads(result.output)["beam_width"] == 3 and beam.keys() == scores.keys()

    for extra in ([], ["--beam-width", "3"], ["--max-len", "2"]):
        result = runner.invoke(app, ["predict", str(run), "seven", *extra])
        assert result.exit_code == 0, result.output
        lines = result.output.split("\n")[:-1]
        assert len(lines) == 1 and set(lines[0]) <= set(nw.CHARS)
        assert len(lines[0]) <= (2 if extra[:1] == ["--max-len"] else 4)
    (tmp_path / "in.txt").write_text("seven\n\ntwenty-one\n")
    result = runner.invoke(app, ["predict", str(run), "--file", str(tmp_path / "in.txt")])
    assert result.exit_code == 0 and len(result.output.split("\n")[:-1]) == 2, result.output
    result = runner.invoke(app, ["predict", str(run), "seven!"])
    assert result.exit_code == 2 and "'!'" in result.output
