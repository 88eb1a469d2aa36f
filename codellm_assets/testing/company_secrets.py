"""A labelled set of company-style files for the scrubber, generated from templates with seeds.

Built the way a held-out set of company files is: many file types (SQL migrations, Java/Spring, .properties,
docker-compose, Dockerfile, Terraform, Helm, shell, markdown runbooks, JSON configs, .env, CI YAML), secrets
in many positions (assignment, argument, URL, header, comment, docstring, multi-line) and look-alikes beside
them that must survive (placeholders, digests, UUIDs, test vectors, public keys, versions, public IPs/hosts).

Two slices that share nothing but the value generators:
- TUNING: the templates in this module, seeds ``0..``; the scrubber was tuned looking at these;
- HELD: the templates in ``company_secrets_heldout`` (other phrasings, other file layouts), seeds from
  ``HELD_SEED_BASE``; never looked at while tuning, only its totals are reported.

Every secret value is generated at run time (format-correct, random); nothing secret-looking is written here.
A secret counts as caught when its value no longer occurs in the scrubbed file; a look-alike as kept when its
text still does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
BCRYPT = "./" + ALNUM
HELD_SEED_BASE = 100_000
COMPANIES = ("acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "tyrell", "soylent")


@dataclass
class CompanyFile:
    """One generated file: ``secrets`` (type, value) must vanish, ``keeps`` (category, text) must stay."""

    path: str
    text: str = ""
    secrets: list[tuple[str, str]] = field(default_factory=list)
    keeps: list[tuple[str, str]] = field(default_factory=list)


class Gen:
    """Random values of each kind; ``s``/``k`` record a value as secret / look-alike and return it."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.company = self.rng.choice(COMPANIES)
        self.file = CompanyFile("")

    def s(self, kind: str, value: str) -> str:
        self.file.secrets.append((kind, value))
        return value

    def k(self, category: str, value: str) -> str:
        self.file.keeps.append((category, value))
        return value

    def pick(self, *options):
        return self.rng.choice(options)

    def chars(self, n: int, alphabet: str = ALNUM) -> str:
        while True:
            value = "".join(self.rng.choice(alphabet) for _ in range(n))
            if n < 12 or alphabet not in (ALNUM, URLSAFE, LOWER_ALNUM, UPPER_ALNUM, B64) or (
                    any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
                return value

    # --- secrets ---------------------------------------------------------------------------------------
    def password(self, url_safe: bool = False) -> str:
        word = self.pick("Winter", "Summer", "Falcon", "Orion", "Maple", "Tiger", "Nebula", "Granite", "Cobalt",
                         "Harbor", "Quartz", "Saturn", "Willow", "Zephyr", "Ember", "Juniper")
        specials = "-_." if url_safe else "!#%^*-_=+.@"
        style = self.rng.randrange(4)
        if style == 0:
            return word + str(self.rng.randint(2015, 2031)) + self.pick(*specials)
        if style == 1:
            return self.chars(self.rng.randint(10, 18), ALNUM + specials) + self.pick(*"0123456789")
        if style == 2:
            return f"{word.lower()}{self.pick(*specials)}{self.pick('blue', 'red', 'gold', 'iron')}" \
                   f"{self.pick(*specials)}{self.rng.randint(10, 999)}"
        return self.chars(self.rng.randint(8, 12), LOWER_ALNUM)

    def b64(self, raw: bytes, pad: bool = True) -> str:
        out = base64.b64encode(raw).decode()
        return out if pad else out.rstrip("=")

    def password_hash(self) -> str:
        kind = self.rng.randrange(9)
        salt = self.chars(22, BCRYPT)
        if kind == 0:
            return f"${self.pick('2a', '2b', '2y')}${self.pick('10', '11', '12', '14')}${salt}{self.chars(31, BCRYPT)}"
        if kind == 1:
            return (f"$argon2{self.pick('id', 'i', 'd')}$v=19$m={self.pick(65536, 19456, 102400)},t="
                    f"{self.rng.randint(2, 4)},p={self.rng.randint(1, 4)}${self.b64(self.rng.randbytes(16), False)}$"
                    f"{self.b64(self.rng.randbytes(32), False)}")
        if kind == 2:
            return f"$scrypt$ln=16,r=8,p=1${self.b64(self.rng.randbytes(16), False)}$" \
                   f"{self.b64(self.rng.randbytes(32), False)}"
        if kind == 3:
            return f"pbkdf2_sha256${self.pick(260000, 600000, 870000)}${self.chars(22)}$" \
                   f"{self.b64(self.rng.randbytes(32))}"
        if kind == 4:
            return "{SSHA}" + self.b64(self.rng.randbytes(24))
        if kind == 5:
            return f"$6${self.chars(16, BCRYPT)}${self.chars(86, BCRYPT)}"
        if kind == 6:
            return f"$5$rounds=5000${self.chars(16, BCRYPT)}${self.chars(43, BCRYPT)}"
        if kind == 7:
            return f"scrypt:32768:8:1${self.chars(16)}${self.chars(128, HEX)}"
        return f"pbkdf2:sha256:600000${self.chars(16)}${self.chars(64, HEX)}"

    def host(self, style: int | None = None) -> str:
        role = self.pick("pg-primary", "mysql-replica", "redis-cache", "rabbit", "kafka-broker", "vault", "ldap",
                         "build", "jenkins", "nexus", "artifactory", "grafana", "wiki", "sso", "mail", "files",
                         "orders-db", "billing-api", "etl", "mongo", "es-node", "nas")
        name = f"{role}-{self.rng.randint(1, 19):02d}" if self.rng.random() < 0.6 else role
        env = self.pick("prod", "stg", "dev", "eu1", "us-east", "dc2")
        co = self.company
        style = self.rng.randrange(9) if style is None else style
        return (f"{name}.{env}.corp.internal", f"{name}.int.{co}.net", f"{name}.{co}.internal", f"{name}.corp",
                f"{name}.{env}.lan", f"{name}.local", f"{name}.{co}.intra", f"{name}.{env}.int.{co}.com",
                f"{name}.svc.{env}.internal")[style]

    def private_ip(self) -> str:
        r = self.rng.randint
        return self.pick(f"10.{r(0, 255)}.{r(0, 255)}.{r(1, 254)}", f"172.{r(16, 31)}.{r(0, 255)}.{r(1, 254)}",
                         f"192.168.{r(0, 255)}.{r(1, 254)}")

    def email(self, internal: bool = False) -> str:
        user = self.pick("jane.doe", "r.patel", "mkowalski", "a.nguyen", "ops-oncall", "dba", "t.mueller",
                         "sre-team", "li.wei", "oncall+db")
        domain = (self.pick(f"{self.company}.internal", f"corp.{self.company}.local", f"{self.company}.corp",
                            f"mail.{self.company}.lan") if internal
                  else self.pick(f"{self.company}.com", f"{self.company}-corp.io", "gmail.com", f"{self.company}.co.uk",
                                 f"{self.company}.de"))
        return f"{user}@{domain}"

    def uuid(self) -> str:
        h = self.chars(32, HEX)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{self.pick(*'89ab')}{h[17:20]}-{h[20:]}"

    def api_key(self) -> str:
        return self.chars(self.rng.randint(20, 24), self.pick(ALNUM, LOWER_ALNUM, UPPER_ALNUM))

    def hex40(self) -> str:
        return self.chars(40, HEX)

    def django_key(self) -> str:
        alphabet = string.ascii_lowercase + string.digits + "!@#%^&*(-_=+)"  # Django's get_random_secret_key
        return self.pick("django-insecure-", "") + self.chars(50, alphabet)

    def dockerconfig(self, host: str) -> str:
        user = self.pick("robot$ci", "deploy", "svc-pull", "_json_key")
        auth = base64.b64encode(f"{user}:{self.password()}".encode()).decode()
        cfg = json.dumps({"auths": {host: {"username": user, "auth": auth}}})
        return base64.b64encode(cfg.encode()).decode()

    def provider(self) -> tuple[str, str]:
        """(provider, token) in a documented public format, drawn from PROVIDER_FORMATS."""
        name, make = self.rng.choice(PROVIDER_FORMATS)
        return name, make(self)

    def pem(self, label: str = "RSA PRIVATE KEY") -> tuple[str, list[str]]:
        body = self.b64(self.rng.randbytes(self.pick(600, 900, 1200)))
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n", lines

    # --- look-alikes -------------------------------------------------------------------------------------
    def sha(self, n: int = 64) -> str:
        return self.chars(n, HEX)

    def version(self) -> str:
        return f"{self.rng.randint(1, 17)}.{self.rng.randint(0, 30)}.{self.rng.randint(0, 40)}"

    def public_ip(self) -> str:
        return self.pick("8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "208.67.222.222", "192.0.2.15",
                         "198.51.100.23", "203.0.113.9", "149.112.112.112")

    def public_host(self) -> str:
        return self.pick("github.com", "registry.npmjs.org", "pypi.org", "repo1.maven.org", "ghcr.io",
                         "docker.io", "api.stripe.com", "hooks.slack.com", "s3.amazonaws.com", "example.com",
                         "localhost", "deb.debian.org", "dl-cdn.alpinelinux.org", "quay.io", "gcr.io")

    def placeholder(self, kind: str = "password") -> str:
        return self.pick("${" + kind.upper() + "}", "changeme", "<" + kind + ">", "{{ ." + kind + " }}",
                         "REPLACE_ME", "********", "${{ secrets." + kind.upper() + " }}", "xxxxxxxx", "CHANGE_ME",
                         "$" + kind.upper(), "%(" + kind + ")s", "<redacted>", "TODO")


def _hex_of(g: Gen, n: int) -> str:
    return g.chars(n, HEX)


# Documented public formats (prefix + alphabet + length) of provider tokens, for provider-token positions.
PROVIDER_FORMATS: list[tuple[str, Callable[[Gen], str]]] = [
    ("github", lambda g: g.pick("ghp_", "gho_", "ghs_") + g.chars(36)),
    ("gitlab", lambda g: "glpat-" + g.chars(20, URLSAFE)),
    ("slack", lambda g: "xoxb-" + g.chars(11, "0123456789") + "-" + g.chars(12, "0123456789") + "-" + g.chars(24)),
    ("stripe", lambda g: g.pick("sk_live_", "rk_live_") + g.chars(24)),
    ("aws", lambda g: "AKIA" + g.chars(16, UPPER_ALNUM)),
    ("google", lambda g: "AIza" + g.chars(35, URLSAFE)),
    ("sendgrid", lambda g: "SG." + g.chars(22, URLSAFE) + "." + g.chars(43, URLSAFE)),
    ("npm", lambda g: "npm_" + g.chars(36)),
    ("sourcegraph", lambda g: "sgp_" + g.chars(16, HEX) + "_" + g.chars(40, HEX)),
    ("notion", lambda g: "ntn_" + g.chars(11, "0123456789") + g.chars(35)),
    ("snyk", lambda g: g.uuid()),  # keyword-anchored (SNYK_TOKEN)
    ("cloudflare_origin_ca", lambda g: "v1.0-" + g.chars(24, HEX) + "-" + g.chars(146, HEX)),
    ("onepassword_secret_key", lambda g: "A3-" + "-".join(g.chars(n, UPPER_ALNUM) for n in (6, 11, 5, 5, 5))),
    ("clickhouse", lambda g: "4b1d" + g.chars(38)),
    ("hubspot", lambda g: "pat-" + g.pick("na1", "eu1") + "-" + g.uuid()),
    ("maxmind", lambda g: g.chars(6) + "_" + g.chars(29) + "_mmk"),
    ("sidekiq", lambda g: g.chars(8, HEX) + ":" + g.chars(8, HEX)),  # keyword-anchored (BUNDLE_..._CONTRIBSYS__COM)
    ("bedrock", lambda g: "ABSK" + g.b64(b"BedrockAPIKey-" + g.chars(12).encode() + b":" + g.rng.randbytes(60))),
    ("doppler", lambda g: "dp.st." + g.chars(43)),
    ("linear", lambda g: "lin_api_" + g.chars(40)),
    ("postman", lambda g: "PMAK-" + g.chars(24, HEX) + "-" + g.chars(34, HEX)),
    ("pulumi", lambda g: "pul-" + g.chars(40, HEX)),
    ("digitalocean", lambda g: "dop_v1_" + g.chars(64, HEX)),
    ("databricks", lambda g: "dapi" + g.chars(32, HEX)),
    ("shopify", lambda g: "shpat_" + g.chars(32, HEX)),
    ("huggingface", lambda g: "hf_" + g.chars(34, string.ascii_letters)),
    ("vault", lambda g: "hvs." + g.chars(90, URLSAFE)),
    ("grafana", lambda g: "glsa_" + g.chars(32) + "_" + g.chars(8, HEX)),
    ("dockerhub", lambda g: "dckr_pat_" + g.chars(27, URLSAFE)),
    ("tailscale", lambda g: "tskey-auth-" + g.chars(11) + "CNTRL-" + g.chars(32)),
    ("figma", lambda g: "figd_" + g.chars(40, URLSAFE)),
    ("supabase", lambda g: "sbp_" + g.chars(40, HEX)),
    ("sonarqube", lambda g: g.pick("squ_", "sqp_", "sqa_") + g.chars(40, HEX)),
    ("prefect", lambda g: "pnu_" + g.chars(36)),
    ("readme", lambda g: "rdme_" + g.chars(70, LOWER_ALNUM)),
    ("brevo", lambda g: "xkeysib-" + g.chars(64, HEX) + "-" + g.chars(16)),
    ("easypost", lambda g: "EZAK" + g.chars(54)),
    ("typeform", lambda g: "tfp_" + g.chars(59, URLSAFE)),
    ("infracost", lambda g: "ico-" + g.chars(32)),
    ("scalingo", lambda g: "tk-us-" + g.chars(48, URLSAFE)),
    ("shippo", lambda g: "shippo_live_" + g.chars(40, HEX)),
    ("frameio", lambda g: "fio-u-" + g.chars(64, URLSAFE)),
    ("duffel", lambda g: "duffel_live_" + g.chars(43, URLSAFE)),
    ("adafruit", lambda g: "aio_" + g.chars(28)),
    ("nuget", lambda g: "oy2" + g.chars(43, LOWER_ALNUM)),
    ("octopus", lambda g: "API-" + g.chars(26, UPPER_ALNUM)),
    ("buildkite", lambda g: "bkua_" + g.chars(40, HEX)),
    ("render", lambda g: "rnd_" + g.chars(32)),
    ("pinecone", lambda g: "pcsk_" + g.chars(5) + "_" + g.chars(60)),
    ("langsmith", lambda g: "lsv2_" + g.pick("pt", "sk") + "_" + g.chars(32, HEX) + "_" + g.chars(10, HEX)),
]


def build_company_files(slice_: str = "tuning", seeds: int = 3, per_template: int = 12) -> list[CompanyFile]:
    """``per_template`` files per template and seed; ``slice_`` is "tuning", "held" or "fresh" (other templates
    and seeds each)."""
    if slice_ == "tuning":
        from codellm_assets.testing.company_templates import TEMPLATES
        base = 0
    elif slice_ == "held":
        from codellm_assets.testing.company_secrets_heldout import TEMPLATES
        base = HELD_SEED_BASE
    elif slice_ == "fresh":
        from codellm_assets.testing.company_secrets_fresh import TEMPLATES
        base = 2 * HELD_SEED_BASE
    else:
        raise ValueError(f"slice {slice_!r}: use 'tuning', 'held' or 'fresh'")
    files: list[CompanyFile] = []
    for seed in range(base, base + seeds):
        for t_index, template in enumerate(TEMPLATES):
            for i in range(per_template):
                g = Gen(int(hashlib.sha256(f"{seed}:{t_index}:{i}".encode()).hexdigest()[:12], 16))
                template(g)
                files.append(g.file)
    return files


def score_files(files: list[CompanyFile], redact: Callable[[str], str]) -> dict[str, list[int]]:
    """Per type ``[n, ok]``: secrets caught (``secret:<type>``) and look-alikes kept (``keep:<category>``)."""
    stats: dict[str, list[int]] = {}
    for f in files:
        out = redact(f.text)
        for kind, value in f.secrets:
            row = stats.setdefault(f"secret:{kind}", [0, 0])
            row[0] += 1
            row[1] += value not in out
        for cat, value in f.keeps:
            row = stats.setdefault(f"keep:{cat}", [0, 0])
            row[0] += 1
            row[1] += value in out
    return stats


def totals(stats: dict[str, list[int]]) -> tuple[float, float]:
    """(recall over all secrets, keep rate over all look-alikes)."""
    def rate(prefix: str) -> float:
        rows = [v for k, v in stats.items() if k.startswith(prefix)]
        return sum(r[1] for r in rows) / max(1, sum(r[0] for r in rows))
    return rate("secret:"), rate("keep:")
