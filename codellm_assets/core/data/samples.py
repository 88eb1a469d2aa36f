"""Sample git repositories built from installed Python packages: the default repos on a fresh clone.

``ensure_sample_repo`` turns the source of an installed package (``click``, ``typer``…) into a real git
repository on branch ``main`` with some history: the first commit holds about half the files, a few of
them in an earlier, shorter form; each later commit adds more files and completes one of the shortened
ones. HEAD therefore equals the installed source exactly. Identity, dates and git configuration are
fixed, so the same package version always yields the same commit shas.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = {".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib"}
_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z: commit i is dated i days later
_DAY = 86_400


class SampleError(RuntimeError):
    """A sample repository that cannot be built; the message says what to install or change."""


def package_sources(package: str) -> dict[str, bytes]:
    """The installed source files of ``package``: repo-relative path (``src/<pkg>/…``) -> bytes."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise SampleError(f"Python package '{package}' is not installed in {sys.executable}; install it "
                          f"(`pip install {package}`) or remove `seed_from_package: {package}` "
                          f"from codellm.yaml")
    top = package.split(".")[-1]
    files: dict[str, bytes] = {}
    if spec.submodule_search_locations:  # a package directory (namespace packages: every location)
        for location in spec.submodule_search_locations:
            root = Path(location)
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
                for fname in sorted(filenames):
                    path = Path(dirpath) / fname
                    if path.suffix not in _SKIP_SUFFIXES and path.is_file() and not path.is_symlink():
                        files[f"src/{top}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    elif spec.origin and Path(spec.origin).suffix == ".py":  # a single-module distribution
        files[f"src/{Path(spec.origin).name}"] = Path(spec.origin).read_bytes()
    if not files:
        raise SampleError(f"Python package '{package}' has no source files to build a sample repo from "
                          f"(found at {spec.origin}); pick a pure-Python package for `seed_from_package`")
    return dict(sorted(files.items()))


def _package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package.split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _git_env(when: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    stamp = f"@{when} +0000"
    env.update(GIT_AUTHOR_NAME="codellm sample", GIT_AUTHOR_EMAIL="sample@codellm.invalid",
               GIT_COMMITTER_NAME="codellm sample", GIT_COMMITTER_EMAIL="sample@codellm.invalid",
               GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp,
               # The user's and the system's git config (autocrlf, signing, hooks, templates) would change
               # the shas or the behaviour: ignore both.
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    return env


def _git(repo: Path, when: int, *args: str) -> None:
    proc = subprocess.run(["git", "-C", str(repo), *args], check=False, capture_output=True, text=True,
                          env=_git_env(when))
    if proc.returncode != 0:
        raise SampleError(f"git {' '.join(args[:2])} failed while building a sample repo in {repo}: "
                          f"{proc.stderr.strip()}")


def _shortened(content: bytes) -> bytes:
    """An 'earlier version' of a file: its first 60% of lines."""
    lines = content.splitlines(keepends=True)
    return b"".join(lines[: max(1, math.ceil(len(lines) * 0.6))])


def plan_history(files: dict[str, bytes], commits: int) -> list[dict[str, bytes]]:
    """The content written by each commit: path -> bytes (cumulative state is the union in order)."""
    paths = list(files)
    if commits <= 1 or len(paths) < 2:
        return [dict(files)]
    half = math.ceil(len(paths) / 2)
    first, rest = paths[:half], paths[half:]
    later = commits - 1
    # Files worth shortening: those with some lines; spread over the first half, one per later commit.
    candidates = [p for p in first if files[p].count(b"\n") >= 20]
    step = max(1, len(candidates) // later) if candidates else 1
    modified = candidates[::step][:later]
    plan = [{p: (_shortened(files[p]) if p in modified else files[p]) for p in first}]
    chunk = math.ceil(len(rest) / later) if rest else 0
    for i in range(later):
        step_files = {p: files[p] for p in rest[i * chunk:(i + 1) * chunk]}
        if i < len(modified):
            step_files[modified[i]] = files[modified[i]]
        plan.append(step_files)
    return plan


def _build(repo: Path, package: str, plan: list[dict[str, bytes]]) -> None:
    version = _package_version(package)
    _git(repo, _EPOCH, "init", "--quiet", "--template=", "--initial-branch=main")
    readme = (f"# {package} (sample)\n\nA sample repository built by codellm from the installed "
              f"Python package `{package}` {version}, with a made-up history.\n").encode()
    plan = [{"README.md": readme, **plan[0]}, *plan[1:]]
    for i, step in enumerate(plan):
        for rel, content in step.items():
            target = repo / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o644)  # the mode is part of the tree sha
        when = _EPOCH + i * _DAY
        _git(repo, when, "add", "--all")
        _git(repo, when, "-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "--allow-empty",
             "-m", f"{package} {version}: sample commit {i + 1} of {len(plan)}")


def ensure_sample_repo(dest: str | os.PathLike[str], package: str, commits: int = 3) -> Path:
    """Build (if ``dest`` does not exist) a git repo on branch ``main`` from installed ``package``'s source.

    Idempotent: an existing ``dest`` is returned untouched. Atomic: built in a temp folder next to
    ``dest`` and renamed into place, so an interrupted build never leaves a half repo behind.
    """
    dest = Path(dest).expanduser().absolute()
    if dest.exists():
        return dest
    if commits < 1:
        raise SampleError(f"commits must be >= 1 to build a sample repo at {dest}; got {commits}")
    plan = plan_history(package_sources(package), commits)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.build-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; a repo folder should look like any other
    try:
        _build(tmp, package, plan)
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.exists():  # another process built it first: keep theirs
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
