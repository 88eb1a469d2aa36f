"""Dagster resources: settings, storage (Parquet/JSON, atomic), MLflow tracking, the metrics store.

Everything a resource needs comes from `codellm.yaml` through `SettingsResource`, so the same
definitions run on a laptop (SQLite, local files) and on Kubernetes (Postgres, object store):
configuration, never a fork in the code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from codellm_assets.core.fsutil import atomic_write, atomic_write_bytes
from codellm_assets.settings import Settings, load_settings


class SettingsResource(dg.ConfigurableResource):
    """The typed settings; `config_path` empty means `$CODELLM_CONFIG` or the project's codellm.yaml."""

    config_path: str = ""

    @cached_property
    def _settings(self) -> Settings:
        return load_settings(self.config_path or None)

    def get(self) -> Settings:
        return self._settings


def atomic_write_parquet(df: pl.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: df.write_parquet(tmp, compression="zstd"))


def asset_storage_path(data_dir: Path, key: dg.AssetKey, partition: str | None, suffix: str) -> Path:
    """Where the IO manager keeps an asset (partition): `<data>/<asset>/<partition>.parquet` or
    `<data>/<asset>.json`."""
    base = Path(data_dir).joinpath(*key.path)
    return base / f"{partition}{suffix}" if partition is not None else base.with_suffix(suffix)


class CodellmIOManager(dg.ConfigurableIOManager):
    """Polars DataFrames as Parquet, dicts as JSON, one file per asset (and per partition); an unpartitioned
    input annotated ``pl.LazyFrame`` is loaded as ``pl.scan_parquet``.

    Loading a partitioned upstream into an unpartitioned asset ALWAYS yields a dict
    {partition_key: value}, whatever the number of partitions (Dagster's default IO manager
    passes a bare value for one partition and a dict for several: a trap we don't want).
    """

    settings: SettingsResource

    def _base(self) -> Path:
        return self.settings.get().data_dir

    def _path(self, key: dg.AssetKey, partition: str | None, suffix: str) -> Path:
        return asset_storage_path(self._base(), key, partition, suffix)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        partition = context.partition_key if context.has_partition_key else None
        if isinstance(obj, pl.DataFrame):
            path = self._path(context.asset_key, partition, ".parquet")
            atomic_write_parquet(obj, path)
        else:
            path = self._path(context.asset_key, partition, ".json")
            atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())
        context.add_output_metadata({"storage_path": dg.MetadataValue.path(str(path))})

    def _load_one(self, key: dg.AssetKey, partition: str | None, lazy: bool = False) -> Any:
        pq = self._path(key, partition, ".parquet")
        if pq.exists():
            return pl.scan_parquet(pq) if lazy else pl.read_parquet(pq)
        js = self._path(key, partition, ".json")
        if js.exists():
            return json.loads(js.read_text())
        where = f"{key.to_user_string()}" + (f" partition '{partition}'" if partition else "")
        raise FileNotFoundError(f"no stored value for {where} under {self._base()}: materialize it first")

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        if not context.has_asset_partitions:
            # an input annotated pl.LazyFrame gets a scan: the asset reads the columns it needs, when it needs
            # them, and Dagster does not hold a whole DataFrame of the corpus for the length of the step
            lazy = getattr(context.dagster_type, "typing_type", None) is pl.LazyFrame
            return self._load_one(key, None, lazy=lazy)
        keys = list(context.asset_partition_keys)
        if context.has_partition_key and len(keys) == 1:  # partition-to-partition: one value
            return self._load_one(key, keys[0])
        # Fan-in: a partition that never materialized (a repo that failed) is left out, loudly.
        values, missing = {}, []
        for p in keys:
            try:
                values[p] = self._load_one(key, p)
            except FileNotFoundError:
                missing.append(p)
        if missing:
            context.log.warning(f"{key.to_user_string()}: partitions {missing} have no stored value; left out")
        return values


class MetricsStoreResource(dg.ConfigurableResource):
    """The gateway's store (requests, feedback, routing, keys). URL from settings unless given."""

    settings: SettingsResource
    url: str = ""

    @contextmanager
    def open(self) -> Iterator[Any]:
        """The store for the duration of a block; closed (its write queue drained) on the way out."""
        from codellm_assets.core.serving.store import Store

        s = self.settings.get()
        store = Store(self.url or s.store_url, scrub=s.scrub)
        try:
            yield store
        finally:
            store.close()


class GatewayResource(dg.ConfigurableResource):
    """Where the serving gateway listens. Empty URL: the host/port from settings."""

    settings: SettingsResource
    url: str = ""

    def base_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        s = self.settings.get().serving
        return f"http://{s.host}:{s.port}"
