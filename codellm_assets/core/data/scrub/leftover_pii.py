"""PII for the leftover re-scan: e-mail addresses at any TLD, private / internal IP addresses, and internal
host names (private TLDs such as ``.internal``, ``.corp``, ``.lan``; plus the company's own domains).

Public addresses are not PII here: public resolvers (8.8.8.8), documentation ranges and loopback stay, and
so do the reserved example domains (RFC 2606 / 6761: example.com, *.test, *.invalid, localhost).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Iterator

EMAIL = "Email Address"
PRIVATE_IP = "Private IP Address"
INTERNAL_HOST = "Internal Host Name"

PRIVATE_TLDS = ("internal", "corp", "lan", "local", "intra", "intranet", "localdomain", "home.arpa", "private")
_EXAMPLE_DOMAINS = re.compile(r"(?:^|\.)(?:example\.(?:com|org|net|edu)|example|test|invalid|localhost)$")
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_LOCAL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}\Z")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+(?:[A-Za-z]{2,63}|xn--[a-z0-9\-]{2,59})"
                     r"(?![\w\-]|\.[A-Za-z0-9])")
_FILE_EXTENSIONS = frozenset({"py", "pyc", "pkl", "pt", "js", "ts", "json", "yaml", "yml", "toml", "txt", "md", "rst",
                              "sh", "cfg", "ini", "csv", "png", "jpg", "gif", "svg", "html", "css", "xml", "lock",
                              "log", "tar", "gz", "zip", "whl", "so", "dll", "exe", "bin", "h", "c", "cpp", "java"})
# role and bot addresses of public services, and SSH algorithm names (aes256-gcm@openssh.com)
_NOT_A_PERSON = re.compile(r"^(?:no-?reply|do-?not-?reply|mailer-daemon)@|@(?:openssh\.com|libssh\.org)$|"
                           r"@users\.noreply\.github\.com$")
_KEY_COMMENT = re.compile(r"(?:ssh-(?:rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-ssh-ed25519@openssh\.com)\s+"
                          r"AAAA[A-Za-z0-9+/=]+\s+\Z")
_VERSION_BEFORE = re.compile(r"(?:version|\bver\b|release|\bv)[^\n]{0,30}\Z|(?:==|>=|<=|~=|!=)\s*[\"']?\Z",
                             re.IGNORECASE)
# literal-led (a leading lookbehind would be tried at every position): the boundary is checked in code
_IPV4 = re.compile(r"(1(?:0|72|92|00|69)\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\w]|\.\d)")
_IPV6_ULA = re.compile(r"(f[cd][0-9a-f]{2}:[0-9a-f:]{2,40})(?![\w:])")   # on the lower-cased text
_HOST_CONTEXT = re.compile(r"(?:://|@|[\"'`=\s(,\[]|^)$")
_HOST_END = re.compile(r"(?:[\"'`/:\s,;)\]]|$)")
_LABEL_RUN = re.compile(r"[A-Za-z0-9\-.]+$")
# what usually precedes `.internal` / `.local` in code: an object, not a host
_CODE_OWNERS = frozenset({"self", "cls", "this", "threading", "os", "sys", "super", "ctx", "context", "obj", "np",
                          "config", "settings", "state", "module", "window", "document", "process", "com", "org",
                          "net", "io", "java", "javax", "android", "kotlin", "torch", "req", "res", "request", "args",
                          "py", "path", "pathlib", "fs"})
# names every machine has, not the company's: docker's, kubernetes' and the clouds' metadata services
_KEPT_HOSTS = re.compile(r"(?:^|\.)(?:docker\.internal|cluster\.local|localhost\.localdomain|"
                         r"metadata\.google\.internal|metadata\.internal)$")
_IMPORT = re.compile(r"[ \t]*(?:from|import|package|using|namespace|require|use)\b")


def _email_hits(text: str) -> Iterator[tuple[int, int, str]]:
    """Found from each "@" (a regex with a leading lookbehind would be tried at every position of the text)."""
    at = text.find("@")
    while at >= 0:
        local = _LOCAL.search(text, max(0, at - 64), at)
        domain = _DOMAIN.match(text, at + 1)
        nxt = text.find("@", at + 1)
        if local and domain:
            start = local.start()
            while start < at and not text[start].isalnum():
                start += 1                          # an address starts with a letter or digit
            if start < at and (start == 0 or text[start - 1] not in _LOCAL_CHARS and text[start - 1] != "\\"):
                hit = (start, domain.end(), text[start:domain.end()])
                if not _not_an_address(text, hit, domain.group(0).lower()):
                    yield hit
        at = nxt


def _not_an_address(text: str, hit: tuple[int, int, str], domain: str) -> bool:
    start, _end, address = hit
    low = address.lower()
    tld = domain.rsplit(".", 1)[-1]
    if _EXAMPLE_DOMAINS.search(domain) or tld.isdigit() or tld in _FILE_EXTENSIONS or _NOT_A_PERSON.search(low):
        return True
    if text.startswith("(", hit[1]) or (len(low.split("@", 1)[0]) == 1 and len(domain.split(".", 1)[0]) == 1):
        return True                  # q@k.transpose(...), a@b.weight: code, not a mailbox
    if domain.split(".", 1)[0] in _CODE_OWNERS or text.endswith("//", 0, start):
        return True                  # `x@self.weight` (matrix product), https://key@o1.ingest.sentry.io (user-info)
    if text.startswith(":", hit[1]) and low.startswith("git@"):
        return True                  # git@github.com:org/repo.git is an SSH remote
    # the comment of a public key (ssh-ed25519 AAAA... user@host)
    return bool(_KEY_COMMENT.search(text, max(0, start - 800), start))


def _is_private(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if ip.version == 4 and ip in ipaddress.ip_network("100.64.0.0/10"):
        return True          # carrier-grade NAT: internal to a network
    # link-local (169.254.169.254, the cloud metadata server; fe80::) is every machine's, not the company's
    return ip.is_private and not (ip.is_loopback or ip.is_unspecified or ip.is_reserved or ip.is_multicast
                                  or ip.is_link_local or _is_documentation(ip))


_DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]


def _is_documentation(ip) -> bool:
    return any(ip.version == n.version and ip in n for n in _DOC_NETS)


def _ip_hits(text: str, lowered: str) -> Iterator[tuple[int, int, str]]:
    for m in _IPV4.finditer(text):
        addr = m.group(1)
        if m.start() > 0 and (text[m.start() - 1].isalnum() or text[m.start() - 1] in "._"):
            continue
        if text.startswith("/", m.end()) or addr.endswith(".0"):
            continue          # a network (10.0.0.0/8, 10.1.2.0), not a host
        if _VERSION_BEFORE.search(text, max(0, m.start() - 40), m.start()):
            continue          # version="10.2.3.4", pkg==10.1.0.2
        if _is_private(addr):
            yield m.start(1), m.end(1), m.group(1)
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6_ULA.finditer(lowered):
            if m.start() > 0 and (lowered[m.start() - 1].isalnum() or lowered[m.start() - 1] in ":_"):
                continue
            if _is_private(m.group(1)):
                yield m.start(1), m.end(1), text[m.start(1):m.end(1)]


@functools.lru_cache(maxsize=16)
def _host_pattern(domains: tuple[str, ...]) -> re.Pattern[str]:
    suffixes = sorted({d.lower().strip(".") for d in domains if d.strip(".")}, key=len, reverse=True)
    return re.compile(r"\.(?:" + "|".join(re.escape(s) for s in suffixes) + r")(?![\w\-]|\.[A-Za-z0-9])")


def _host_hits(text: str, lowered: str, domains: Iterable[str]) -> Iterator[tuple[int, int, str]]:
    for m in _host_pattern(tuple(domains) or PRIVATE_TLDS).finditer(lowered):
        head = _LABEL_RUN.search(lowered, max(0, m.start() - 253), m.start())
        if head is None:
            continue
        start = head.start()
        while start < m.start() and lowered[start] in ".-":
            start += 1
        labels = lowered[start:m.start()].split(".")
        host = lowered[start:m.end()]
        first = text[start:start + len(labels[0])]
        if first != first.lower() and first != first.upper():
            continue          # Foo.internal, MyApp.local: a CamelCase identifier, not a host
        if start > 0 and text[start - 1] == "@" and (start == 1 or not text[start - 2].isalnum()):
            continue          # @app.internal: a decorator (an address has a local part before the @)
        if not labels[0] or not labels[0][0].isalnum() or _KEPT_HOSTS.search(host):
            continue
        if any(lb in _CODE_OWNERS for lb in labels):   # py.path.local, self.state.internal: objects
            continue
        if _IMPORT.match(lowered, lowered.rfind("\n", 0, start) + 1):
            continue
        if not _HOST_CONTEXT.search(text, max(0, start - 3), start) or not _HOST_END.match(text, m.end()):
            continue
        if any(not lb or lb.startswith("-") for lb in labels):
            continue
        if m.end() < len(text) and text[m.end()] == "(":
            continue
        yield start, m.end(), text[start:m.end()]


def find_pii(text: str, lowered: str, *, emails: bool = True, ips: bool = True, hosts: bool = True,
             internal_domains: Iterable[str] = ()) -> Iterator[tuple[int, int, str, str]]:
    """(start, end, type, value) of the PII left in ``text``; ``lowered`` has the same length."""
    if emails:
        yield from ((s, e, EMAIL, v) for s, e, v in _email_hits(text))
    if ips:
        yield from ((s, e, PRIVATE_IP, v) for s, e, v in _ip_hits(text, lowered))
    if hosts:
        yield from ((s, e, INTERNAL_HOST, v) for s, e, v in _host_hits(text, lowered, internal_domains))
