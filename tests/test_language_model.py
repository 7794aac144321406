"""Language modelling on any text: streams, the carried state, perplexity, IMDB, the CLI."""

from __future__ import annotations

import contextlib
import json
import math
import tarfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.config import ConfigError, parse_config
from rnnzoo.data import imdb
from rnnzoo.data.batches import Batch
from rnnzoo.data.documents import read_documents, split_documents
from rnnzoo.data.sampling import EpochBatches, batched, eval_batches
from rnnzoo.data.streams import TextStream
from rnnzoo.data.text import EOS, decode, encode_documents, fit_tokenizer
from rnnzoo.distributed import World
from rnnzoo.evaluation import evaluate
from rnnzoo.models import build_model
from rnnzoo.models.language_model import LanguageModel
from rnnzoo.tasks import ModelIO
from rnnzoo.tasks.base import TargetLogProbs
from rnnzoo.tasks.language_model import LanguageModelTask
from tests.test_bad_input import assert_user_error, unchanged
from tests.test_imdb import add, movie_url

runner = CliRunner()
V = 13
IO = ModelIO(input_size=0, output_size=V, vocab_size=V, output="language_model")
TEXT = (
    "the cat sat on the mat.\nthe dog sat on the log.\n\n"
    "a bird flew over the house.\n  \nthe cat saw the bird and the dog.\n\n"
    "Every dog has its day, and every cat its night.\n\n"
    "the mat was red; the log was brown.\n\nthe house was big, the bird small.\n"
)


def model(cell: str = "lstm", **kwargs) -> LanguageModel:
    torch.manual_seed(0)
    args = LanguageModel.Args(cell=cell, **{"hidden_size": 6, "embedding_dim": 5, **kwargs})
    built = build_model(args, IO)
    assert isinstance(built, LanguageModel)
    return built


# -- the token stream ---------------------------------------------------------------


def test_batches_continue_each_row_and_every_target_is_predicted_once():
    tokens = torch.arange(100, 150, dtype=torch.int32)  # 50 tokens, each its own value
    stream = TextStream(tokens, bptt=4).with_streams(3)  # L = 49 // 3 = 16 steps a row
    sampler = EpochBatches(len(stream), 3, seed=5, contiguous=True)
    batches = [stream.__getitems__(b) for b in sampler]
    assert len(batches) == stream.chunks == 4
    assert [b.inputs.shape[1] for b in batches] == [4, 4, 4, 4]
    rows = torch.cat([b.inputs for b in batches], dim=1)  # (3, 16)
    for s in range(3):  # row s reads stream s from its start, in order, batch after batch
        assert rows[s].tolist() == list(range(100 + 16 * s, 100 + 16 * (s + 1)))
    for b in batches:
        assert torch.equal(b.targets[:, :-1], b.inputs[:, 1:])  # the next token
        assert b.lengths.tolist() == [b.inputs.shape[1]] * 3
    targets = torch.cat([b.targets.flatten() for b in batches]).tolist()
    assert sorted(targets) == list(range(101, 101 + 48))  # each once; the first never
    assert len(targets) == stream.num_targets == 48  # 49 % 3 = 1 token left out
    sampler.set_epoch(3, skip=1)  # no shuffling: every epoch the same order
    assert list(sampler) == [list(range(3 * c, 3 * c + 3)) for c in (1, 2, 3)]


def test_the_last_chunk_is_shorter_and_copies_share_the_tokens():
    one = TextStream(torch.arange(1, 24), bptt=5)  # 22 steps: 5 + 5 + 5 + 5 + 2
    assert [one[i].inputs.shape[1] for i in range(len(one))] == [5, 5, 5, 5, 2]
    two = one.with_streams(2)
    assert two is one.with_streams(2) and two.with_streams(1) is one
    assert two.tokens is one.tokens and (two.steps, len(two)) == (11, 6)
    last = two[len(two) - 1]  # stream 1 (tokens 12 ... 22), its last chunk
    assert (last.inputs.tolist(), last.targets.tolist()) == ([[22]], [[23]])
    with pytest.raises(ValueError, match="different lengths"):
        one.__getitems__([0, 4])
    with pytest.raises(ConfigError, match="too few"):
        one.with_streams(23)


@pytest.mark.parametrize("size", [4, 5])
def test_every_process_reads_the_same_rows_in_every_batch(size: int):
    stream = TextStream(torch.arange(1, 60), bptt=3).with_streams(size)
    ranks = [World(r, 2) for r in range(2)]
    train = [list(EpochBatches(len(stream), size, 0, w, contiguous=True)) for w in ranks]
    scored = [eval_batches(stream, size, w) for w in ranks]
    for per_rank in (train, scored):
        for r, batches in enumerate(per_rank):
            assert len(batches) == stream.chunks
            for c, batch in enumerate(batches):
                assert [i % size for i in batch] == list(range(size))[r::2]  # its streams
                assert {i // size for i in batch} == {c}  # chunk c, in order
        together = sorted(i for batches in per_rank for b in batches for i in b)
        assert together == list(range(len(stream)))  # every sample on one process
    with pytest.raises(ConfigError, match="at least one stream"):
        EpochBatches(len(stream), 1, 0, World(0, 2), contiguous=True)


def test_batched_cuts_only_a_contiguous_dataset():
    stream = TextStream(torch.arange(1, 30), bptt=4)
    assert batched(stream, 3) is stream.with_streams(3)
    other = object()
    assert batched(other, 3) is other


# -- reading and splitting text, tokens -----------------------------------------------


def test_a_file_is_documents_between_blank_lines_and_a_folder_one_per_file(tmp_path: Path):
    (tmp_path / "t.txt").write_bytes(TEXT.replace("\n", "\r\n").encode() + b"\xff")
    docs, replaced = read_documents(tmp_path / "t.txt")
    assert len(docs) == 6 and replaced == 1  # the "  " line is blank too
    assert docs[0] == "the cat sat on the mat.\nthe dog sat on the log."
    folder = tmp_path / "docs"
    (folder / "b").mkdir(parents=True)
    (folder / "b" / "2.txt").write_text("second\n\nstill second")
    (folder / "1.txt").write_text("first")
    (folder / "skip.md").write_text("not text")
    assert read_documents(folder) == (["first", "second\n\nstill second"], 0)


def test_documents_are_dealt_whole_or_with_too_few_cut_by_position():
    docs = [f"doc {i}" for i in range(20)]
    (train, val, test), by_position = split_documents(docs, [0.1, 0.2], seed=3)
    assert not by_position and (len(train), len(val), len(test)) == (14, 2, 4)
    assert sorted(train + val + test) == sorted(docs) and train == sorted(train, key=docs.index)
    assert split_documents(docs, [0.1, 0.2], seed=3)[0][1] == val  # seeded
    assert split_documents(docs, [0.1, 0.2], seed=4)[0][1] != val
    one = [" ".join(f"w{i}" for i in range(100))]
    (train, val, test), by_position = split_documents(one, [0.1, 0.1], seed=0)
    assert by_position
    words = [p.split() for p in (train[0], val[0], test[0])]
    assert [w for part in words for w in part] == one[0].split()  # between words, in order
    assert [len(w) for w in words] == [80, 10, 10]


def test_a_char_tokenizer_keeps_case_spaces_and_newlines_and_eos_joins_documents():
    tok = fit_tokenizer(["Ab a\nb"], "char", vocab_size=20, min_frequency=1, specials=[EOS])
    assert tok.token_to_id(EOS) == 2
    assert {"A", "a", "b", " ", "\n"} <= set(tok.get_vocab())
    ids = encode_documents(tok, ["Ab", "", "a b"])
    assert ids.tolist()[0] == ids.tolist()[3] == ids.tolist()[-1] == 2  # EOS around each
    assert decode(tok, ids.tolist()[1:3], "char") == "Ab"
    assert decode(tok, tok.encode("a\nAz").ids, "char") == "a\nA\ufffd"
    word = fit_tokenizer(["Ab a\nb"], "word", vocab_size=20, min_frequency=1, specials=[EOS])
    assert decode(word, word.encode("A b").ids, "word") == "a b"  # lowercased words
    cased = fit_tokenizer(["Ab a"], "word", vocab_size=20, min_frequency=1, lowercase=False)
    assert "Ab" in cased.get_vocab()


# -- the model and its carried state ----------------------------------------------------


def test_consecutive_chunks_equal_one_pass_over_their_concatenation():
    net = model(impl="loop", num_layers=2).double().eval()
    x = torch.randint(1, V, (3, 9))
    whole = net(x)
    net.reset_state()
    parts = torch.cat([net(x[:, :4]), net(x[:, 4:7]), net(x[:, 7:])], dim=1)
    torch.testing.assert_close(parts, whole, rtol=1e-12, atol=1e-12)
    net.reset_state()
    fresh = model(impl="loop", num_layers=2).double().eval()
    torch.testing.assert_close(net(x[:, 4:]), fresh(x[:, 4:]))


def test_switching_to_training_every_eval_and_another_batch_size_start_from_zeros():
    net = model(impl="loop").double().eval()
    x = torch.randint(1, V, (2, 5))
    fresh = net(x)
    assert not torch.allclose(net(x), fresh)  # carried on: another start
    net.train().eval()  # two switches
    torch.testing.assert_close(net(x), fresh)
    net(x)
    net.eval()  # already in eval: a new scoring pass all the same
    torch.testing.assert_close(net(x), fresh)
    torch.testing.assert_close(net(x[:1]), fresh[:1])  # one row: not the state's batch
    net.train()
    net(x)
    assert net.get_extra_state().shape == (2, 1, 2, 6)  # LSTM: h and c, (S, L, B, H)
    net.train()  # the trainer at every epoch start, or after a resume: no switch
    assert net.get_extra_state().numel() > 0


def test_no_gradient_reaches_the_previous_batch():
    net = model(impl="loop").double().train()
    x1, x2 = torch.randint(1, V, (2, 4)), torch.randint(1, V, (2, 4))
    net(x1).sum().backward()  # frees the first batch's graph
    start = net.get_extra_state()
    assert not start.requires_grad
    net.zero_grad()
    net(x2).square().sum().backward()  # would fail if the state led back into batch 1
    got = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    out, _ = net.rnn(net.embedding(x2), tuple(start))  # the same start, given by hand
    net.decoder(out).square().sum().backward()
    for name, p in net.named_parameters():
        torch.testing.assert_close(got[name], p.grad, msg=name)


def test_the_state_travels_in_the_state_dict_and_loads_with_weights_only(tmp_path: Path):
    net = model(impl="loop", cell="gru").double().eval()
    x = torch.randint(1, V, (2, 6))
    net(x[:, :3])
    torch.save(net.state_dict(), tmp_path / "m.pt")
    expected = net(x[:, 3:])
    extra = net.state_dict()["_extra_state"]
    assert isinstance(extra, torch.Tensor) and "_extra_state" not in dict(net.named_parameters())

    def loaded() -> LanguageModel:
        fresh = model(impl="loop", cell="gru").double()
        fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
        return fresh

    resumed = loaded()  # in train mode, as a resumed run's model, which stays in it
    torch.testing.assert_close(resumed(x[:, 3:]), expected)
    scored = loaded().eval()  # rnnzoo eval and predict: a new pass from zeros
    net.reset_state()
    torch.testing.assert_close(scored(x[:, 3:]), net(x[:, 3:]))


def test_tied_weights_share_the_embedding_and_project_when_sizes_differ():
    tied = model(tie_weights=True)  # hidden 6, embedding 5: a projection first
    assert tied.decoder.weight is tied.embedding.weight and tied.projection is not None
    assert tied.projection.in_features == 6 and tied.projection.out_features == 5
    same = model(tie_weights=True, hidden_size=5)
    assert same.decoder.weight is same.embedding.weight and same.projection is None
    untied = model()
    assert untied.projection is None and untied.decoder.weight is not untied.embedding.weight
    assert tied(torch.randint(1, V, (2, 3))).shape == (2, 3, V)


def test_an_adaptive_softmax_gives_the_targets_what_full_scoring_gives_them():
    net = model(impl="loop", adaptive_softmax=[4, 8], adaptive_div=2).double().eval()
    assert net.decoder is None and net.adaptive is not None
    x, y = torch.randint(1, V, (3, 5)), torch.randint(1, V, (3, 5))
    full = net(x)  # scoring: (B, T, V) log-probabilities
    assert full.shape == (3, 5, V)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(3, 5, dtype=torch.float64))
    net.reset_state()
    picked = net(x, targets=y)  # training: only the targets'
    assert isinstance(picked, TargetLogProbs) and picked.log_prob.shape == (3, 5)
    torch.testing.assert_close(picked.log_prob, full.gather(-1, y[..., None]).squeeze(-1))
    # the task's loss is the same mean cross-entropy either way
    task = LanguageModelTask.__new__(LanguageModelTask)
    batch = Batch(x, y, torch.full((3,), 5))
    torch.testing.assert_close(task.loss(picked, batch), task.loss(full, batch))
    # and gradients reach every part of it
    net.train()
    task.loss(net(x, targets=y), batch).backward()
    assert all(p.grad is not None for p in net.adaptive.parameters())


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"adaptive_softmax": [4, 8], "tie_weights": True}, "cannot be tied"),
        ({"adaptive_softmax": [8, 4]}, "must be increasing"),
        ({"adaptive_softmax": [4, V]}, "must be increasing"),
    ],
)
def test_adaptive_softmax_settings_it_cannot_build_are_config_errors(keys, message):
    with pytest.raises(ConfigError, match=message):
        model(**keys)


def test_bidirectional_is_a_config_error():
    raw = {"task": "language_model", "data": {"path": "x.txt"},
           "model": {"name": "language_model", "bidirectional": True}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"model\.bidirectional.*left to right"):
        parse_config(raw)


def test_sampling_repeats_with_a_seed_and_temperature_zero_is_greedy():
    net = model().eval()
    prompt = torch.tensor([2, 5, 7])

    def sample(seed: int, temperature: float = 1.0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return net.generate(prompt, 3, 12, temperature, gen)

    assert torch.equal(sample(0), sample(0)) and not torch.equal(sample(0), sample(1))
    greedy = sample(0, 0.0)
    assert torch.equal(greedy, sample(1, 0.0)) and (greedy != 0).all()
    seq = prompt.tolist()  # greedy = the argmax of the model's own scores, step by step
    for _ in range(12):
        net.reset_state()
        seq.append(int(net(torch.tensor([seq]))[0, -1, 1:].argmax()) + 1)
    assert greedy[0].tolist() == seq[3:]
    stop = seq[-1]
    stopped = net.generate(prompt, 2, 12, 0.0, stop=stop)
    first = seq[3:].index(stop) + 1
    assert stopped.tolist() == [seq[3 : 3 + first]] * 2  # up to the stop token, kept


# -- the task ---------------------------------------------------------------------------


def lm_data(path: Path, **kwargs) -> LanguageModelTask.Data:
    keys = {"path": str(path), "vocab_size": 40, "min_frequency": 1, "bptt": 5, **kwargs}
    return LanguageModelTask.Data(**keys)


def test_perplexity_is_exp_of_the_mean_cross_entropy_over_all_tokens(tmp_path: Path):
    (tmp_path / "t.txt").write_text(TEXT)
    data = lm_data(tmp_path / "t.txt", val_fraction=0.4, test_fraction=0, bptt=3)
    task = LanguageModelTask(data)
    task.prepare()
    assert not task.has_split("test")
    net = build_model(LanguageModel.Args(hidden_size=8, embedding_dim=4), task.io)
    val = task.dataset("val")
    for streams in (1, 2):
        got = evaluate(net, task, val, torch.device("cpu"), batch_size=streams)
        rows = val.with_streams(streams)
        steps = rows.steps
        ids = torch.stack([rows.tokens[s * steps : (s + 1) * steps + 1] for s in range(streams)])
        net.eval().reset_state()
        with torch.no_grad():  # every row in one pass: what carrying the state must give
            logits = net(ids[:, :-1].long())
        ce = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten().long())
        assert ids[:, 1:].numel() == rows.num_targets
        assert steps % 3  # a shorter last chunk: a mean of batch means would differ
        assert got["perplexity"] == pytest.approx(math.exp(ce), rel=1e-5)
        assert got["loss"] == pytest.approx(float(ce), rel=1e-5)
        assert got["bits_per_token"] == pytest.approx(float(ce) / math.log(2), rel=1e-5)
        assert "bits_per_char" not in got
        # in eval mode already, carrying the state of the pass above: scoring starts anew
        assert evaluate(net, task, val, torch.device("cpu"), batch_size=streams) == got


def test_one_document_is_cut_by_position_and_the_run_says_so(tmp_path: Path):
    (tmp_path / "one.txt").write_text(" ".join(["lorem ipsum dolor"] * 30))
    task = LanguageModelTask(lm_data(tmp_path / "one.txt"))
    task.prepare()
    assert all(task.has_split(s) for s in ("train", "val", "test"))
    assert any("cut by position" in note for note in task.notes)
    sizes = [len(task.dataset(s).tokens) for s in ("train", "val", "test")]
    assert sizes[0] > 6 * sizes[1] and sizes[1] > 0 and sizes[2] > 0


def test_val_and_test_paths_replace_the_shares(tmp_path: Path):
    (tmp_path / "t.txt").write_text(TEXT)
    (tmp_path / "v.txt").write_text("the dog\n\nthe cat")
    task = LanguageModelTask(lm_data(tmp_path / "t.txt", val_path=str(tmp_path / "v.txt"),
                                     test_fraction=0))  # fmt: skip
    task.prepare()
    assert task._documents() == {"train": read_documents(tmp_path / "t.txt")[0],
                                 "val": ["the dog", "the cat"]}  # fmt: skip


# -- IMDB: the unlabeled reviews and train's training part, never test ----------------

MARKER = "zanzibar"  # a word only a test review has


def imdb_archive(path: Path) -> Path:
    """Train: 12 pos and 12 neg reviews, three a movie; 6 unlabeled; test: the marker."""
    with tarfile.open(path, "w:gz") as tar:
        for polarity in ("pos", "neg"):
            for i in range(12):
                add(tar, f"aclImdb/train/{polarity}/{i}_5.txt", f"{polarity} review {i}".encode())
            urls = "".join(movie_url("train", polarity, i) + "\n" for i in range(12))
            add(tar, f"aclImdb/train/urls_{polarity}.txt", urls.encode())
            add(tar, f"aclImdb/test/{polarity}/0_5.txt", f"a {MARKER} film".encode())
        for i in range(6):
            add(tar, f"aclImdb/train/unsup/{i}_0.txt", f"unlabeled text {i}".encode())
    return path


def test_imdb_trains_on_unlabeled_and_the_training_part_never_on_test(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = imdb_archive(tmp_path / "aclImdb_v1.tar.gz")
    task = LanguageModelTask(lm_data(source, val_fraction=0.25))
    task.prepare()
    docs = task._documents()
    reviews = imdb.load_split(source, "train")
    train, val = imdb.train_val_split(reviews, 0.25, 0)  # whole movies, as task imdb's
    assert docs["val"] == [r.text for r in val] and len(val) == 6
    unlabeled = [f"unlabeled text {i}" for i in range(6)]
    assert docs["train"] == [r.text for r in train] + unlabeled
    assert not task.has_split("test") and any("whole movies" in n for n in task.notes)
    assert MARKER not in task.tokenizer.get_vocab()
    for split in ("train", "val"):
        text = decode(task.tokenizer, task.dataset(split).tokens.tolist(), "word")
        assert MARKER not in text and "[UNK]" not in text
    with pytest.raises(ConfigError, match="never read"):
        task.dataset("test")
    with pytest.raises(ConfigError, match="test_fraction"):
        LanguageModelTask(lm_data(source, test_fraction=0.1)).prepare()
    default = LanguageModelTask(lm_data(source))
    default.prepare()  # without val_fraction: the imdb task's 20 %
    assert len(default._documents()["val"]) == len(imdb.train_val_split(reviews, 0.2, 0)[1])


# -- end to end -------------------------------------------------------------------------


def write_config(tmp_path: Path, tokenizer: str, **data) -> Path:
    (tmp_path / "text.txt").write_text(TEXT * 3)
    raw = {
        "task": "language_model",
        "data": {"path": str(tmp_path / "text.txt"), "tokenizer": tokenizer, "vocab_size": 60,
                 "min_frequency": 1, "bptt": 8, **data},
        "model": {"name": "language_model", "cell": "lstm", "embedding_dim": 8,
                  "hidden_size": 8, "tie_weights": True},
        "train": {"epochs": 1, "batch_size": 3, "lr": 0.01, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs"), "name": tokenizer, "tensorboard": False},
    }  # fmt: skip
    path = tmp_path / f"{tokenizer}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_train_eval_predict_through_the_cli(tmp_path: Path, tokenizer: str):
    result = runner.invoke(app, ["train", "-c", str(write_config(tmp_path, tokenizer))])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / tokenizer
    assert (run / "tokenizer.json").is_file()
    assert "perplexity" in result.output
    result = runner.invoke(app, ["eval", str(run), "--split", "val"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["perplexity"] == pytest.approx(math.exp(scores["loss"]))
    assert ("bits_per_char" in scores) == (tokenizer == "char")
    summary = json.loads((run / "summary.json").read_text())
    assert scores["loss"] == pytest.approx(summary["val"]["loss"])  # eval = the trainer's

    ask = ["predict", str(run), "the cat", "--max-len", "20", "--seed", "0"]
    first, second = runner.invoke(app, ask), runner.invoke(app, ask)
    assert first.exit_code == 0, first.output
    assert first.output == second.output and first.output.startswith("the cat")
    other = runner.invoke(app, [*ask[:-1], "1"])
    assert other.output != first.output
    greedy = [runner.invoke(app, [*ask, "--temperature", "0", "--seed", s]) for s in "01"]
    assert greedy[0].exit_code == 0 and greedy[0].output == greedy[1].output
    result = runner.invoke(app, ["predict", str(run), "--samples", "2", "--max-len", "5"])
    assert result.exit_code == 0 and "--- sample 2/2 ---" in result.output
    (tmp_path / "prompts.csv").write_text("text\nthe cat\n")
    with unchanged(tmp_path):
        result = runner.invoke(app, ["predict", str(run), "--file", str(tmp_path / "prompts.csv")])
    assert_user_error(result, "prompts.csv", "not a table")


def test_an_adaptive_softmax_trains_scores_and_samples_through_the_cli(tmp_path: Path):
    config = write_config(tmp_path, "word")
    sets = ["--set", "model.tie_weights=false", "--set", "model.adaptive_softmax=[5, 15]"]
    result = runner.invoke(app, ["train", "-c", str(config), *sets])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "word"
    scores = json.loads(runner.invoke(app, ["eval", str(run), "--split", "val"]).output)
    summary = json.loads((run / "summary.json").read_text())
    assert scores["loss"] == pytest.approx(summary["val"]["loss"])
    train_loss = [json.loads(x)["train_loss"] for x in (run / "metrics.jsonl").open()]
    assert math.isfinite(train_loss[0]) and 0 < train_loss[0] < math.log(60) + 1
    ask = ["predict", str(run), "the cat", "--max-len", "10", "--seed", "0"]
    assert runner.invoke(app, ask).output == runner.invoke(app, ask).output


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path: Path):
    config = write_config(tmp_path, "word")
    (tmp_path / "empty.txt").write_text("\n  \n\n")
    cases = [
        (["--set", f"data.path={tmp_path / 'nope.txt'}"], ["data.path", "nope.txt"]),
        (["--set", f"data.path={tmp_path / 'empty.txt'}"], ["empty.txt", "no text"]),
        (["--set", "data.path=SET_ME"], ["data.path is not set"]),
        (["--set", "model.bidirectional=true"], ["model.bidirectional", "left to right"]),
        (["--set", "train.batch_size=1000"], ["train.batch_size", "too few"]),
    ]
    for sets, names in cases:
        with unchanged(tmp_path):
            result = runner.invoke(app, ["train", "-c", str(config), *sets])
        assert_user_error(result, *names)


def test_the_shipped_pipeline_pretrains_a_classifier_on_imdb(tmp_path: Path, monkeypatch):
    """imdb_lm then imdb_pretrained, tiny: the classifier starts from the language
    model's embedding and LSTM (matched by name and shape, the carried state left out)
    and reads its tokenizer."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = imdb_archive(tmp_path / "aclImdb_v1.tar.gz")
    tiny = [f"data.path={source}", "data.vocab_size=100", "data.min_frequency=1",
            "model.embedding_dim=8", "model.hidden_size=8", "train.batch_size=4",
            "train.max_minutes=null", "train.epochs=1", "train.device=cpu",
            "output.tensorboard=false"]  # fmt: skip
    lm = [*tiny, "data.bptt=5", "model.adaptive_softmax=[5, 10]"]  # a 19-token vocabulary
    cls = [*tiny, "data.max_len=16", "train.warmup_steps=2", "output.name=cls"]
    with contextlib.chdir(tmp_path):
        result = runner.invoke(app, ["train", "-c", "imdb_lm", *flags(lm)])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["train", "-c", "imdb_pretrained", *flags(cls)])
    assert result.exit_code == 0, result.output
    assert "init_from runs/imdb_lm: copied embedding.weight, rnn.*" in result.output
    runs = tmp_path / "runs"
    tokenizers = [(runs / r / "tokenizer.json").read_text() for r in ("imdb_lm", "cls")]
    assert tokenizers[0] == tokenizers[1]


def flags(settings: list[str]) -> list[str]:
    return [arg for item in settings for arg in ("--set", item)]
