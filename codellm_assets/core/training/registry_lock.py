"""One lock around every registry read-modify-write (registrations, alias moves).

MLflow aliases have no compare-and-set, so two promotions at once would both "win". What serializes them:

* ``sqlite:///path/mlflow.db`` (embedded default): ``fcntl.flock`` on ``path/mlflow.db.lock`` — processes
  and threads on this host (each acquisition opens its own file description, so threads exclude each other).
* ``lock_url="postgresql://..."``: a session-level ``pg_advisory_lock`` in that database (e.g. MLflow's
  or Dagster's Postgres) — serializes across hosts, for an MLflow server in production.
* ``lock_url="/some/path.lock"``: flock on that file (a shared filesystem that supports flock).
* any other tracking URI without ``lock_url``: flock on a per-URI file under ``~/.cache/codellm`` — this
  host only, with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


class RegistryLockTimeout(TimeoutError):
    """Another process held the registry lock for longer than the timeout."""


def lock_target(tracking_uri: str, lock_url: str | None = None) -> str:
    """Where the lock lives: a postgresql:// URL or a lock-file path."""
    if lock_url:
        return lock_url
    if tracking_uri.startswith("sqlite:///"):
        return tracking_uri[len("sqlite:///") :] + ".lock"
    if tracking_uri.startswith(("postgresql:", "postgresql+")):
        return tracking_uri  # MLflow's own database can hold the advisory lock
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        root = Path(tracking_uri.removeprefix("file://").removeprefix("file:"))
        return str(root / ".codellm-registry.lock")
    log.warning(
        "registry lock for %s is a local file: it serializes alias moves on this host only; set "
        "registry.lock_url to a postgresql:// URL when several hosts promote models",
        tracking_uri,
    )
    digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return str(Path.home() / ".cache" / "codellm" / f"registry-{digest}.lock")


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RegistryLockTimeout(
                        f"registry lock {path} still held after {timeout_s:.0f} s; "
                        "another registration or promotion is running"
                    ) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _with_installed_driver(url: str) -> str:
    """``postgresql://`` means psycopg (v3) to SQLAlchemy 2.1; use psycopg2 when only that is installed."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if (
        scheme in ("postgresql", "postgres")
        and importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2") is not None
    ):
        return f"postgresql+psycopg2{sep}{rest}"
    return url


@contextlib.contextmanager
def _postgres_lock(url: str, timeout_s: float) -> Iterator[None]:
    import sqlalchemy as sa

    key = int.from_bytes(hashlib.sha256(b"codellm-registry").digest()[:8], "big", signed=True)
    engine = sa.create_engine(_with_installed_driver(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SET lock_timeout = :ms"), {"ms": f"{int(timeout_s * 1000)}ms"})
            try:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            except sa.exc.OperationalError as e:
                raise RegistryLockTimeout(
                    f"registry advisory lock in {engine.url!r} not granted within {timeout_s:.0f} s: {e}"
                ) from None
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        engine.dispose()


@contextlib.contextmanager
def registry_lock(tracking_uri: str, lock_url: str | None = None, timeout_s: float = 120.0) -> Iterator[None]:
    """Hold the registry lock for ``tracking_uri`` (see the module doc for where it lives)."""
    target = lock_target(tracking_uri, lock_url)
    if target.startswith(("postgresql:", "postgresql+", "postgres:")):
        with _postgres_lock(target, timeout_s):
            yield
    elif "://" in target:
        raise ValueError(f"registry.lock_url {target!r}: use a lock-file path or a postgresql:// URL")
    else:
        with _file_lock(Path(target), timeout_s):
            yield
