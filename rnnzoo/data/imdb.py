"""The Large Movie Review Dataset (Maas et al., ACL 2011): find, fetch, verify, read, split.

A source may be the official ``aclImdb_v1.tar.gz``, an extracted ``aclImdb/`` folder, or
a tarball in the same layout holding only some splits. Without a path the loader looks
in ``$RNNZOO_DATA_DIR``, then in the cache folder (``~/.cache/rnnzoo``), then downloads
the official archive, verifies its MD5 and keeps it in the cache.

Archives are read member by member and never extracted, so a hostile archive cannot
write anywhere: only regular files named ``aclImdb/<split>/<pos|neg|unsup>/<id>_<rating>.txt``
and ``aclImdb/<split>/urls_<pos|neg|unsup>.txt`` are read at all.

Each review knows its movie where the source has the url files (line i of
``urls_pos.txt`` is the IMDB page of the movie of ``pos/i_*.txt``). IMDB's train and test
splits hold disjoint movies, and reviews of one movie share names and words, so the
validation split is grouped by movie (``train_val_split``): a random 20 % of the reviews
would share movies with the training part and flatter every setting chosen on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import re
import tarfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import torch

from rnnzoo.errors import DataError

URL = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
ARCHIVE = "aclImdb_v1.tar.gz"
SPLITS = ("train", "test", "unsup")  # what the source holds; "val" is carved out of train
_MEMBER = re.compile(r"^(?:\./)?aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")
_URLS = re.compile(r"^(?:\./)?aclImdb/(train|test)/urls_(pos|neg|unsup)\.txt$")
CACHE_VERSION = 2  # bump when a parsed review gains a field: older caches are rebuilt


@dataclasses.dataclass(frozen=True)
class Review:
    """One review: its text (decoded, markup removed), label (pos 1, neg 0, unlabeled
    -1), stars 1-10 (0 unlabeled), and its movie (the IMDB title id from the url files,
    "" where the source has none)."""

    text: str
    label: int
    rating: int
    id: int
    movie: str = ""


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rnnzoo"


def find_source(
    path: Path | None, download: bool = True, url: str | None = None, md5: str | None = None
) -> Path:
    """The archive or folder to read: ``path`` if given, else a local copy, else download."""
    if path is not None:
        if not path.exists():
            raise DataError(
                f"IMDB data not found at {path}: give the official {ARCHIVE}, "
                "an extracted aclImdb/ folder, or a tarball in the same layout"
            )
        return path
    places = [Path(d) for d in (os.environ.get("RNNZOO_DATA_DIR"), cache_dir()) if d]
    for place in places:
        for candidate in (place / ARCHIVE, place / "aclImdb"):
            if candidate.exists():
                return candidate
    target = cache_dir() / ARCHIVE
    if not download:
        raise DataError(
            f"no IMDB data in {', '.join(map(str, places))}; put {ARCHIVE} there or set data.path"
        )
    fetch(url or URL, target, md5 or MD5)
    return target


def fetch(url: str, target: Path, md5: str) -> None:
    """Download ``url`` to ``target`` with a progress bar, keeping it only if the MD5 matches."""
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.md5()
    where = f"download {url} yourself and put it at {target} (or set data.path)"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {ARCHIVE}") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise DataError(f"could not download the IMDB archive ({err}); {where}") from None
    if digest.hexdigest() != md5:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"the downloaded IMDB archive has MD5 {digest.hexdigest()}, expected "
            f"{md5}: it is damaged or not the official file; {where}"
        )
    partial.replace(target)


def read_split(source: Path, split: str) -> list[Review]:
    """Every review of ``split`` in ``source``, in a fixed order: "train" or "test" (the
    labelled reviews), or "unsup" (the 50,000 unlabeled ones, ``train/unsup``)."""
    if split not in SPLITS:
        raise DataError(f"IMDB has no split {split!r} in its files; valid: {', '.join(SPLITS)}")
    found, urls = _read(source, split)
    reviews = sorted(found, key=lambda r: (r.label, r.id))
    if not reviews:
        where = "train/unsup" if split == "unsup" else f"{split}/pos or neg"
        raise DataError(
            f"{source} holds no {split!r} split (no aclImdb/{where} files); "
            "give a copy of the data that has it"
        )
    return [dataclasses.replace(r, movie=_movie(urls, r)) for r in reviews]


def _movie(urls: dict[str, list[str]], review: Review) -> str:
    """The review's movie: the title id in line ``id`` of its url file, else ""."""
    lines = urls.get({1: "pos", 0: "neg", -1: "unsup"}[review.label], [])
    if review.id >= len(lines):
        return ""
    url = lines[review.id].strip()
    match = re.search(r"/title/(tt\d+)", url)
    return match.group(1) if match else url


def _parts(split: str) -> tuple[str, tuple[str, ...]]:
    """The folder of ``split`` in the archive and the subfolders that hold it."""
    return ("train", ("unsup",)) if split == "unsup" else (split, ("pos", "neg"))


def clean(raw: bytes) -> str:
    """Bytes of a review to text: invalid UTF-8 replaced, HTML line breaks to spaces."""
    text = raw.decode("utf-8", errors="replace")
    return re.sub(r"<br\s*/?>", " ", text, flags=re.IGNORECASE).strip()


def _read(source: Path, split: str) -> tuple[list[Review], dict[str, list[str]]]:
    """The reviews of ``split`` and the lines of its url files, by polarity."""
    folder, kinds = _parts(split)
    reviews: list[Review] = []
    urls: dict[str, list[str]] = {}

    def take(name: str, read: Callable[[], bytes]) -> None:
        if (match := _MEMBER.match(name) or _URLS.match(name)) is None:
            return  # not a review, not a url file: never read
        if match.group(1) != folder or match.group(2) not in kinds:
            return  # another split
        if match.re is _URLS:
            urls[match.group(2)] = read().decode("utf-8", errors="replace").splitlines()
        elif (review := _review(name, read())) is not None:
            reviews.append(review)

    if source.is_dir():
        root = source if source.name == "aclImdb" else source / "aclImdb"
        for path in sorted((root / folder).glob("urls_*.txt")):
            if path.is_file():
                take(f"aclImdb/{folder}/{path.name}", path.read_bytes)
        for kind in kinds:
            for path in sorted((root / folder / kind).glob("*.txt")):
                if path.is_file():
                    take(f"aclImdb/{folder}/{kind}/{path.name}", path.read_bytes)
        return reviews, urls
    try:
        with tarfile.open(source, "r:*") as archive:
            for member in archive:
                if not member.isfile():
                    continue  # links, folders: never touched
                f = archive.extractfile(member)
                if f is not None:
                    take(member.name, f.read)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as err:
        raise DataError(
            f"{source} is not a readable IMDB archive ({err}); download it again "
            "or give an extracted aclImdb/ folder"
        ) from None
    return reviews, urls


def _review(name: str, raw: bytes) -> Review | None:
    match = _MEMBER.match(name)
    if match is None:
        return None
    _, polarity, review_id, rating = match.groups()
    label = {"pos": 1, "neg": 0, "unsup": -1}[polarity]
    return Review(clean(raw), label, int(rating), int(review_id))


def load_split(source: Path, split: str, use_cache: bool = True) -> list[Review]:
    """``read_split`` with a parsed copy kept in the cache folder, keyed by the source's
    path, size and modification time, so the second load skips decompression."""
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{split}|{CACHE_VERSION}"
    digest = hashlib.sha1(key.encode())
    cached = cache_dir() / "parsed" / f"imdb-{split}-{digest.hexdigest()[:16]}.json.gz"
    if use_cache and cached.is_file():
        try:
            rows = json.loads(gzip.decompress(cached.read_bytes()))
            return [Review(*row) for row in rows]
        except (OSError, ValueError, TypeError):
            cached.unlink(missing_ok=True)  # a damaged cache entry is rebuilt
    reviews = read_split(source, split)
    if use_cache:
        rows = [dataclasses.astuple(r) for r in reviews]
        tmp = cached.with_name(cached.name + f".{os.getpid()}.tmp")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(gzip.compress(json.dumps(rows).encode(), compresslevel=1))
            tmp.replace(cached)
        except OSError as err:  # the cache only saves time: go on without it
            warnings.warn(f"not caching the parsed reviews in {cached.parent}: {err}", stacklevel=2)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return reviews


def grouped(reviews: list[Review]) -> bool:
    """Whether every review knows its movie, so that a split can be grouped by movie."""
    return bool(reviews) and all(r.movie for r in reviews)


def train_val_split(
    reviews: list[Review], val_fraction: float, seed: int, by_movie: bool = True
) -> tuple[list[Review], list[Review]]:
    """A seeded split of the training reviews: (train, val), each in ``reviews``' order.

    ``by_movie`` (where every review knows its movie, see ``grouped``): whole movies, in
    a seeded random order, go to validation until it holds ``val_fraction`` of the
    reviews, so no movie is on both sides. Otherwise single reviews are drawn."""
    gen = torch.Generator().manual_seed(seed)
    n_val = round(len(reviews) * val_fraction)
    if by_movie and grouped(reviews):
        movies = sorted({r.movie for r in reviews})
        held: set[str] = set()
        count = dict.fromkeys(movies, 0)
        for r in reviews:
            count[r.movie] += 1
        taken = 0
        for i in torch.randperm(len(movies), generator=gen).tolist():
            if taken >= n_val:
                break
            held.add(movies[i])
            taken += count[movies[i]]
        in_val = [r.movie in held for r in reviews]
    else:
        chosen = set(torch.randperm(len(reviews), generator=gen)[:n_val].tolist())
        in_val = [i in chosen for i in range(len(reviews))]
    train = [r for r, v in zip(reviews, in_val, strict=True) if not v]
    val = [r for r, v in zip(reviews, in_val, strict=True) if v]
    return train, val
