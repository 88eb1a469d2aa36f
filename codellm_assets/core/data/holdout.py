"""Which files are held out of training: by time (the default) or by hash.

A **time split** holds out the files the newest commits touched: a benchmark built from them asks about
code written after everything the model was trained on, so it cannot have been memorized. A file's date
is the committer date of the last commit that changed it (:func:`file_commit_dates`, from ``git log``).
The cut is either a date (``since``: files changed at or after it are held out) or a fraction (the newest
``fraction`` of files; files of one date fall on the same side, so one commit is never split in two).

A **hash split** (``sha256(repo:path)``) is stable across commits and does not need history; it is the
option for corpora without dates.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from codellm_assets.core.data.git_scan import RepoError, _git

SPLITS = ("time", "hash")


def file_commit_dates(repo_path: str | os.PathLike[str], commit: str = "HEAD") -> dict[str, int]:
    """Path -> committer date (unix seconds) of the newest commit reachable from ``commit`` that changed it.
    Only paths that exist in ``commit``'s tree are returned (a deleted file has no date to hold out)."""
    repo = Path(repo_path)
    alive = set(_git(repo, "ls-tree", "-r", "-z", "--name-only", commit).stdout.decode("utf-8", "replace")
                .split("\0")) - {""}
    out = _git(repo, "log", "-z", "--format=%x01%ct", "--name-only", "--no-renames", commit).stdout
    dates: dict[str, int] = {}
    for block in out.decode("utf-8", "replace").split("\x01")[1:]:
        head, _, names = block.partition("\n")
        try:
            stamp = int(head.strip("\0\n"))
        except ValueError as e:
            raise RepoError(f"unexpected git log output in {repo}: {head[:60]!r}") from e
        for name in names.split("\0"):
            name = name.strip("\n")
            if name in alive and name not in dates:   # log is newest first: the first date seen is the last change
                dates[name] = stamp
    return dates


def _hash_unit(repo: str, path: str) -> float:
    return int(hashlib.sha256(f"{repo}:{path}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_holdout(records: Sequence[Mapping[str, Any]], *, split: str = "time", fraction: float = 0.1,
                  dates: Mapping[tuple[str, str], int] | None = None,
                  since: datetime | int | None = None) -> tuple[list[Mapping], list[Mapping]]:
    """(train, holdout) of ``records`` (dicts with ``repo`` and ``path``).

    ``split="time"`` needs ``dates``: (repo, path) -> unix seconds; a record without a date is a clear
    error (train on an unknown-age file and the holdout may leak). ``since`` (a datetime or unix seconds)
    overrides ``fraction``. ``split="hash"`` holds out about ``fraction`` of the files by a stable hash.
    """
    if split not in SPLITS:
        raise ValueError(f"holdout split '{split}' is not one of {SPLITS}: set dataset.holdout_split")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction {fraction} must be in [0, 1): set dataset.holdout_fraction")
    if split == "hash":
        held = [_hash_unit(r["repo"], r["path"]) < fraction for r in records]
    else:
        held = _time_mask(records, dates, fraction, since)
    train = [r for r, h in zip(records, held, strict=True) if not h]
    holdout = [r for r, h in zip(records, held, strict=True) if h]
    return train, holdout


def _time_mask(records: Sequence[Mapping], dates: Mapping[tuple[str, str], int] | None, fraction: float,
               since: datetime | int | None) -> list[bool]:
    if dates is None:
        raise ValueError("a time split needs the files' commit dates (holdout.file_commit_dates per repo); "
                         "pass dates= or use split='hash'")
    missing = [f"{r['repo']}:{r['path']}" for r in records if (r["repo"], r["path"]) not in dates]
    if missing:
        raise ValueError(f"no commit date for {len(missing)} file(s), e.g. {missing[:3]}: scan the dates at "
                         f"the same commit as the records, or use split='hash'")
    stamps = [dates[(r["repo"], r["path"])] for r in records]
    if since is not None:
        cut = int(since.timestamp()) if isinstance(since, datetime) else int(since)
    elif fraction == 0.0 or not stamps:
        return [False] * len(records)
    else:
        n_hold = max(1, math.floor(len(stamps) * fraction))
        cut = sorted(stamps, reverse=True)[n_hold - 1]
    return [s >= cut for s in stamps]


def dates_for(repos: Iterable[tuple[str, str | os.PathLike[str], str]]) -> dict[tuple[str, str], int]:
    """(repo name, path, commit) triples -> the (repo, path) -> date mapping :func:`split_holdout` takes."""
    return {(name, p): d for name, path, commit in repos for p, d in file_commit_dates(path, commit).items()}


def corpus_dates(records: Iterable[Mapping[str, Any]],
                 git_dir: Callable[[str], str | os.PathLike[str]]) -> dict[tuple[str, str], int]:
    """(repo, path) -> last commit date of each file of ``records`` (dicts with repo and commit), read from
    ``git_dir(repo)`` at each (repo, commit) the records come from; a path on several branches takes its
    newest date (held out on one branch, held out on all)."""
    dates: dict[tuple[str, str], int] = {}
    for repo, commit in sorted({(str(r["repo"]), str(r["commit"])) for r in records}):
        for path, stamp in file_commit_dates(git_dir(repo), commit).items():
            dates[(repo, path)] = max(stamp, dates.get((repo, path), stamp))
    return dates
