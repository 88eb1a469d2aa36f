"""Secrets hidden in base64: decode and look.

- base64 JSON (``eyJ...`` without the dots of a JWT) that decodes to registry or service credentials
  (``.dockerconfigjson``, ``.dockercfg``, a service-account blob): any ``auth``/``password``/``token``/``secret``
  member inside makes the whole blob a secret;
- Kubernetes ``kind: Secret`` manifests: every value under ``data:`` is base64 of a secret, quoted or not,
  on one line or folded over several (``key: >-`` / ``key: |``); public material (a certificate, a public
  key, a CA bundle) is kept, since it decodes to ``-----BEGIN CERTIFICATE-----``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator

from codellm_assets.core.data.scrub.rules import Span

_B64_JSON = re.compile(r"eyJ[A-Za-z0-9+/_\-]{20,}={0,2}(?![A-Za-z0-9+/_\-=.])")
_CRED_KEYS = ("auth", "password", "token", "secret", "private_key", "credential")
_PUBLIC_MARKERS = (b"BEGIN CERTIFICATE", b"BEGIN PUBLIC KEY", b"BEGIN X509", b"ssh-rsa ", b"ssh-ed25519 ")
_DATA_BLOCK = re.compile(r"^(?P<indent>[ \t]*)(?:data|binaryData):[ \t]*$", re.MULTILINE)
_ENTRY = re.compile(r"(?P<indent>[ \t]+)(?P<key>[\"']?[\w.\-]+[\"']?):[ \t]*(?P<rest>[^\n]*)\n?")
_VALUE = re.compile(r"[\"']?(?P<v>[A-Za-z0-9+/]{4,}={0,2})[\"']?[ \t]*(?:#.*)?$")
_FOLDED = re.compile(r"[|>][-+]?[ \t]*$")


def _b64decode(value: str) -> bytes | None:
    value = value.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (ValueError, binascii.Error):
        return None


def _holds_credentials(obj: object, depth: int = 0) -> bool:
    if depth > 6:
        return False
    if isinstance(obj, dict):
        return any((isinstance(k, str) and any(c in k.lower() for c in _CRED_KEYS) and v not in ("", None))
                   or _holds_credentials(v, depth + 1) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_holds_credentials(v, depth + 1) for v in obj)
    return False


def find_encoded_json(text: str) -> Iterator[Span]:
    """base64 of a JSON object holding credentials (a ``.dockerconfigjson`` value, an encoded key file)."""
    for m in _B64_JSON.finditer(text):
        raw = _b64decode(m.group(0))
        if raw is None:
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if _holds_credentials(obj):
            yield Span(m.start(), m.end(), "dockerconfigjson" if "auths" in obj or "auth" in str(obj) else
                       "encoded_credentials")


def _secret_bytes(raw: bytes | None) -> bool:
    return raw is not None and len(raw) >= 3 and not any(marker in raw[:200] for marker in _PUBLIC_MARKERS)


def find_k8s_secret_data(text: str) -> Iterator[Span]:
    """The base64 values under ``data:`` in Kubernetes Secret manifests."""
    if "Secret" not in text or "data:" not in text or not re.search(r"kind:[ \t]*[\"']?Secret\b", text):
        return
    for block in _DATA_BLOCK.finditer(text):
        pos, base = block.end() + 1, len(block.group("indent"))
        while (e := _ENTRY.match(text, pos)) is not None and len(e.group("indent")) > base:
            rest, indent = e.group("rest"), len(e.group("indent"))
            pos = e.end()
            if _FOLDED.match(rest):  # key: >- / key: | followed by deeper-indented base64 lines
                lines_start = pos
                while (nl := re.match(r"([ \t]+)([A-Za-z0-9+/=]+)[ \t]*\n?", text[pos:pos + 400])) and len(
                        nl.group(1)) > indent:
                    pos += nl.end()
                chunk = text[lines_start:pos]
                if chunk and _secret_bytes(_b64decode("".join(chunk.split()))):
                    yield Span(lines_start + len(chunk) - len(chunk.lstrip()), lines_start + len(chunk.rstrip()),
                               "k8s_secret")
                continue
            vm = _VALUE.match(rest)
            if vm and _secret_bytes(_b64decode(vm.group("v"))):
                start = e.start("rest") + vm.start("v")
                yield Span(start, start + len(vm.group("v")), "k8s_secret")
