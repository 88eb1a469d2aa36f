"""The secrets/PII scrubber: a true and a false example beside every rule (gitleaks style), the labelled set
with recall / keep-rate floors, the independent leftover scan, and scrub_tree on a real directory.

Secret-shaped values are generated at test time (``FakeSecrets``), never written here literally.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from codellm_assets.core.data.scrub.keywords import KEY, PASSWORD, SECRET, classify_identifier
from codellm_assets.core.data.scrub.lookalikes import is_placeholder
from codellm_assets.core.data.scrub.scrubber import ScrubInputError, find_leftovers, scrub_text, scrub_tree
from codellm_assets.settings import ScrubSettings
from codellm_assets.testing.secrets_labelled import (
    ALNUM,
    HEX,
    UPPER_ALNUM,
    URLSAFE,
    FakeSecrets,
    build_labelled_set,
    evaluate,
    rates,
)

F = FakeSecrets(1234)
PEM_LINES = F.pem_body(400)
# Built from parts so this file itself never reads as a key to a scanner (the project's own repo is in the
# default corpus, and its blocking leftover check runs on it).
PEM_KIND = "RSA " + "PRIVATE KEY"
PEM = f"-----BEGIN {PEM_KIND}-----\n" + "\n".join(PEM_LINES) + f"\n-----END {PEM_KIND}-----\n"
AWS_KEY = "AKIA" + F.chars(16, UPPER_ALNUM)
GITHUB = "ghp_" + F.chars(36)
SLACK_HOOK = F.slack_webhook()
JWT = F.jwt()

# (placeholder kind, text holding the secret, the secret, a look-alike that must be kept)
RULES = [
    ("aws_access_key", f'key_id = "{AWS_KEY}"', AWS_KEY, 'key_id = "AKIA' + 'IOSFODNN7' + 'EXAMPLE"'),
    ("aws_secret_key", "AWS_SECRET_ACCESS_KEY=" + (s := F.aws_secret()), s,
     'aws_secret_access_key = os.environ["AWS_SECRET_ACCESS_KEY"]'),
    ("github_token", f"token: {GITHUB}", GITHUB, "token: ghp_" + "x" * 36),
    ("github_token", "GH=" + (s := "github_pat_" + F.chars(22) + "_" + F.chars(59)), s, "see github_pat_docs"),
    ("gitlab_token", "CI_TOKEN=" + (s := "glpat-" + F.chars(20, URLSAFE)), s, "prefix = 'glpat-'"),
    ("slack_token", f'SlackClient("{(s := F.slack_token())}")', s, "xoxb-your-token"),
    ("slack_webhook", f'url = "{SLACK_HOOK}"', SLACK_HOOK[8:],
     'url = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"'),
    ("stripe_key", f"stripe.api_key = '{(s := 'sk_live_' + F.chars(24))}'", s, "pk_test_TYooMQauvdEDq54NiTphI7jx"),
    ("google_api_key", f'KEY = "{(s := F.google())}"', s, 'KEY = "AIzaSy-your-key"'),
    ("openai_key", f"OPENAI_API_KEY={(s := F.openai())}", s, "model = 'sk-learn-pipeline'"),
    ("anthropic_key", f"key = '{(s := F.anthropic())}'", s, "header = 'sk-ant-'"),
    ("jwt", f'auth = "{JWT}"', JWT, 'prefix = "eyJhbGciOi"'),
    ("db_password", f'DB = "postgresql://app:{(s := F.chars(16))}@db:5432/x"', s,
     'DB = "postgresql://user:password@localhost/x"'),
    ("url_password", f"git clone https://bot:{(s := F.chars(14))}@git.acme.io/r.git", s,
     "git clone https://git.acme.io/r.git"),
    ("azure_storage_key", "AccountName=a;AccountKey=" + (s := base64.b64encode(F.rng.randbytes(64)).decode()), s,
     "AccountName=a;AccountKey=<key>"),
    ("vault_token", f"VAULT_TOKEN={(s := 'hvs.' + F.chars(90, URLSAFE))}", s, "VAULT_TOKEN=${VAULT_TOKEN}"),
    ("npm_token", f"//registry.npmjs.org/:_authToken={(s := 'npm_' + F.chars(36))}", s,
     "//registry.npmjs.org/:_authToken=${NPM_TOKEN}"),
    ("twilio_key", f"sid = '{(s := 'AC' + F.chars(32, HEX))}'", s, "sid = 'ACCOUNT_SID'"),
    ("sendgrid_key", f"SG_KEY={(s := 'SG.' + F.chars(22, URLSAFE) + '.' + F.chars(43, URLSAFE))}", s,
     "SG.version = 3"),
    ("auth_header", f'h = {{"Authorization": "Bearer {(s := F.chars(40, URLSAFE))}"}}', s,
     'h = {"Authorization": f"Bearer {token}"}'),
    ("auth_header", "Authorization: Basic " + (s := base64.b64encode(b"ci:" + F.chars(12).encode()).decode()), s,
     "Authorization: Basic realm"),
    ("heroku_api_key", f"HEROKU_API_KEY: {(s := F.uuid())}", s, f'request_id = "{F.uuid()}"'),
    ("mailgun_key", f"MG = '{(s := 'key-' + F.chars(32, HEX))}'", s, "MG = 'key-value-store'"),
    ("shopify_token", f"SHOP={(s := 'shpat_' + F.chars(32, HEX))}", s, "shpat_ = None"),
    ("pypi_token", f"password = {(s := 'pypi-AgEIcHlwaS5vcmc' + F.chars(70, URLSAFE))}", s, "pypi-version = 1"),
    ("docker_auth", '{"auth": "' + (s := base64.b64encode(b"bot:" + F.chars(12).encode()).decode()) + '"}', s,
     '{"auth": "token"}'),
    ("huggingface_token", f"HF_TOKEN={(s := 'hf_' + F.chars(34, ALNUM[:52]))}", s, "hf_hub_download(repo_id)"),
    ("telegram_bot_token", f"bot = Bot('{(s := F.chars(10, '0123456789') + ':' + F.chars(35, URLSAFE))}')", s,
     "ts = '20240115:build'"),
    ("databricks_token", f"DATABRICKS_TOKEN={(s := 'dapi' + F.chars(32, HEX))}", s, "dapi_version = 2"),
    ("private_key", PEM, PEM_LINES[2], "if line.startswith('-----BEGIN RSA PRIVATE KEY-----'):"),
    ("password", f'password = "{(s := F.password())}"', s, "password = None"),
    ("password", f"DB_PASSWORD={(s := F.password())}", s, "DB_PASSWORD=${DB_PASSWORD}"),
    ("password", f"<password>{(s := F.password())}</password>", s, "<password>changeme</password>"),
    ("password", f"curl -u admin:{(s := F.password())} https://x", s, "curl -u admin:$PASS https://x"),
    ("generic_secret", f"client_secret: {(s := F.chars(32))}", s, "client_secret: {{ vault.client_secret }}"),
    ("generic_secret", f'API_KEY = "{(s := F.chars(40, HEX))}"', s, 'API_KEY_HEADER = "X-API-Key"'),
]


@pytest.mark.parametrize(("kind", "text", "secret", "lookalike"), RULES,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(RULES)])
def test_rule_redacts_its_secret_and_keeps_its_lookalike(kind, text, secret, lookalike):
    result = scrub_text(text)
    assert secret not in result.text, result.text
    assert f"<SECRET:{kind}>" in result.text and result.counts.get(kind, 0) >= 1, (result.text, result.counts)
    kept = scrub_text(lookalike)
    assert kept.text == lookalike and kept.counts == {}


# keyword-anchored secrets in more syntaxes: (text, the secret)
CONTEXTS = [
    (f"mysqldump --user=root --password={(s := F.password())} shop", s),
    (f"PGPASSWORD={(s := F.password())} psql -h db -U app", s),
    (f'url = "jdbc:postgresql://db/app?user=app&password={(s := F.password())}"', s),
    (f"conn = 'Server=db;Database=x;User Id=u;Password={(s := F.chars(14))};'", s),
    (f"machine api.acme.io\n  login bot\n  password {(s := F.chars(20))}\n", s),
    (f"define('DB_PASSWORD', '{(s := F.password())}');", s),
    (f'curl -H "X-API-Key: {(s := F.chars(32))}" https://api.acme.io', s),
    (f"password: str = '{(s := F.password())}'", s),
    (f"DB_PASSWORD=={(s := F.chars(12))}", s),
    (f"data:\n  password: {(s := base64.b64encode(F.chars(12).encode()).decode())}\n", s),
    (f"apiSecret := \"{(s := F.chars(32))}\"", s),
]


@pytest.mark.parametrize(("text", "secret"), CONTEXTS)
def test_keyword_contexts(text, secret):
    assert secret not in scrub_text(text).text


KEEP = [
    "{'pass': 'bandpass'}", "INVALID_PASSWORD = '28P01'", '"next_page_token": "eyJpbmRleCI6IDExfQ==",',
    "key = 'datasets/year=2019/part-0.parquet'", "lo, hi = -2147483648, +2147483647",
    'uri = "postgresql://postgres:postgres@localhost:5432/db"', "access_token (Optional(str)): The token.",
    "password auth is disabled", "secret_ref: 'V1SecretEnvSource'", "def f(private_key: PKCS7PrivateKeyTypes,",
    "if inspector_params.token0 == metadata_params.token0:", "ssl_credentials=default_ssl_credentials)",
    "# cached token: `get_token()` may refresh", "token = r\"[-!#$%&'*+.^_`|~0-9a-zA-Z]+\"",
    "PW_REGEX = r'^(?=.*[A-Z]).{8,}$'", "'gss_krb5_lucid_key', 'gss_krb5_rfc1964_keydata',",
    "DAGSTER_PG_PASSWORD_SECRET_KEY = \"postgresql-password\"", "ext_pw_out_channel: int = 1024",
]


@pytest.mark.parametrize("text", KEEP)
def test_lookalikes_in_code_are_kept(text):
    assert scrub_text(text).text == text
    assert find_leftovers(text) == []


PII = [
    ('owner = "jane.doe@acme-corp.com"', 'owner = "<EMAIL>"'),
    ("# Author: R. Patel <r.patel@uni.edu>", "# Author: R. Patel <<EMAIL>>"),
    ('EMAIL = "user@example.com"', None),
    ("git clone git@github.com:acme/x.git", None),
    ('FROM = "noreply@github.com"', None),
    ("y = x@self.weight.T", None),
    ("@pytest.mark.parametrize('a', [1])", None),
    ('HOST = "10.24.3.17"', 'HOST = "<IP>"'),
    ("server 34.201.12.9:8080;", None), ('PEER = "2a00:1450:4001:82b::200e"', None),  # public: kept
    ('DNS = ["8.8.8.8", "1.1.1.1", "9.9.9.9"]', None), ('ULA = "fd12:3456:789a:1::1"', 'ULA = "<IP>"'),
    ('NAT = "100.64.7.3"', 'NAT = "<IP>"'), ("ops@db01.corp.internal", "<EMAIL>"),
    ("to: dba@acme.local", "to: <EMAIL>"),
    ('HOST = "127.0.0.1"', None), ('bind = "0.0.0.0"', None), ('addr = "::1"', None),
    ('TEST = "192.0.2.10"', None), ('v6 = "2001:db8::1"', None), ('netmask = "255.255.255.0"', None),
    ('__version__ = "1.2.3.4"', None), ('cidr = "10.0.0.0/8"', None), ("x = arr[1::2]", None),
    ('OID = ObjectIdentifier("2.5.29.17")', None), ('mac = "00:1a:2b:3c:4d:5e"', None),
    ('SUPPORT = "+1 (415) 555-0132"', 'SUPPORT = "<PHONE>"'),
    ("call +44 20 7946 0958 today", "call <PHONE> today"),
    ('fax = "415-555-0199"', 'fax = "<PHONE>"'),
    ('released = "2024-01-15"', None), ("n = 1234567890", None), ('isbn = "978-3-16-148410-0"', None),
    ("x = 1e+10", None), ('zip_code = "94105-1234"', None),
]


@pytest.mark.parametrize(("text", "expected"), PII)
def test_pii(text, expected):
    assert scrub_text(text).text == (expected if expected is not None else text)


@pytest.mark.parametrize(("ident", "tier"), [
    ("password", PASSWORD), ("DB_PASSWORD", PASSWORD), ("dbPassword", PASSWORD), ("smtp_pass", PASSWORD),
    ("--passphrase", PASSWORD), ("api_key", SECRET), ("X-Api-Key", SECRET), ("clientSecret", SECRET),
    ("AUTH_TOKEN", SECRET), ("credentials", SECRET), ("STRIPE_KEY", KEY), ("signing_key", SECRET),
    ("tokenizer", None), ("keyboard", None), ("bypass", None), ("pass", PASSWORD), ("db_pw", PASSWORD),
    ("ext_pw_out_channel", None), ("key_node", None), ("password_field", None),
    ("token_url", None), ("public_key", None), ("secretary", None), ("max_tokens", None), ("sort_key", KEY),
])
def test_identifier_tiers(ident, tier):
    assert classify_identifier(ident) == tier


@pytest.mark.parametrize(("value", "placeholder"), [
    ("<your-api-key>", True), ("${DB_PASSWORD}", True), ("{{ vault_token }}", True), ("%(password)s", True),
    ("changeme", True), ("xxx", True), ("XXXX-XXXX", True), ("***", True), ("None", True), ("$TOKEN", True),
    ("your_token_here", True), ("postgresql-password", True), ("<SECRET:password>", True),
    ("hunter2x9", False), ("Tr0ub4dor&3", False), (F.chars(32), False),
])
def test_placeholders(value, placeholder):
    assert is_placeholder(value) is placeholder


def test_labelled_set_recall_and_keep_rate():
    for seed in range(3):
        samples = build_labelled_set(seed)
        kinds = {s.kind for s in samples if s.is_secret}
        assert len(kinds) >= 20 and sum(not s.is_secret for s in samples) >= 60
        recall, keep = rates(evaluate(samples, lambda t: scrub_text(t).text))
        assert recall >= 0.99 and keep >= 0.95, (seed, recall, keep)


def test_scrub_is_idempotent_and_counts_by_type():
    text = "\n".join(s.text for s in build_labelled_set(7))
    once = scrub_text(text)
    assert scrub_text(once.text).text == once.text
    assert once.counts["private_key"] == 6 and once.counts["email"] >= 5 and once.counts["ip"] >= 8


@pytest.mark.timeout(60)
def test_degenerate_input_stays_linear():
    """Repeated trigger literals on one 1 MB line: a quadratic scan would take many minutes here."""
    for unit in ("eyJ", "-----BEGIN RSA PRIVATE KEY-----\n", "a=b;password=x1y2z3;", "://a:b@", "ghp_"):
        text = unit * (1_000_000 // len(unit))
        result = scrub_text(text)
        assert find_leftovers(result.text) == []


def test_pem_block_is_replaced_whole_across_lines():
    out = scrub_text("before\n" + PEM + "after\n").text
    assert out == "before\n<SECRET:private_key>\nafter\n"


def test_entropy_threshold_setting():
    text = f"api_key = '{F.chars(24, 'abcdef0123')}'"  # ~3.3 bits/char
    assert "<SECRET:generic_secret>" in scrub_text(text).text
    assert scrub_text(text, ScrubSettings(entropy_threshold=4.5)).text == text


def test_disabled_rules_keep_that_kind_only():
    text = f'key_id = "{AWS_KEY}"\ntoken = "{GITHUB}"\n'
    result = scrub_text(text, ScrubSettings(disabled_rules=["aws_access_key"]))
    assert AWS_KEY in result.text and GITHUB not in result.text and result.counts == {"github_token": 1}
    assert [f.type for f in find_leftovers(result.text)] == ["AWS Access Key"]  # the re-scan still sees it


def test_pii_switches():
    text = 'email = "jane@acme-corp.com"; ip = "10.1.2.3"; tel = "+1 (415) 555-0132"'
    off = ScrubSettings(redact_emails=False, redact_ips=False, redact_phones=False)
    assert scrub_text(text, off).text == text
    assert scrub_text(text).counts == {"email": 1, "ip": 1, "phone": 1}


# --- the independent leftover scan ----------------------------------------------------------------------
def test_find_leftovers_is_clean_on_scrubbed_labelled_set():
    for seed in range(3):
        for sample in build_labelled_set(seed):
            scrubbed = scrub_text(sample.text).text
            assert find_leftovers(scrubbed) == [], (sample.kind, scrubbed)


@pytest.mark.parametrize(("planted", "secret"), [
    (f'AWS_ACCESS_KEY_ID = "{AWS_KEY}"', AWS_KEY), (f"token = '{GITHUB}'", GITHUB),
    (PEM, "BEGIN RSA PRIVATE KEY"), (f"hook = {SLACK_HOOK}", SLACK_HOOK[30:]), (f"jwt = {JWT}", JWT),
    (f"k = '{(s := 'sk_live_' + F.chars(24))}'", s), (f"url = 'mysql://u:{(s := F.chars(12))}@h/db'", s),
    (f"g = '{(s := F.google())}'", s),
])
def test_find_leftovers_catches_planted_secrets_and_masks_them(planted, secret):
    text = "import os\n\n" + planted + "\nprint('done')\n"
    findings = find_leftovers(text)
    assert findings and findings[0].line == 3
    assert all(secret not in f.excerpt for f in findings)
    assert find_leftovers(scrub_text(text).text) == []


def test_real_code_scrubs_without_leftovers():
    """Real Python (the installed stdlib and pytest): nothing the independent scan flags survives."""
    import email

    import _pytest

    files = sorted(Path(email.__file__).parent.rglob("*.py")) + sorted(Path(_pytest.__file__).parent.rglob("*.py"))
    text = "\n".join(p.read_text(encoding="utf-8") for p in files[:120])
    assert len(text) > 500_000
    result = scrub_text(text)
    assert find_leftovers(result.text) == []
    assert sum(n for k, n in result.counts.items() if k not in ("email", "ip", "phone")) <= 3, result.counts


# --- scrub_tree --------------------------------------------------------------------------------------------
def test_scrub_tree_writes_copies_and_skips_bad_files(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "settings.py").write_bytes(f'TOKEN = "{GITHUB}"\r\nOWNER = "ops@acme-corp.com"\r\n'.encode())
    (src / "README.md").write_text("plain text, nothing secret\n")
    (src / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(64))
    (src / "latin1.txt").write_bytes("café = 'menu'\n".encode("latin-1"))
    (src / ".git").mkdir()
    (src / ".git" / "config").write_text("[core]\n")
    seen: list[str] = []
    report = scrub_tree(src, dst, progress=lambda done, total, rel: seen.append(rel))
    assert report.files_written == 2
    assert report.files_skipped == {"NOT_TEXT": 1, "NOT_UTF8": 1}
    assert report.counts == {"github_token": 1, "email": 1}
    assert (dst / "pkg" / "settings.py").read_bytes() == b'TOKEN = "<SECRET:github_token>"\r\nOWNER = "<EMAIL>"\r\n'
    assert (dst / "README.md").read_text() == "plain text, nothing secret\n"
    assert not (dst / "logo.png").exists() and not (dst / ".git").exists()
    assert sorted(seen) == ["README.md", "latin1.txt", "logo.png", "pkg/settings.py"]


def test_scrub_tree_single_file(tmp_path):
    src = tmp_path / "app.env"
    src.write_text(f"AWS_ACCESS_KEY_ID={AWS_KEY}\n")
    report = scrub_tree(src, tmp_path / "out")
    assert (tmp_path / "out" / "app.env").read_text() == "AWS_ACCESS_KEY_ID=<SECRET:aws_access_key>\n"
    assert report.counts == {"aws_access_key": 1}


@pytest.mark.parametrize(("src", "dst", "message"), [
    ("missing", "out", "does not exist"), ("src", "src/out", "inside the source"),
    ("src/inner", "src", "inside the destination"), ("src", "file.txt", "not a directory"),
])
def test_scrub_tree_rejects_bad_paths(tmp_path, src, dst, message):
    (tmp_path / "src" / "inner").mkdir(parents=True)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ScrubInputError, match=message):
        scrub_tree(tmp_path / src, tmp_path / dst)
