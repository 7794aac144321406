"""Part-of-speech tagging on CoNLL-U: reader and writer, metrics, char encoder, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from test_bad_input import assert_user_error, invoke, unchanged

from rnnzoo.data import conllu
from rnnzoo.data.pos import Vocab
from rnnzoo.errors import DataError
from rnnzoo.evaluation import evaluate as evaluate_model
from rnnzoo.models import MODELS, build_model
from rnnzoo.tasks import TASKS, ModelIO

# Comments, a multiword token (3-4 "don't"), an empty node (2.1), a sentence without a
# final newline: the reader must tag the words and keep every other line.
SAMPLE = (
    "# sent_id = 1\n"
    "# text = I don't know\n"
    "1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_\n"
    "2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_\n"
    "2.1\tgot\tget\tVERB\tVBD\t_\t_\t_\t2:x\t_\n"
    "3-4\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_\n"
    "4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No\n"
    "\n"
    "# sent_id = 2\n"
    "1\tRun\trun\tVERB\tVB\t_\t0\troot\t_\t_\n"
    "2\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\t_"
)


def tiny_treebank(n: int, seed: int) -> str:
    """``n`` generated sentences of a toy language: determiners, nouns, verbs, where a
    word's tag also shows in its ending (-s verbs, -ly adverbs), so spelling helps."""
    g = torch.Generator().manual_seed(seed)
    nouns, verbs, dets = ["dog", "cat", "man", "boat"], ["runs", "sees", "eats"], ["the", "a"]
    out = []
    for i in range(n):
        words = [("The", "DET"), (nouns[i % 4], "NOUN"), (verbs[i % 3], "VERB")]
        if int(torch.randint(2, (1,), generator=g)):
            words += [(dets[i % 2], "DET"), (nouns[(i + 1) % 4], "NOUN")]
        words.append(("quickly" if i % 2 else "slowly", "ADV"))
        lines = [f"# sent_id = {i}"]
        for k, (w, t) in enumerate(words, 1):
            lines.append(f"{k}\t{w}\t{w.lower()}\t{t}\t{t[:2]}\t_\t0\tdep\t_\t_")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out) + "\n"


UNSEEN = (
    "# sent_id = unseen\n1\tThe\tthe\tDET\tDE\t_\t0\tdep\t_\t_\n"
    "2\tfrog\tfrog\tNOUN\tNO\t_\t0\tdep\t_\t_\n3\tleaps\tleap\tVERB\tVE\t_\t0\tdep\t_\t_\n\n"
)


def write_treebank(folder: Path) -> None:
    (folder / "train.conllu").write_text(tiny_treebank(48, 0))
    (folder / "dev.conllu").write_text(tiny_treebank(12, 1) + UNSEEN)  # + words train lacks


def pos_config(folder: Path, **model: object) -> dict:
    return {
        "task": "pos_tagging",
        "data": {"path": str(folder / "train.conllu"), "val_path": str(folder / "dev.conllu"),
                 "test_path": str(folder / "dev.conllu"), "bucket": 1},
        "model": {"name": "sequence_tagger", "hidden_size": 8, "embedding_dim": 8,
                  "bidirectional": True, "char_encoder": "cnn", "char_embedding_dim": 4,
                  "char_hidden_size": 6, "unk_rate": 0.2, **model},
        "train": {"epochs": 2, "batch_size": 8, "device": "cpu", "lr": 0.01},
        "output": {"dir": str(folder / "runs"), "name": "pos", "tensorboard": False},
    }  # fmt: skip


# -- reader and writer ----------------------------------------------------------------


def test_reader_tags_words_and_keeps_comments_multiwords_and_empty_nodes_aside(tmp_path):
    doc = conllu.parse(SAMPLE, tmp_path / "s.conllu")
    first, second = doc.sentences
    assert first.forms == ["I", "do", "n't", "know"]
    assert first.tags == ["PRON", "AUX", "PART", "VERB"]
    assert second.forms == ["Run", "!"] and second.tags == ["VERB", "PUNCT"]
    assert conllu.parse(SAMPLE, tmp_path / "s.conllu", "xpos").sentences[0].tags[2] == "RB"
    assert [doc.lines[i].split("\t")[0] for i in first.word_lines] == ["1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("5\tbad\tline", "expected 10 tab-separated columns, found 3"),
        ("x\tw\t_\tX\t_\t_\t_\t_\t_\t_", "bad ID 'x'"),
        ("7\tw\t_\tX\t_\t_\t_\t_\t_\t_", "word ID 7 where 4 was expected"),
    ],
)
def test_a_malformed_line_names_file_and_line(tmp_path, line, expected):
    text = SAMPLE.replace("4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No", line)
    with pytest.raises(DataError) as err:
        conllu.parse(text, tmp_path / "bad.conllu")
    assert str(err.value).startswith(f"{tmp_path / 'bad.conllu'}:8: {expected}")


@pytest.mark.parametrize(
    "variant", ["lf", "crlf", "no final newline", "trailing blank lines", "latin-1 byte"]
)
def test_a_file_read_and_written_unchanged_is_byte_identical(tmp_path, variant):
    data = (SAMPLE + "\n").encode()
    if variant == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif variant == "no final newline":
        data = data.rstrip(b"\n")
    elif variant == "trailing blank lines":
        data += b"\n\n"
    elif variant == "latin-1 byte":
        data = data.replace(b"Run", b"R\xfcn")
    path = tmp_path / "in.conllu"
    path.write_bytes(data)
    doc = conllu.read(path)
    same = doc.filled("upos", [s.tags for s in doc.sentences])
    assert same.encode("utf-8", errors="surrogateescape") == data


def test_filling_a_column_changes_only_that_column_of_word_lines(tmp_path):
    doc = conllu.parse(SAMPLE.replace("\n", "\r\n"), tmp_path / "s.conllu")
    filled = doc.filled("upos", [["A", "B", "C", "D"], ["E", "F"]])
    before, after = doc.text().split("\r\n"), filled.split("\r\n")
    assert len(before) == len(after)
    words = {i for s in doc.sentences for i in s.word_lines}
    changed = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
    assert set(changed) == words
    for i in changed:
        b, a = before[i].split("\t"), after[i].split("\t")
        assert b[:3] + b[4:] == a[:3] + a[4:]
    assert [after[i].split("\t")[3] for i in sorted(words)] == list("ABCDEF")


# -- vocabulary, metrics, model ----------------------------------------------------------


def test_vocab_lowercases_words_keeps_case_in_chars_and_flags_unseen_forms():
    vocab = Vocab.fit([["The", "dog", "the"], ["Dog"]], [["D", "N", "D"], ["N"]], 2)
    assert vocab.words == ["dog", "the"]  # both seen twice once lowercased
    x = vocab.encode_words(["The", "the", "cat"], max_word_len=20)
    assert x[0, 0] == x[1, 0] and x[2, 0] == 1  # same word id; "cat" unknown
    assert x[0, 2] != x[1, 2]  # "T" and "t" are different characters
    y = vocab.encode_targets(["dog", "DOG", "cat"], ["N", "N", "V"])
    assert y[:, 1].tolist() == [0, 1, 1]  # unseen as written
    assert y[2, 0] == len(vocab.tags)  # a tag train never had


class AlwaysTag(torch.nn.Module):
    """A stand-in tagger that gives every word the same tag."""

    def __init__(self, tag: int, num_tags: int) -> None:
        super().__init__()
        self.tag, self.num_tags = tag, num_tags

    def forward(self, inputs, lengths=None, targets=None):
        scores = torch.zeros(*inputs.shape[:2], self.num_tags)
        scores[..., self.tag] = 1.0
        return scores


def test_unseen_accuracy_is_counted_over_tokens_across_uneven_batches(tmp_path):
    write_treebank(tmp_path)
    dev = tiny_treebank(12, 1).replace("\tboat\t", "\tboats\t").replace("\tslowly\t", "\tSlowly\t")
    (tmp_path / "dev.conllu").write_text(dev)
    config = pos_config(tmp_path)
    task = TASKS.get("pos_tagging")(TASKS.get("pos_tagging").Data(**config["data"]))
    task.prepare()
    assert task.vocab is not None
    model = AlwaysTag(task.vocab.tag_ids["ADV"], len(task.vocab.tags))  # right on "Slowly"
    data = task.dataset("val")
    whole = data.__getitems__(list(range(len(data))))
    tags, unseen = whole.targets[..., 0], whole.targets[..., 1].bool()
    right = (tags == task.vocab.tag_ids["ADV"]) & unseen
    expected = float(right.sum() / unseen.sum())  # by hand: over all unseen tokens at once
    assert 0 < expected < 1
    for size in (5, 7):  # batches of unequal sizes and unseen counts
        got = evaluate_model(model, task, data, torch.device("cpu"), size)
        assert got["unseen_accuracy"] == pytest.approx(expected)


@pytest.mark.parametrize("encoder", ["cnn", "lstm"])
def test_an_unseen_word_is_tagged_from_its_spelling(encoder):
    io = ModelIO(0, 3, vocab_size=10, output="per_step", char_vocab_size=30)
    args = MODELS.get("sequence_tagger").Args(
        name="sequence_tagger", hidden_size=4, embedding_dim=4, char_encoder=encoder,
        char_embedding_dim=4, char_hidden_size=5,
    )  # fmt: skip
    model = build_model(args, io).eval()
    # two unknown words (id 1) spelled differently, in the same context
    x = torch.tensor([[[5, 2, 7, 8, 3, 0], [1, 2, 9, 10, 11, 3]]])
    y = x.clone()
    y[0, 1, 2:5] = torch.tensor([12, 13, 14])
    lengths = torch.tensor([2])
    out_x, out_y = model(x, lengths), model(y, lengths)
    assert not torch.allclose(out_x[0, 1], out_y[0, 1])
    # and every parameter learns
    model.train()
    model(x, lengths).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_unk_rate_hides_words_in_training_only():
    io = ModelIO(0, 3, vocab_size=10, output="per_step", char_vocab_size=30)
    args = MODELS.get("sequence_tagger").Args(
        name="sequence_tagger", hidden_size=4, embedding_dim=4, char_encoder="cnn",
        unk_rate=0.99,
    )  # fmt: skip
    model = build_model(args, io)
    torch.manual_seed(0)  # p = 0.99 each: without a seed, 2 % of runs would keep a word
    x = torch.tensor([[[5, 2, 7, 3], [6, 2, 8, 3], [0, 0, 0, 0]]])  # 2 words, 1 padding
    looked_up: list[torch.Tensor] = []
    model.embedding[0].register_forward_hook(lambda m, i, o: looked_up.append(i[0]))
    model.train()
    model(x, torch.tensor([2]))
    model.eval()
    model(x, torch.tensor([2]))
    assert looked_up[0].tolist() == [[1, 1, 0]]  # p = 0.99: unknown; padding stays 0
    assert looked_up[1].tolist() == [[5, 6, 0]]


# -- through the CLI ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny pos_tagging run: treebank, config and run folder in one folder."""
    root = tmp_path_factory.mktemp("pos")
    write_treebank(root)
    (root / "pos.yaml").write_text(yaml.safe_dump(pos_config(root)))
    result = invoke("train", "-c", root / "pos.yaml")
    assert result.exit_code == 0, result.output
    return root


def test_train_eval_predict_through_the_cli(trained: Path):
    run = trained / "runs" / "pos"
    summary = json.loads((run / "summary.json").read_text())
    for key in ("accuracy", "unseen_accuracy", "sentence_accuracy"):
        assert 0 <= summary["val"][key] <= 1
    result = invoke("eval", run, "--split", "val")
    assert result.exit_code == 0, result.output
    assert "unseen_accuracy" in json.loads((run / "eval_val.json").read_text())
    result = invoke("predict", run, "The old man the boat .")
    assert result.exit_code == 0, result.output
    pairs = result.output.split()
    assert [p.rsplit("/", 1)[0] for p in pairs] == ["The", "old", "man", "the", "boat", "."]
    tags = set(json.loads((run / "pos_vocab.json").read_text())["tags"])
    assert all(p.rsplit("/", 1)[1] in tags for p in pairs)


def test_predict_a_conllu_file_fills_only_the_column(trained: Path, tmp_path: Path):
    run = trained / "runs" / "pos"
    source = tmp_path / "in.conllu"
    source.write_bytes(SAMPLE.replace("\n", "\r\n").encode())
    out = tmp_path / "tagged.conllu"
    result = invoke("predict", run, "--file", source, "--out", out)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "6 words" in result.output
    before, after = source.read_bytes().split(b"\r\n"), out.read_bytes().split(b"\r\n")
    assert len(before) == len(after)
    for b, a in zip(before, after, strict=True):
        b_fields, a_fields = b.split(b"\t"), a.split(b"\t")
        if b_fields[0].isdigit():
            assert b_fields[:3] + b_fields[4:] == a_fields[:3] + a_fields[4:]
        else:
            assert a == b
    printed = invoke("predict", run, "--file", source)  # no --out: to stdout
    assert printed.exit_code == 0, printed.output
    assert printed.output.splitlines() == out.read_bytes().decode().splitlines()


def test_predict_a_text_file_tags_each_line(trained: Path, tmp_path: Path):
    run = trained / "runs" / "pos"
    (tmp_path / "s.txt").write_text("The dog runs\n\nA cat sees quickly\n")
    result = invoke("predict", run, "--file", tmp_path / "s.txt")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [len(line.split()) for line in lines] == [3, 4]


def test_bad_input_through_the_cli(trained: Path, tmp_path: Path):
    run = trained / "runs" / "pos"
    bad = tmp_path / "bad.conllu"
    bad.write_text(SAMPLE.replace("3\tn't", "3\tn't\tonly"))
    with unchanged(tmp_path), unchanged(run):
        result = invoke("predict", run, "--file", bad, "--out", tmp_path / "o.conllu")
        assert_user_error(result, f"{bad}:7", "columns")
    good = tmp_path / "good.conllu"
    good.write_text(SAMPLE)
    with unchanged(tmp_path):
        assert_user_error(invoke("predict", run, "--file", good, "--out", good), "input file")
        assert_user_error(invoke("predict", run, "dog", "--out", tmp_path / "o"), "--out")
    # training on a malformed treebank, or one not there: no run folder
    (tmp_path / "train.conllu").write_text(SAMPLE.replace("2\tdo\t", "2\tdo\t\t"))
    (tmp_path / "dev.conllu").write_text(SAMPLE)
    config = pos_config(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with unchanged(tmp_path):
        result = invoke("train", "-c", tmp_path / "c.yaml")
        assert_user_error(result, f"{tmp_path / 'train.conllu'}:4")
        missing = f"data.val_path={tmp_path / 'nope.conllu'}"
        fine = f"data.path={tmp_path / 'dev.conllu'}"
        result = invoke("train", "-c", tmp_path / "c.yaml", "--set", fine, "--set", missing)
        assert_user_error(result, "data.val_path", "nope.conllu")
        result = invoke("train", "-c", tmp_path / "c.yaml", "--set", "data.column=lemma")
        assert_user_error(result, "data.column")


def test_char_encoder_needs_a_task_that_spells_words(tmp_path: Path):
    config = {
        "task": "tagging",
        "model": {"name": "sequence_tagger", "char_encoder": "cnn"},
        "output": {"dir": str(tmp_path / "runs")},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with unchanged(tmp_path):
        assert_user_error(invoke("train", "-c", tmp_path / "c.yaml"), "model.char_encoder")
