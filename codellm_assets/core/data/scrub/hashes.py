"""Password hashes: a stored hash is as good as the password to an offline cracker, and names the scheme.

Modular crypt format and its relatives, each from its documented layout: bcrypt ``$2a$/$2b$/$2y$`` (cost, 53
chars of ``./A-Za-z0-9``), argon2 ``$argon2id$v=19$m=..,t=..,p=..$salt$hash``, scrypt (``$scrypt$ln=..`` passlib,
``$7$`` libsodium, ``scrypt:N:r:p$`` werkzeug), sha-crypt ``$5$``/``$6$`` (optional ``rounds=``), md5-crypt
``$1$``/``$apr1$``, yescrypt ``$y$``, PBKDF2 (``pbkdf2_sha256$iter$salt$hash`` Django, ``$pbkdf2-sha256$``
passlib, ``pbkdf2:sha256:iter$`` werkzeug) and LDAP ``{SSHA}``/``{SSHA256}``/``{SHA}``/``{SMD5}``/``{CRYPT}``.
Format descriptions (``$2b$<cost>$<salt>``, ``$argon2id$v=19$m=<mem>``) are kept: they carry no hash.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from codellm_assets.core.data.scrub.rules import Span

_C = r"[./A-Za-z0-9]"      # crypt(3) base64 alphabet
_B = r"[A-Za-z0-9+/.\-_]"  # standard / adapted base64
_DOLLAR = re.compile(
    r"\$(?:"
    r"2[abxy]\$\d\d\$" + _C + r"{53}"
    r"|argon2(?:id|i|d)\$(?:v=\d+\$)?m=\d+,t=\d+,p=\d+\$" + _B + r"{8,}\$" + _B + r"{16,}"
    r"|scrypt\$ln=\d+,r=\d+,p=\d+\$" + _B + r"{8,}\$" + _B + r"{16,}"
    r"|7\$" + _C + r"{11,}\$" + _C + r"{43}"
    r"|[156]\$(?:rounds=\d+\$)?" + _C + r"{1,16}\$" + _C + r"{22,86}"
    r"|apr1\$" + _C + r"{1,8}\$" + _C + r"{22}"
    r"|y\$" + _C + r"{3,}\$" + _C + r"{8,}\$" + _C + r"{43}"
    r"|pbkdf2(?:-sha\d+)?\$\d+\$" + _B + r"{8,}\$" + _B + r"{16,}"
    r")(?![./A-Za-z0-9+])")
_DJANGO = re.compile(r"(?:pbkdf2_sha(?:1|256|512)|bcrypt_sha256|argon2|scrypt|sha1|md5)\$"
                     r"(?:\d+\$" + _B + r"{6,}\$" + _B + r"{20,}={0,2}|\$?2[aby]\$\d\d\$" + _C + r"{53}"
                     r"|argon2(?:id|i|d)\$\S{20,})")
_WERKZEUG = re.compile(r"(?:scrypt:\d+:\d+:\d+|pbkdf2:sha\d+(?::\d+)?)\$[A-Za-z0-9]{4,}\$[0-9a-f]{40,}")
_LDAP = re.compile(r"\{(?:SSHA|SSHA256|SSHA384|SSHA512|SHA|SHA256|SHA512|SMD5|MD5|CRYPT|PBKDF2(?:-SHA\d+)?)\}"
                   r"(?:[A-Za-z0-9+/]{20,}={0,2}|\$[\w$./=,+\-]{20,})")
_DJANGO_MARKERS = ("pbkdf2_", "sha1$", "md5$", "scrypt$")  # argon2$/bcrypt$ wrap a $argon2/$2b$ hash


def find_password_hashes(text: str) -> Iterator[Span]:
    """Stored password hashes in any of the formats above."""
    dollar = "$" in text
    # layouts that start with a word, not a literal, run only where their marker occurs
    checks = ((_DOLLAR, dollar), (_DJANGO, dollar and any(marker in text for marker in _DJANGO_MARKERS)),
              (_WERKZEUG, dollar and ("scrypt:" in text or "pbkdf2:" in text)),
              (_LDAP, True))
    for pattern, present in checks:
        if present:
            for m in pattern.finditer(text):
                yield Span(m.start(), m.end(), "password_hash")
