"""Personal data in code: e-mail addresses, IPv4/IPv6 addresses and phone numbers.

Each finder anchors on a literal (``@``, ``.``, ``:``, ``+``, ``(``, ``-``) so the scan stays near memory speed,
then extends leftwards and validates in Python. E-mails count at any TLD (``.internal``, ``.corp`` too); IP
addresses only in private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7): public resolvers
(8.8.8.8, 1.1.1.1, 9.9.9.9) and documentation ranges are public knowledge. Kept on purpose: documentation
domains (``example.com``, ``.test``), netmasks, version strings (``__version__ = "1.2.3.4"``), ``git@host``
SSH remotes and ``noreply@`` senders.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from codellm_assets.core.data.scrub.rules import Span

# --- e-mail --------------------------------------------------------------------------------------------------
_EMAIL_DOMAIN = re.compile(r"@((?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))(?![\w\-])")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}\Z")
_GENERIC_TLDS = frozenset((
    "com", "net", "org", "edu", "gov", "mil", "int", "info", "biz", "name", "pro", "app", "dev", "tech", "online",
    "site", "xyz", "email", "cloud", "company", "systems", "solutions", "services", "digital", "media", "agency",
    "studio", "design", "software", "codes", "network", "works", "global", "group", "team", "world", "today",
    "life", "live", "news", "blog", "shop", "store", "mail", "host", "space", "website", "page", "zone", "center",
))  # plus every two-letter country code
# openssh.com / libssh.org name SSH algorithms ("aes256-gcm@openssh.com"), not mailboxes
_KEEP_DOMAINS = ("example.com", "example.org", "example.net", "example.edu", "localhost", "localdomain",
                 "openssh.com", "libssh.org")
_KEEP_TLDS = frozenset({"example", "test", "invalid", "localhost"})  # RFC 2606: never a real mailbox
# a first domain label that is a code receiver: x@self.weight (matrix product), this@Outer.run (Kotlin)
_CODE_RECEIVERS = frozenset({"self", "this", "cls", "np", "torch", "tf", "jnp", "ctx", "model", "layer"})
_KEEP_LOCALS = frozenset({"noreply", "no-reply", "donotreply", "do-not-reply", "mailer-daemon", "git"})


def _keep_email(local: str, domain: str, tld: str, following: str) -> bool:
    domain = domain.lower()
    if tld.lower() in _KEEP_TLDS or any(domain == d or domain.endswith("." + d) for d in _KEEP_DOMAINS):
        return True
    # git@github.com:org/repo.git is an SSH remote, not a person
    return local.lower() in _KEEP_LOCALS or following == ":"


def find_emails(text: str) -> Iterator[Span]:
    """E-mail addresses outside documentation domains."""
    for m in _EMAIL_DOMAIN.finditer(text):
        domain, tld = m.group(1), m.group(2)
        if not (tld.islower() or tld.isupper()):
            continue
        if domain.split(".", 1)[0].lower() in _CODE_RECEIVERS or text.startswith("(", m.end()):
            continue  # x@self.weight, q@k.transpose(...): code, not a mailbox
        lm = _EMAIL_LOCAL.search(text, max(0, m.start() - 64), m.start())
        if lm is None:
            continue
        start = lm.start()
        while start < m.start() and text[start] in ".-":
            start += 1
        local = text[start:m.start()]
        if not local or not any(c.isalnum() for c in local):
            continue
        if len(tld) > 2 and tld.lower() not in _GENERIC_TLDS and len(local) < 2:
            continue  # a@b.weight: any TLD counts (.internal, .corp, .engineering), but not a one-letter name
        if start > 0 and text[start - 1] == ":" and not text.endswith("mailto", 0, start - 1):
            continue  # https://user:token@host is URL user-info, handled by the secret rules
        if text.endswith("//", 0, start):
            continue  # https://key@o1.ingest.sentry.io (a DSN), ssh://user@host: user-info, not a mailbox
        if _keep_email(local, domain, tld, text[m.end():m.end() + 1]):
            continue
        yield Span(start, m.end(), "email", 2)


# --- IPv4 / IPv6 ---------------------------------------------------------------------------------------------
_IPV4_TAIL = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\w|\.\d)")
_IPV4_HEAD = re.compile(r"\d{1,3}\Z")
# versions (__version__ = "1.2.3.4", pkg>=1.2.3.4) and OIDs (ObjectIdentifier("2.5.29.24")) look like IPv4.
# A comparison operator counts only as a pin (pkg==1.2.3.4): `host == "10.1.2.3"` in code is an address.
_VERSION_CONTEXT = re.compile(r"(?:(?:version|\bver\b|release|requires|\boid|objectidentifier|\brfc|section|§)"
                              r"[^\n]{0,40}|[\w\])]\s?(?:==|>=|<=|~=|!=)\s?)\Z",
                              re.IGNORECASE)
_IPV6_SEED = re.compile(r"::|:[0-9A-Fa-f]{1,4}:")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_WORDISH = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


# Only the company's own network is personal/internal data: public addresses (8.8.8.8, 1.1.1.1, a CDN) are
# public knowledge, and documentation ranges are examples.
_PRIVATE_NETS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))


def _keep_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not any(ip in net for net in _PRIVATE_NETS if net.version == ip.version)


def _is_network_address(text: str, end: int, ip: ipaddress.IPv4Address) -> bool:
    """``10.0.0.0/8``: a CIDR range names a network, not a host."""
    m = re.match(r"/(\d{1,2})(?!\d)", text[end:end + 3])
    if not m:
        return False
    try:
        return ipaddress.ip_network(f"{ip}/{m.group(1)}", strict=True) is not None
    except ValueError:
        return False


def find_ipv4(text: str) -> Iterator[Span]:
    """IPv4 host addresses (public or private) that are not loopback, documentation, reserved or versions."""
    for m in _IPV4_TAIL.finditer(text):
        hm = _IPV4_HEAD.search(text, max(0, m.start() - 3), m.start())
        if hm is None:
            continue
        start = hm.start()
        if start > 0 and (text[start - 1] in _WORDISH or text[start - 1] in ".-"):
            continue
        try:
            ip = ipaddress.IPv4Address(text[start:m.end()])
        except ValueError:
            continue
        if _keep_ip(ip) or text[m.end() - 2:m.end()] == ".0" or _is_network_address(text, m.end(), ip):
            # x.y.z.0 names a network (or is a version, "1.0.0.0"), not a host
            continue
        if _VERSION_CONTEXT.search(text, max(0, start - 48), start):
            continue
        yield Span(start, m.end(), "ip", 2)


def find_ipv6(text: str) -> Iterator[Span]:
    """IPv6 addresses (validated with ``ipaddress``), excluding ``::1``, ``::``, link-local and 2001:db8::/32."""
    last_end = 0
    for m in _IPV6_SEED.finditer(text):
        if m.start() < last_end:
            continue
        start, end = m.start(), m.end()
        while start > 0 and end - start < 45 and text[start - 1] in _IPV6_CHARS:
            start -= 1
        while end < len(text) and end - start < 45 and text[end] in _IPV6_CHARS:
            end += 1
        last_end = end
        cand = text[start:end].rstrip(".")
        if (start > 0 and text[start - 1] in _WORDISH) or (end < len(text) and text[end] in _WORDISH):
            continue
        groups = [g for g in re.split(r"::?", cand) if g]
        # slices (x[1::2]) and times look like short IPv6 addresses; real ones have hex letters or many groups
        if len(groups) < 4 and not any(len(g) == 4 or re.search(r"[a-fA-F]", g) for g in groups):
            continue
        try:
            ip = ipaddress.IPv6Address(cand)
        except ValueError:
            continue
        if _keep_ip(ip) or (ip.ipv4_mapped is not None and _keep_ip(ip.ipv4_mapped)):
            continue
        yield Span(start, start + len(cand), "ip", 2)


# --- phone numbers -------------------------------------------------------------------------------------------
_PHONE_INTL = re.compile(r"\+\d{1,3}(?>[ .\-]?\(?\d{1,5}+\)?){1,6}(?![\w\-])")
_PHONE_PAREN = re.compile(r"\(\d{3}\)[ .\-]?\d{3}[ .\-]\d{4}(?![\w\-])")
# two literal-led patterns instead of one led by a [-.] class: CPython skips to the literal much faster
_PHONE_DASHED = (re.compile(r"-\d{3}-\d{4}(?![\w\-.])"), re.compile(r"\.\d{3}\.\d{4}(?![\w\-.])"))
_PHONE_HEAD = re.compile(r"(?:\+?1[\-. ])?\d{3}\Z")


def find_phones(text: str) -> Iterator[Span]:
    """``+44 20 7946 0958``, ``+14155552671``, ``(555) 123-4567``, ``555-123-4567``, ``555.123.4567``."""
    if "+" in text:
        for m in _PHONE_INTL.finditer(text):
            if m.start() > 0 and (text[m.start() - 1] in _WORDISH or text[m.start() - 1] in ")]-"):
                continue  # a + b, 1e+10, '-+0123456789'
            digits = sum(c.isdigit() for c in m.group(0))
            # without separators only a full E.164 number (+14155550123), not +2147483647
            bare = m.group(0)[1:].isdigit()
            if (11 if bare else 10) <= digits <= 15 and m.group(0).count("(") == m.group(0).count(")"):
                yield Span(m.start(), m.end(), "phone", 2)
    if "(" in text:
        for m in _PHONE_PAREN.finditer(text):
            if m.start() == 0 or text[m.start() - 1] not in _WORDISH:
                yield Span(m.start(), m.end(), "phone", 2)
    for m in (m for pattern in _PHONE_DASHED for m in pattern.finditer(text)):
        hm = _PHONE_HEAD.search(text, max(0, m.start() - 6), m.start())
        if hm is None:
            continue
        start = hm.start()
        if start > 0 and (text[start - 1] in _WORDISH or text[start - 1] in ".-+"):
            continue
        if m.group(0)[0] == "." and _VERSION_CONTEXT.search(text, max(0, start - 48), start):
            continue
        yield Span(start, m.end(), "phone", 2)
