"""IMDB end to end on a tiny archive the test builds in the official layout."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnzoo.cli import app
from rnnzoo.data import imdb
from rnnzoo.data.sampling import EpochBatches
from rnnzoo.data.text import encode, fit_tokenizer, load_tokenizer, save_tokenizer

runner = CliRunner()
GOOD = ["a great wonderful film", "loved it, superb acting", "brilliant and moving<br />a joy"]
BAD = ["an awful terrible mess", "boring, dull and bad", "the worst plot<br /><br />ever"]


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def movie_url(split: str, polarity: str, i: int) -> str:
    """The fixture's movie of review i: three reviews a movie, pos and neg apart, and
    (as in the real files) the test split's movies are not train's."""
    code = {"train": 1, "test": 2, "unsup": 3}[split] * 10 + {"pos": 1, "neg": 2, "u": 3}[polarity]
    return f"http://www.imdb.com/title/tt{code}{i // 3:04d}/usercomments"


def make_archive(
    path: Path, splits=("train", "test"), n: int = 12, urls: bool = True, unsup: int = 0
) -> Path:
    """An archive in aclImdb's layout, with the oddities real files have; ``urls``: the
    url files that give each review's movie; ``unsup``: unlabeled reviews in train."""
    with tarfile.open(path, "w:gz") as tar:
        add(tar, "aclImdb/README", b"fixture")
        for split in splits:
            for i in range(n):
                add(tar, f"aclImdb/{split}/pos/{i}_{7 + i % 4}.txt", GOOD[i % 3].encode())
                add(tar, f"aclImdb/{split}/neg/{i}_{1 + i % 4}.txt", BAD[i % 3].encode())
            add(tar, f"aclImdb/{split}/pos/{n}_10.txt", b"caf\xe9 great \xff\xfe wonderful")
            add(tar, f"aclImdb/{split}/neg/{n}_1.txt", b"")  # an empty review
            for polarity in ("pos", "neg") if urls else ():
                lines = "".join(movie_url(split, polarity, i) + "\n" for i in range(n + 1))
                add(tar, f"aclImdb/{split}/urls_{polarity}.txt", lines.encode())
        for i in range(unsup if "train" in splits else 0):
            add(tar, f"aclImdb/train/unsup/{i}_0.txt", f"unlabeled review {i}".encode())
        if unsup and "train" in splits:
            lines = "".join(movie_url("unsup", "u", i) + "\n" for i in range(unsup))
            add(tar, "aclImdb/train/urls_unsup.txt", lines.encode())
        # members that must never be read: a link out of the tree, a path escape
        link = tarfile.TarInfo("aclImdb/train/pos/99_9.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        add(tar, "../aclImdb/train/pos/98_9.txt", b"outside")
    return path


@pytest.fixture
def archive(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # keep the user's clean
    return make_archive(tmp_path / "aclImdb_v1.tar.gz")


@pytest.fixture
def config(tmp_path: Path, archive: Path) -> Path:
    raw = {
        "task": "imdb",
        "data": {"path": str(archive), "val_fraction": 0.25, "vocab_size": 100,
                 "min_frequency": 1, "max_len": 16, "bucket": 2},
        "model": {"name": "sequence_classifier", "cell": "gru", "embedding_dim": 8,
                  "hidden_size": 8, "pooling": "concat"},
        "train": {"epochs": 2, "batch_size": 4, "lr": 0.01, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs"), "name": "imdb", "tensorboard": False},
    }  # fmt: skip
    path = tmp_path / "imdb.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_reading_the_official_layout(archive: Path):
    reviews = imdb.read_split(archive, "train")
    assert len(reviews) == 26  # 13 pos, 13 neg; the link and the escape are not read
    assert sum(r.label for r in reviews) == 13
    assert {r.rating for r in reviews if r.label == 1} <= set(range(7, 11))
    odd = next(r for r in reviews if r.label == 1 and r.id == 12)
    assert "great" in odd.text and "\ufffd" in odd.text  # invalid UTF-8 replaced
    assert next(r for r in reviews if r.label == 0 and r.id == 12).text == ""
    assert all("<br" not in r.text for r in reviews)
    assert all("outside" not in r.text for r in reviews)


def test_folder_and_cache_give_the_same_reviews(archive: Path, tmp_path: Path):
    with tarfile.open(archive) as tar:  # the data filter refuses the hostile members
        safe = [m for m in tar if m.isfile() and not m.name.startswith("..")]
        tar.extractall(tmp_path / "x", members=safe, filter="data")
    from_folder = imdb.read_split(tmp_path / "x" / "aclImdb", "train")
    from_tar = imdb.load_split(archive, "train")
    assert from_folder == from_tar
    assert imdb.load_split(archive, "train") == from_tar  # second time: from the cache
    assert list((tmp_path / "cache" / "rnnzoo" / "parsed").iterdir())


def test_validation_split_is_seeded_and_disjoint(archive: Path):
    reviews = imdb.read_split(archive, "train")
    train, val = imdb.train_val_split(reviews, 0.25, seed=3, by_movie=False)
    again, _ = imdb.train_val_split(reviews, 0.25, seed=3, by_movie=False)
    assert train == again and len(val) == round(26 * 0.25)
    assert not set(train) & set(val) and len(train) + len(val) == 26


def test_each_review_knows_its_movie_from_the_url_files(archive: Path):
    reviews = imdb.read_split(archive, "train")
    assert imdb.grouped(reviews)
    for r in reviews:  # line i of urls_<polarity>.txt is review i's movie page
        assert r.movie == f"tt1{1 if r.label == 1 else 2}{r.id // 3:04d}"
    assert not {r.movie for r in reviews} & {r.movie for r in imdb.read_split(archive, "test")}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_validation_holds_whole_movies(tmp_path: Path, monkeypatch, seed: int):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    reviews = imdb.read_split(make_archive(tmp_path / "a.tar.gz", n=40), "train")
    train, val = imdb.train_val_split(reviews, 0.2, seed=seed)
    assert not {r.movie for r in train} & {r.movie for r in val}  # no movie on both sides
    assert sorted(train + val, key=lambda r: (r.label, r.id)) == reviews
    # whole movies of three reviews: the share is reached within one movie's reviews
    assert round(82 * 0.2) <= len(val) < round(82 * 0.2) + 3
    assert imdb.train_val_split(reviews, 0.2, seed=seed) == (train, val)  # seeded
    _, other = imdb.train_val_split(reviews, 0.2, seed=seed + 10)
    assert {r.movie for r in other} != {r.movie for r in val}
    # a random split of the same reviews does put movies on both sides
    rtrain, rval = imdb.train_val_split(reviews, 0.2, seed=seed, by_movie=False)
    assert {r.movie for r in rtrain} & {r.movie for r in rval}


def test_unlabeled_reviews_are_their_own_split(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = make_archive(tmp_path / "a.tar.gz", unsup=5)
    unsup = imdb.load_split(source, "unsup")
    assert [r.text for r in unsup] == [f"unlabeled review {i}" for i in range(5)]
    assert {r.label for r in unsup} == {-1} and unsup[2].movie == "tt330000"
    assert len(imdb.read_split(source, "train")) == 26  # the labelled split leaves them out
    assert imdb.load_split(source, "unsup") == unsup  # from the cache
    no_unsup = make_archive(tmp_path / "b.tar.gz")
    with pytest.raises(imdb.DataError, match="no aclImdb/train/unsup files"):
        imdb.read_split(no_unsup, "unsup")


def test_the_run_says_how_validation_was_drawn(config: Path, tmp_path: Path):
    result = runner.invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "validation: 7 of 26 training reviews, 3 whole movies (none of them in training)" in (
        result.output
    )
    run = json.loads((tmp_path / "runs" / "imdb" / "run.json").read_text())
    assert any("whole movies" in note for note in run["sessions"][0]["notes"])
    # a copy without the url files: a random split, and the run says why
    raw = yaml.safe_load(config.read_text())
    raw["data"]["path"] = str(make_archive(tmp_path / "no_urls.tar.gz", urls=False))
    raw["output"]["name"] = "no_urls"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "drawn at random, not by movie" in result.output and "urls_pos.txt" in result.output


def test_tokenizer_round_trip_and_truncation(tmp_path: Path):
    tok = fit_tokenizer(GOOD + BAD, "word", vocab_size=100, min_frequency=1)
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    texts = [*GOOD, "never seen words", ""]
    for a, b in zip(encode(tok, texts, 50), encode(again, texts, 50), strict=True):
        assert torch.equal(a, b)
    ids = encode(tok, ["a great wonderful film loved it"], 50)[0].tolist()
    assert encode(tok, ["a great wonderful film loved it"], 4, "head")[0].tolist() == ids[:4]
    assert encode(tok, ["a great wonderful film loved it"], 4, "tail")[0].tolist() == ids[-4:]
    both = encode(tok, ["a great wonderful film loved it"], 4, "head_tail")[0].tolist()
    assert both == ids[:2] + ids[-2:]
    assert encode(tok, [""], 4)[0].tolist() == [1]  # [UNK], never an empty sequence
    assert fit_tokenizer(GOOD + BAD, "bpe", vocab_size=60, min_frequency=1).get_vocab_size() > 2


def test_bucketed_batches_cover_every_example_once():
    lengths = [int(x) for x in torch.randint(1, 100, (103,))]
    sampler = EpochBatches(103, 8, seed=0, lengths=lengths, bucket=4)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen = [i for batch in sampler for i in batch]
        assert sorted(seen) == list(range(103))
        # within a batch the lengths are close: sorted inside chunks of 32
        spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in sampler]
        assert sum(spans) / len(spans) < 30
        # and the batches are shuffled after the sort: unshuffled, each chunk's 4 batches
        # would come longest first, every epoch (a curriculum nobody asked for)
        longest = [max(lengths[i] for i in b) for b in sampler]
        chunks = [longest[c : c + 4] for c in range(0, 12, 4)]
        assert not all(c == sorted(c, reverse=True) for c in chunks), longest
        epochs.append(list(sampler))
    assert epochs[0] != epochs[1] != epochs[2]  # a new order every epoch


def test_train_eval_predict_through_the_cli(config: Path, tmp_path: Path):
    result = runner.invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "imdb"
    assert (run_dir / "tokenizer.json").is_file() and (run_dir / "eval_test.json").is_file()
    result = runner.invoke(app, ["eval", str(run_dir), "--split", "val"])
    assert result.exit_code == 0, result.output
    assert '"accuracy"' in result.output
    result = runner.invoke(app, ["predict", str(run_dir), "what a great wonderful film"])
    assert result.exit_code == 0, result.output
    assert result.output.split()[0] in ("positive", "negative") and "p=" in result.output
    texts = tmp_path / "reviews.txt"
    texts.write_text("great\nawful\n\n")
    result = runner.invoke(app, ["predict", str(run_dir), "--file", str(texts)])
    assert result.exit_code == 0 and len(result.output.strip().splitlines()) == 2
    # texts of different lengths are padded into one batch: each answer is its own alone
    reviews = ["what a great wonderful film, loved it", "awful"]
    texts.write_text("\n".join(reviews) + "\n")
    together = runner.invoke(app, ["predict", str(run_dir), "--file", str(texts)])
    alone = [runner.invoke(app, ["predict", str(run_dir), r]).output for r in reviews]
    assert together.output.splitlines() == [a.strip() for a in alone]
    # another copy of the data holding only the test split
    only_test = make_archive(tmp_path / "test_only.tar.gz", splits=("test",))
    result = runner.invoke(
        app, ["eval", str(run_dir), "--split", "test", "--data-path", str(only_test)]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "IMDB data not found at"),
        ("corrupt", "is not a readable IMDB archive"),
        ("no_train", "holds no 'train' split"),
    ],
)
def test_bad_data_is_a_clear_error_with_exit_2(config: Path, tmp_path: Path, setup, message):
    raw = yaml.safe_load(config.read_text())
    if setup == "missing":
        raw["data"]["path"] = str(tmp_path / "nowhere.tar.gz")
    elif setup == "corrupt":
        bad = tmp_path / "corrupt.tar.gz"
        bad.write_bytes(b"\x1f\x8b\x08 this is not gzip data at all")
        raw["data"]["path"] = str(bad)
    else:
        raw["data"]["path"] = str(make_archive(tmp_path / "t.tar.gz", splits=("test",)))
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_download_is_verified(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = make_archive(tmp_path / "served.tar.gz")
    target = tmp_path / "cache" / "rnnzoo" / imdb.ARCHIVE
    with pytest.raises(imdb.DataError, match=r"has MD5 .* expected 0+: it is damaged"):
        imdb.fetch(source.as_uri(), target, "0" * 32)
    assert not target.exists() and not list(target.parent.glob("*.part"))
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    imdb.fetch(source.as_uri(), target, md5)
    assert target.read_bytes() == source.read_bytes()
    assert imdb.find_source(None) == target  # found in the cache next time
    with pytest.raises(imdb.DataError, match=r"could not download .* put it at"):
        imdb.fetch((tmp_path / "absent.tar.gz").as_uri(), tmp_path / "x.tar.gz", md5)


def test_no_local_copy_and_no_download_says_where_to_put_it(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("RNNZOO_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(imdb.DataError, match=f"put {imdb.ARCHIVE} there or set data.path"):
        imdb.find_source(None, download=False)


def test_training_on_a_train_only_archive_skips_the_test_score(config: Path, tmp_path: Path):
    raw = yaml.safe_load(config.read_text())
    raw["data"]["path"] = str(make_archive(tmp_path / "train_only.tar.gz", splits=("train",)))
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "no test split in this copy of the data: not scored" in result.output
    assert not (tmp_path / "runs" / "imdb" / "eval_test.json").exists()


def test_checksum_mismatch_from_the_cli_exits_2(config: Path, tmp_path: Path, monkeypatch):
    """No data.path and no local copy: the download runs, and a bad archive is refused."""
    served = make_archive(tmp_path / "served.tar.gz")
    monkeypatch.setattr(imdb, "URL", served.as_uri())
    monkeypatch.setattr(imdb, "MD5", "0" * 32)
    monkeypatch.setenv("RNNZOO_DATA_DIR", str(tmp_path / "empty"))
    raw = yaml.safe_load(config.read_text())
    del raw["data"]["path"]
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 2, result.output
    assert "expected 00000000" in result.output and "put it at" in result.output
