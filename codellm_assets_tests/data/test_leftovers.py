"""The independent leftover re-scan (the blocking check's detector): a different method from the scrubber, what
it finds, what it must never flag (placeholders, look-alikes, public addresses), and masked excerpts."""

from __future__ import annotations

import ast
import base64
import json
from collections import Counter
from pathlib import Path

import pytest

from codellm_assets.core.data.scrub import leftovers
from codellm_assets.core.data.scrub.leftovers import LeftoverPolicy, find_leftovers
from codellm_assets.core.data.scrub.scrubber import scrub_text
from codellm_assets.settings import ScrubSettings
from codellm_assets.testing.secrets_labelled import ALNUM, B64, FakeSecrets, build_labelled_set

F = FakeSecrets(7)
PASSWORD = "Qm7#vT2pLx9wZr4k"
SCRUBBER_MODULES = {"scrubber", "rules", "keywords", "pii", "lookalikes", "contexts", "hashes", "hosts"}


def test_the_rescan_shares_no_code_with_the_scrubber():
    """Independence: no leftover module imports the scrubber or any of its rule / look-alike modules."""
    scrub_dir = Path(leftovers.__file__).parent
    for path in scrub_dir.glob("leftover*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
        used = {m.rsplit(".", 1)[-1] for m in imported if m.startswith("codellm_assets.core.data.scrub")}
        assert not used & SCRUBBER_MODULES, (path.name, used)


@pytest.mark.parametrize(("rule", "line"), [
    ("password", f'DB_PASSWORD = "{PASSWORD}"'),
    ("password", f"spring.datasource.password={PASSWORD}"),
    ("password", f"CREATE USER app IDENTIFIED BY '{PASSWORD}';"),
    ("password", f"mysql -uroot -p'{PASSWORD}' shop"),
    ("password", f"sshpass -p {PASSWORD} ssh deploy@build"),
    ("password", f"<datasource><password>{PASSWORD}</password></datasource>"),
    ("generic_secret", f'client_secret: "{F.chars(32)}"'),
    # built at run time: none in the source; its internal domain is the host rule's to scrub too
    ("email+host", "OWNER = 'ops-team" + "@" + "payments.corp.internal'"),
    ("email", "contact: jane.doe@acme-corp.com"),
    ("ip", 'DB_HOST = "10.24.3.17"'),
])
def test_finds_what_a_disabled_scrub_rule_lets_through(rule, line):
    """Each line passes the scrubber untouched with its rule switched off; the re-scan still finds it."""
    text = f"import os\n\n{line}\nprint('done')\n"
    kept = scrub_text(text, ScrubSettings(disabled_rules=rule.split("+"))).text
    assert kept == text
    findings = find_leftovers(kept)
    assert findings and findings[0].line == 3


@pytest.mark.parametrize("line", [
    f"url = 'postgresql://app:{PASSWORD}@db:5432/app'",
    'headers = {"Authorization": "Bearer 3f1c2b9e-8d7a-4c6b-9e5f-1a2b3c4d5e6f"}',
    '{"auths": {"ghcr.io": {"auth": "cm9ib3Q6MkZjR3otRUgwVW9hRTBf"}}}',
    f"HEROKU_API_KEY = '{F.uuid()}'",
    "hf = 'hf_" + F.chars(34, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") + "'",
    "admin:" + "$2b$12$" + F.chars(53, ALNUM + "./") + ":19000:0:99999:7:::",
    "hash = '$argon2id$v=19$m=65536,t=3,p=4$" + F.chars(22, B64) + "$" + F.chars(43, B64) + "'",
    "  password: " + base64.b64encode(PASSWORD.encode()).decode(),
    "  .dockerconfigjson: " + base64.b64encode(json.dumps({"auths": {"registry.acme.io": {"auth": base64.b64encode(
        f"robot:{PASSWORD}".encode()).decode()}}}).encode()).decode(),
])
def test_finds_keyword_header_url_and_provider_secrets(line):
    assert find_leftovers(line + "\n"), line


def test_excerpts_never_hold_the_secret():
    text = f'A = "{PASSWORD}"; token = "{(t := F.chars(40))}"; owner = "jane@acme-corp.com"\n'
    findings = find_leftovers(text.replace("A =", "password ="))
    assert len(findings) >= 3
    for f in findings:
        assert PASSWORD not in f.excerpt and t not in f.excerpt and "jane@acme-corp.com" not in f.excerpt


@pytest.mark.parametrize("line", [
    'password = "<SECRET:password>"', "url = 'postgresql://app:<SECRET:db_password>@<HOST>:5432/app'",
    "AccountKey=<SECRET:azure_storage_key>;", 'owner = "<EMAIL>"', "DNS = <IP>",
    'DNS = ["8.8.8.8", "1.1.1.1", "9.9.9.9"]', 'TEST_NET = "192.0.2.10"', 'bind = "127.0.0.1"',
    'cidr = "10.0.0.0/8"', 'version = "10.2.3.4"', 'pin = "pkg==10.2.3.4"',
    "git clone git@github.com:acme/widgets.git", 'FROM = "noreply@github.com"', 'docs = "user@example.com"',
    "y = x@self.weight", "@pytest.mark.parametrize", 'KEY_FILE = "/etc/ssl/private/server.key"',
    'token_url = "https://oauth2.googleapis.com/token"', "password = get_password()", "token = self.token",
    'secret_name = "prod/payments/stripe"', 'API_KEY_HEADER = "X-API-Key"', 'password = "changeme"',
    "if token == other.token:", 'request_id = "3f1c2b9e-8d7a-4c6b-9e5f-1a2b3c4d5e6f"',
    '"next_page_token": "eyJpbmRleCI6IDExfQ=="', "local = threading.local()",
    "@app.internal", "return (Foo.internal)", "y = q@k.transpose(1, 2)", "# a@b.weight",
])
def test_placeholders_public_addresses_and_lookalikes_never_count(line):
    assert find_leftovers(line + "\n", LeftoverPolicy(hosts=True)) == []


def test_internal_hosts_by_private_tld_and_company_domain():
    policy = LeftoverPolicy(hosts=True, internal_domains=("acme.io",))
    text = ('DB = "pg-01.prod.corp.internal"\nVAULT_ADDR=https://vault.acme.io:8200\n'
            "from google.protobuf.internal import decoder\nlocal = threading.local()\n"
            'HOST = "host.docker.internal"\nsvc = "api.default.svc.cluster.local"\n')
    assert [(f.type, f.line) for f in find_leftovers(text, policy)] == [
        ("Internal Host Name", 1), ("Internal Host Name", 2)]
    assert find_leftovers(text, LeftoverPolicy(hosts=False)) == []


def test_policy_follows_the_redact_switches_but_not_disabled_rules():
    text = 'owner = "jane@acme-corp.com"\nhost = "10.1.2.3"\npassword = "' + PASSWORD + '"\n'
    off = LeftoverPolicy.from_scrub_settings(ScrubSettings(redact_emails=False, redact_ips=False,
                                                           disabled_rules=["password"]))
    assert [f.type for f in find_leftovers(text, off)] == ["Secret Keyword"]
    assert len(find_leftovers(text, LeftoverPolicy.from_scrub_settings(ScrubSettings()))) == 3


def test_generated_set_lookalikes_kept_and_secrets_found():
    """Generated with seeds the scrubber's own tests do not use: no look-alike is flagged, and the secret
    kinds a re-scan is for (not public IPs or phone numbers, which are not leftovers here) are found."""
    found, total, flagged, lookalikes = Counter(), Counter(), 0, 0
    for seed in (11, 12, 13):
        for sample in build_labelled_set(seed):
            hits = find_leftovers(sample.text)
            if sample.is_secret:
                total[sample.kind] += 1
                found[sample.kind] += bool(hits)
            else:
                lookalikes += 1
                flagged += bool(hits)
    assert flagged == 0 and lookalikes > 300
    secrets = {k: v for k, v in total.items() if k not in ("ip", "phone")}
    recall = sum(found[k] for k in secrets) / sum(secrets.values())
    assert recall >= 0.95, {k: f"{found[k]}/{v}" for k, v in secrets.items() if found[k] < v}
