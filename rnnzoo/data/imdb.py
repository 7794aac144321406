"""The Large Movie Review Dataset (Maas et al., ACL 2011): find, fetch, verify, read, split.

A source may be the official ``aclImdb_v1.tar.gz``, an extracted ``aclImdb/`` folder, or
a tarball in the same layout holding only some splits. Without a path the loader looks
in ``$RNNZOO_DATA_DIR``, then in the cache folder (``~/.cache/rnnzoo``), then downloads
the official archive, verifies its MD5 and keeps it in the cache.

Archives are read member by member and never extracted, so a hostile archive cannot
write anywhere: only regular files named ``aclImdb/<split>/<pos|neg>/<id>_<rating>.txt``
are read at all.
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
from collections.abc import Iterator
from pathlib import Path

import torch

from rnnzoo.errors import DataError

URL = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
ARCHIVE = "aclImdb_v1.tar.gz"
SPLITS = ("train", "test")  # what the source holds; "val" is carved out of train
_MEMBER = re.compile(r"^(?:\./)?aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")


@dataclasses.dataclass(frozen=True)
class Review:
    """One review: its text (decoded, markup removed), label (pos 1, neg 0), stars 1-10."""

    text: str
    label: int
    rating: int
    id: int


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
    """Every review of ``split`` ("train" or "test") in ``source``, in a fixed order."""
    if split not in SPLITS:
        raise DataError(f"IMDB has no split {split!r} in its files; valid: {', '.join(SPLITS)}")
    reviews = sorted(_read(source, split), key=lambda r: (r.label, r.id))
    if not reviews:
        raise DataError(
            f"{source} holds no {split!r} split (no aclImdb/{split}/pos or neg "
            "files); give a copy of the data that has it"
        )
    return reviews


def clean(raw: bytes) -> str:
    """Bytes of a review to text: invalid UTF-8 replaced, HTML line breaks to spaces."""
    text = raw.decode("utf-8", errors="replace")
    return re.sub(r"<br\s*/?>", " ", text, flags=re.IGNORECASE).strip()


def _read(source: Path, split: str) -> Iterator[Review]:
    if source.is_dir():
        root = source if source.name == "aclImdb" else source / "aclImdb"
        for path in sorted((root / split).glob("*/*.txt")):
            review = _review(f"aclImdb/{split}/{path.parent.name}/{path.name}", path.read_bytes())
            if review is not None:
                yield review
        return
    try:
        with tarfile.open(source, "r:*") as archive:
            for member in archive:
                match = _MEMBER.match(member.name)
                if not member.isfile() or match is None or match.group(1) != split:
                    continue  # links, folders, other splits: never touched
                f = archive.extractfile(member)
                if f is not None:
                    review = _review(member.name, f.read())
                    if review is not None:
                        yield review
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as err:
        raise DataError(
            f"{source} is not a readable IMDB archive ({err}); download it again "
            "or give an extracted aclImdb/ folder"
        ) from None


def _review(name: str, raw: bytes) -> Review | None:
    match = _MEMBER.match(name)
    if match is None:
        return None
    _, polarity, review_id, rating = match.groups()
    return Review(clean(raw), 1 if polarity == "pos" else 0, int(rating), int(review_id))


def load_split(source: Path, split: str, use_cache: bool = True) -> list[Review]:
    """``read_split`` with a parsed copy kept in the cache folder, keyed by the source's
    path, size and modification time, so the second load skips decompression."""
    stat = source.stat()
    key = hashlib.sha1(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{split}".encode())
    cached = cache_dir() / "parsed" / f"imdb-{split}-{key.hexdigest()[:16]}.json.gz"
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


def train_val_split(
    reviews: list[Review], val_fraction: float, seed: int
) -> tuple[list[Review], list[Review]]:
    """A seeded split of the training reviews: (train, val)."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(reviews), generator=gen).tolist()
    n_val = round(len(reviews) * val_fraction)
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    return [reviews[i] for i in train], [reviews[i] for i in val]
