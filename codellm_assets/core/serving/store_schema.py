"""Tables of the metrics and feedback store (see :mod:`codellm_assets.core.serving.store`) and its engine. Portable
SQLAlchemy Core types only, so the same schema works on SQLite and Postgres. Times are naive UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

FEEDBACK_EVENTS = ("view", "accept", "reject", "modify")
ERROR_STATUSES = ("error", "timeout")     # "cancelled" (client went away) is not the model's fault

metadata = sa.MetaData()


def utcnow() -> datetime:
    """Now as the store keeps times: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


requests_t = sa.Table(
    "requests", metadata,
    sa.Column("id", sa.String(80), primary_key=True),          # the completion id (cmpl-… / chatcmpl-…)
    sa.Column("time", sa.DateTime, nullable=False, index=True),
    sa.Column("user", sa.String(200)),
    sa.Column("team", sa.String(200)),
    sa.Column("slot", sa.String(20), index=True),
    sa.Column("version", sa.String(200), index=True),
    sa.Column("latency_s", sa.Float),
    sa.Column("prompt_tokens", sa.Integer),
    sa.Column("completion_tokens", sa.Integer),
    sa.Column("status", sa.String(20)),
    sa.Column("error", sa.Text),
    sa.Column("prompt_hash", sa.String(64)),
    sa.Column("prompt", sa.Text),                 # as rendered for the model (FIM markup, chat role tags)
    sa.Column("completion", sa.Text),
    sa.Column("raw_prefix", sa.Text),             # what the IDE sent (completions): the source text before ...
    sa.Column("raw_suffix", sa.Text),             # ... and after the cursor; None for chat
    sa.Column("risk_score", sa.Float),
    sa.Column("buggy", sa.Boolean),
    sa.Column("syntax_error", sa.Boolean),
    sa.Column("protocol", sa.String(20)),        # openai | tabby | llamacpp | fim: the client's wire shape
    sa.Column("repo", sa.String(200)),           # the configured repo the request named (repository context)
    sa.Column("context_chunks", sa.Integer),      # retrieved snippets put before the prompt
    sa.Column("context_tokens", sa.Integer),
)

# Columns added after a table first shipped: created on an existing database by create_tables.
ADDED_COLUMNS = {"requests": ("protocol", "raw_prefix", "raw_suffix", "repo", "context_chunks",
                              "context_tokens"), "feedback": ("api_key",),
                 "api_keys": ("claims_users",)}

feedback_t = sa.Table(
    "feedback", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("completion_id", sa.String(80), nullable=False, index=True),
    sa.Column("time", sa.DateTime, nullable=False, index=True),
    sa.Column("event", sa.String(20), nullable=False),
    sa.Column("final_code", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("elapsed_ms", sa.Integer),
    sa.Column("survival_after_s", sa.Integer),
    sa.Column("survival_fraction", sa.Float),
    sa.Column("user", sa.String(200)),
    sa.Column("version", sa.String(200), index=True),
    sa.Column("api_key", sa.String(20), index=True),   # prefix of the key that posted it (per-key caps)
)

routes_t = sa.Table(
    "routes", metadata,
    sa.Column("slot", sa.String(20), primary_key=True),
    sa.Column("version", sa.String(200), nullable=False),
    sa.Column("base_model_path", sa.Text, nullable=False),
    sa.Column("adapter_path", sa.Text),
    sa.Column("weight", sa.Integer, nullable=False),
    sa.Column("endpoint", sa.Text),
    sa.Column("updated", sa.DateTime),
)

api_keys_t = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("team", sa.String(200), nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("prefix", sa.String(20), nullable=False, index=True),
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    # A key that may name the developer it sends for (a team proxy/IDE plugin server): `user` then counts.
    sa.Column("claims_users", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("revoked", sa.DateTime),
)

shadow_t = sa.Table(
    "shadow_results", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("completion_id", sa.String(80), nullable=False, index=True),
    sa.Column("time", sa.DateTime, nullable=False),
    sa.Column("served_version", sa.String(200)),
    sa.Column("shadow_version", sa.String(200)),
    sa.Column("served_latency_s", sa.Float),
    sa.Column("shadow_latency_s", sa.Float),
    sa.Column("latency_diff_s", sa.Float),
    sa.Column("similarity", sa.Float),
    sa.Column("risk_score", sa.Float),
    sa.Column("buggy", sa.Boolean),
    sa.Column("error", sa.Text),
)


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite files get WAL mode, NORMAL sync and a 30 s busy timeout."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    db = url.split("///", 1)[1] if "///" in url else ""
    if db in ("", ":memory:"):
        engine = sa.create_engine("sqlite://", poolclass=StaticPool,
                                  connect_args={"check_same_thread": False})
    else:
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")      # readers never wait for the writer
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def create_tables(engine: sa.Engine) -> None:
    for attempt in range(3):            # two processes creating the same file at once: one loses, retries
        try:
            metadata.create_all(engine)
            _add_missing_columns(engine)
            return
        except sa.exc.OperationalError:
            if attempt == 2:
                raise
            time.sleep(0.2)


def _add_missing_columns(engine: sa.Engine) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for ADDED_COLUMNS an older database lacks (create_all never alters)."""
    inspector = sa.inspect(engine)
    for table_name, columns in ADDED_COLUMNS.items():
        have = {c["name"] for c in inspector.get_columns(table_name)}
        table = metadata.tables[table_name]
        for name in columns:
            if name not in have:
                ddl = f"ALTER TABLE {table_name} ADD COLUMN {_column_ddl(table.c[name], engine.dialect)}"
                with engine.begin() as conn:
                    conn.execute(sa.text(ddl))


def _column_ddl(col: sa.Column, dialect: Any) -> str:
    ddl = f"{col.name} {col.type.compile(dialect)}"
    if col.server_default is not None:      # NOT NULL needs the default for the rows already there
        ddl += f" DEFAULT {col.server_default.arg.compile(dialect=dialect)}"
        if not col.nullable:
            ddl += " NOT NULL"
    return ddl
