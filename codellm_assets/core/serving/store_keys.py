"""The store's API keys, as a mixin of ``Store``: create, look up, list and revoke team keys. A key is shown
once; only a salted HMAC-SHA256 hash and the key's prefix (what `codellm keys list` shows) are stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from codellm_assets.core.serving.store_schema import api_keys_t, utcnow

KEY_PREFIX = "cl-"
PREFIX_LEN = len(KEY_PREFIX) + 8     # what `keys list` shows and `keys revoke` takes


@dataclass
class ApiKey:
    team: str
    prefix: str
    admin: bool = False
    claims_users: bool = False   # may name the developer it sends for (see auth.request_identity)


class ApiKeyStore:
    """The API-key half of ``Store`` (which sets ``engine``)."""

    engine: sa.Engine

    def create_api_key(self, team: str, *, admin: bool = False, claims_users: bool = False) -> str:
        """Create a key for ``team``; returns the key (shown once: only a salted hash is stored).
        ``claims_users``: requests with this key may name their developer (``user``), e.g. a team proxy."""
        if not team or not team.strip():
            raise ValueError("team must be a non-empty name")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        with self.engine.begin() as conn:
            conn.execute(sa.insert(api_keys_t).values(
                team=team.strip(), salt=salt, hash=_hash_key(salt, key), prefix=key[:PREFIX_LEN],
                admin=admin, claims_users=claims_users, created=utcnow(), revoked=None))
        return key

    def api_key_info(self, key: str) -> ApiKey | None:
        """The team/prefix/admin flag of a valid, unrevoked key; None otherwise."""
        if not key or not key.startswith(KEY_PREFIX) or len(key) <= PREFIX_LEN:
            return None
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys_t).where(api_keys_t.c.prefix == key[:PREFIX_LEN],
                                                            api_keys_t.c.revoked.is_(None))).mappings().all()
        for r in rows:
            if hmac.compare_digest(r["hash"], _hash_key(r["salt"], key)):
                return ApiKey(team=r["team"], prefix=r["prefix"], admin=bool(r["admin"]),
                              claims_users=bool(r["claims_users"]))
        return None

    def verify_api_key(self, key: str) -> str | None:
        """The team of a valid, unrevoked key; None otherwise."""
        info = self.api_key_info(key)
        return info.team if info else None

    def list_api_keys(self) -> list[dict[str, Any]]:
        """team, prefix, admin, created, revoked for every key (never the key or its hash)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys_t.c.team, api_keys_t.c.prefix, api_keys_t.c.admin,
                                          api_keys_t.c.created, api_keys_t.c.revoked)
                                .order_by(api_keys_t.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def revoke_api_key(self, prefix: str) -> int:
        """Revoke the key(s) with this prefix (a full key works too); returns how many were revoked."""
        prefix = prefix.strip()[:PREFIX_LEN]
        with self.engine.begin() as conn:
            res = conn.execute(sa.update(api_keys_t).where(api_keys_t.c.prefix == prefix,
                                                           api_keys_t.c.revoked.is_(None))
                               .values(revoked=utcnow()))
        return int(res.rowcount or 0)


def _hash_key(salt: str, key: str) -> str:
    return hmac.new(salt.encode(), key.encode(), hashlib.sha256).hexdigest()
