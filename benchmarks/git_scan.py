"""repo_snapshots: full scan vs. incremental re-scan vs. a naive working-tree walk, on one real git repo.

The repo is built in a temp dir from ``--files`` .py files of the installed site-packages (one commit),
plus a 200 MB sparse file to show that an oversize blob costs nothing. Then ``--changed`` files are
modified and committed, and the re-scan with the previous snapshot reads only those blobs.

    .venv/bin/python benchmarks/git_scan.py [--files 3000] [--changed 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import site
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

from codellm_assets.core.data.git_scan import previous_from_records, scan_branch
from codellm_assets.core.data.languages import language_from_path

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=GIT_ENV)


def build_repo(repo: Path, n_files: int) -> list[Path]:
    git(repo, "init", "-q", "-b", "main")
    written = []
    root = Path(site.getsitepackages()[0])
    for src in sorted(root.rglob("*.py")):
        if len(written) >= n_files:
            break
        dest = repo / src.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        written.append(dest)
    with open(repo / "dump.sql", "wb") as f:
        f.truncate(200 * 2**20)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    return written


def naive_walk(repo: Path, max_bytes: int) -> int:
    """What a working-tree reader does: walk, open, read, decode every file (follows symlinks!)."""
    kept = 0
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            path = Path(dirpath) / name
            if language_from_path(name) is None:
                continue
            data = path.read_bytes()
            if len(data) <= max_bytes and b"\0" not in data:
                try:
                    data.decode("utf-8")
                    kept += 1
                except UnicodeDecodeError:
                    pass
    return kept


def timed(fn):
    tracemalloc.start()
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return value, seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--changed", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        t0 = time.perf_counter()
        files = build_repo(repo, args.files)
        print(f"built a repo of {len(files)} .py files + a 200 MB sparse dump.sql in {time.perf_counter() - t0:.1f} s")

        full, full_s, full_mb = timed(lambda: scan_branch(repo, "main", repo_name="bench"))
        for path in files[:: max(1, len(files) // args.changed)][: args.changed]:
            path.write_text(path.read_text() + "\n# changed\n")
        git(repo, "commit", "-qam", "change some files")
        previous = previous_from_records(full.records)
        inc, inc_s, inc_mb = timed(lambda: scan_branch(repo, "main", repo_name="bench", previous=previous))
        walked, walk_s, walk_mb = timed(lambda: naive_walk(repo, 1_000_000))

        mb = sum(r["bytes"] for r in full.records) / 1e6
        print(f"{'reader':<34}{'files kept':>11}{'blobs read':>11}{'seconds':>9}{'peak MB':>9}")
        print(f"{'scan_branch, full':<34}{len(full.records):>11}{full.blobs_read:>11}{full_s:>9.2f}{full_mb:>9.1f}")
        print(f"{'scan_branch, incremental':<34}{len(inc.records):>11}{inc.blobs_read:>11}{inc_s:>9.2f}{inc_mb:>9.1f}")
        print(f"{'baseline: working-tree walk':<34}{walked:>11}{'all':>11}{walk_s:>9.2f}{walk_mb:>9.1f}")
        print(f"full scan: {mb / full_s:.0f} MB/s of kept text; incremental re-read {inc.blobs_read} of "
              f"{len(inc.records)} files, {full_s / inc_s:.1f}x faster; skipped: {dict(full.skipped)}")


if __name__ == "__main__":
    main()
