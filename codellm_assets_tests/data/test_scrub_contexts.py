"""Internal hosts, password hashes, passwords by context and base64-hidden credentials: a true and a false
example beside every rule, and the company-style labelled set (tuning and held-back slices) with the
issue's floors. Secret values are generated at test time (``Gen``), never written here literally."""

from __future__ import annotations

import base64
import json

import pytest

from codellm_assets.core.data.scrub.scrubber import scrub_text
from codellm_assets.settings import ScrubSettings
from codellm_assets.testing.company_secrets import Gen, build_company_files, score_files, totals

G = Gen(77)
PW = [G.password() for _ in range(40)]
LOWER_PW = "".join(G.pick(*"bcdfghjklmnpqrstvwxz") for _ in range(9))  # a random all-letters password

HOSTS = [  # (text, host that must go, look-alike kept)
    ("jdbc:postgresql://pg-01.prod.corp.internal:5432/app", "pg-01.prod.corp.internal",
     "from google.protobuf.internal import enum_type_wrapper"),
    ("REDIS_HOST=cache.int.acme.net", "cache.int.acme.net", "local = threading.local()"),
    ("ssh build-07.corp", "build-07.corp", "package com.acme.internal;"),
    ("smb://nas.lan/share", "nas.lan", "cp .env.local .env"),
    ("ping printer.local", "printer.local", "settings.local.py"),
    ("https://wiki.acme.intra/page", "wiki.acme.intra", "clusterDomain: cluster.local"),
    ("amqp://guest@rabbit-3.eu1.internal:5672", "rabbit-3.eu1.internal", "curl https://github.com/x"),
    ("mongodb://a.db.acme-corp.com:27017,b.db.acme-corp.com/x", "b.db.acme-corp.com", "jdbc:h2:mem:test"),
    ("upstream: ldap.int.acme.com", "ldap.int.acme.com", "host.docker.internal:5432"),
    ("RUN echo deploy@build.acme.internal", "build.acme.internal", "x = cfg.internal['a']"),
]


@pytest.mark.parametrize(("text", "host", "kept"), HOSTS)
def test_internal_hosts(text, host, kept):
    out = scrub_text(text).text
    assert host not in out and ("<HOST>" in out or "<EMAIL>" in out), out
    assert scrub_text(kept).text == kept


def test_internal_domains_setting():
    text = "API = 'https://billing.acme.io/v1'; DOCS = 'https://docs.python.org'"
    assert scrub_text(text).text == text  # acme.io is public until the company names it
    out = scrub_text(text, ScrubSettings(internal_domains=["acme.io"])).text
    assert "billing.acme.io" not in out and "docs.python.org" in out
    assert scrub_text("vault.internal", ScrubSettings(redact_hosts=False)).text == "vault.internal"


@pytest.mark.parametrize("seed", range(9))
def test_password_hashes(seed):
    g = Gen(seed)
    formats = [g.password_hash() for _ in range(30)]  # every layout of Gen.password_hash, several times
    for value in formats:
        out = scrub_text(f"hash: '{value}'").text
        assert value not in out and "<SECRET:password_hash>" in out, (value, out)
    for kept in ("$2b$<cost>$<salt+hash>", "$argon2id$v=19$m=<mem>,t=<iter>,p=<par>$<salt>$<hash>",
                 'PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]', "echo $6 $5 $1"):
        assert scrub_text(kept).text == kept


CONTEXTS = [  # (text, password, look-alike kept)
    (f"CREATE USER app WITH PASSWORD '{PW[0]}';", PW[0], "ALTER ROLE app PASSWORD NULL;"),
    (f"CREATE USER 'x'@'%' IDENTIFIED BY '{PW[1]}';", PW[1], "a library identified by 'name'"),
    (f"CREATE ROLE ro LOGIN PASSWORD '{PW[2]}' VALID UNTIL 'infinity';", PW[2], "ALTER ROLE ro VALID UNTIL 'x';"),
    (f"CREATE LOGIN svc WITH PASSWORD = '{PW[3]}';", PW[3], "WITH PASSWORD = '${SVC_PASSWORD}';"),
    (f"mysql -h db -u root -p'{PW[4]}' shop", PW[4], "mysql -h db -P3306 -u root -p shop"),
    (f"mysqldump -uadmin -p{LOWER_PW} shop", LOWER_PW, "mysqldump -uadmin -p$MYSQL_PWD shop"),
    (f"sshpass -p '{PW[5]}' scp a b", PW[5], "sshpass -p \"$SSHPASS\" scp a b"),
    (f"docker login -u ci -p {PW[6]} ghcr.io", PW[6], "docker login -u ci -p $CI_TOKEN ghcr.io"),
    (f"redis-cli -h cache -a {PW[7]} ping", PW[7], "redis-cli -h cache -a $REDIS_PASS ping"),
    (f"ldapsearch -x -D cn=admin -w {PW[8]} -b dc=x", PW[8], "ldapsearch -x -W -b dc=x"),
    (f"openssl rsa -in k.pem -passin pass:{PW[9]}", PW[9], "openssl rsa -in k.pem -passin env:KEY_PASS"),
    (f"PGPASSWORD={PW[10]} psql -h db", PW[10], "PGPASSWORD=$PGPASS psql -h db"),
    (f'ds.setPassword("{PW[11]}");', PW[11], "ds.setPassword(System.getenv(\"DB_PASSWORD\"));"),
    (f'builder.username("app").password("{PW[12]}").build()', PW[12], "builder.password(props.get(\"pw\"))"),
    (f'DriverManager.getConnection(url, "app", "{PW[13]}")', PW[13], "DriverManager.getConnection(url, user, pw)"),
    (f'requests.get(u, auth=("svc", "{PW[14]}"))', PW[14], "requests.get(u, auth=(user, password))"),
    (f"app.use(basicAuth({{ users: {{ admin: '{PW[15]}', ops: '{PW[16]}' }} }}))", PW[16],
     "app.use(basicAuth({ users: loadUsers() }))"),
    (f"The admin password is {PW[17]} (rotate it).", PW[17], "The admin password is stored in Vault."),
    (f"- password: `{PW[18]}`", PW[18], "- password: `<ask the on-call>`"),
    (f"spring.datasource.password={PW[19]}", PW[19], "spring.datasource.password=${DB_PASSWORD}"),
    (f"db.pass = {LOWER_PW}", LOWER_PW, "db.pass = ${DB_PASS}"),
    (f"spring:\n  datasource:\n    password: {LOWER_PW}\n", LOWER_PW, "spring:\n  datasource:\n    password: ${PW}\n"),
    (f"environment:\n  - POSTGRES_PASSWORD={PW[20]}\n", PW[20], "environment:\n  - POSTGRES_PASSWORD\n"),
    (f"curl -u deploy:{PW[21]} https://x", PW[21], "curl -u deploy https://x"),
    (f"curl --user ci:{PW[22]} -X POST https://x", PW[22], "curl --user \"$CI_USER:$CI_PASS\" https://x"),
    (f"web1 ansible_host=h ansible_password={LOWER_PW}", LOWER_PW, "web1 ansible_password={{ vault_pw }}"),
    (f"self.password = {LOWER_PW}x", None, "self.password = passb"),
]


@pytest.mark.parametrize(("text", "password", "kept"), CONTEXTS)
def test_passwords_by_context(text, password, kept):
    if password is not None:
        out = scrub_text(text).text
        assert password not in out and "<SECRET:" in out, out
    assert scrub_text(kept).text == kept


def test_django_secret_key_quoted_and_bare():
    key = G.django_key()
    for text in (f"SECRET_KEY = '{key}'", f"      - SECRET_KEY={key}", f'DJANGO_SECRET_KEY: "{key}"'):
        assert key not in scrub_text(text).text, text
    # built from parts: a re-scan of this repository must not read the look-alike as a keyword secret
    kept = "_".join(["SECRET", "KEY"]) + ' = "django-insecure-' + "-".join(["change", "me", "in", "production"]) + '"'
    assert scrub_text(kept).text == kept


def test_base64_credentials_are_decoded():
    cfg = G.dockerconfig("registry.example.com")
    data_pw = base64.b64encode(PW[23].encode()).decode()
    cert = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n").decode()
    folded = base64.b64encode(("x" + PW[24]) .encode() * 4).decode()
    manifest = ("apiVersion: v1\nkind: Secret\ntype: kubernetes.io/dockerconfigjson\ndata:\n"
                f"  .dockerconfigjson: {cfg}\n  db-password: \"{data_pw}\"\n  ca.crt: {cert}\n"
                f"  token: >-\n    {folded[:40]}\n    {folded[40:]}\n")
    out = scrub_text(manifest).text
    assert cfg not in out and data_pw not in out and folded[:40] not in out and folded[40:] not in out, out
    assert cert in out  # public material stays
    # the same base64 JSON without credentials inside (a pagination cursor) is kept
    cursor = base64.b64encode(json.dumps({"page": 3, "size": 50}).encode()).decode()
    assert scrub_text(f"next: {cursor}").text == f"next: {cursor}"


def test_bearer_uuid_and_short_keyword_keys():
    token, key = G.uuid(), G.api_key()
    out = scrub_text(f'-H "Authorization: Bearer {token}"\nENV API_TOKEN={key}\n').text
    assert token not in out and key not in out
    kept = f'request_id = "{G.uuid()}"\n'
    assert scrub_text(kept).text == kept


def test_public_addresses_kept_private_redacted():
    text = "nameserver 8.8.8.8\nnameserver 1.1.1.1\nnameserver 9.9.9.9\nhost 192.0.2.7\ndb 10.1.2.3\n"
    assert scrub_text(text).text == text.replace("10.1.2.3", "<IP>")


@pytest.mark.parametrize("slice_", ["tuning", "held", "fresh"])
def test_company_files_recall_and_keep_rate(slice_):
    """The issue's bar on the generated company files: recall >= 0.99, every type >= 0.95, kept >= 0.95."""
    files = build_company_files(slice_, seeds=1, per_template=6)
    stats = score_files(files, lambda t: scrub_text(t).text)
    recall, kept = totals(stats)
    worst = {k: ok / n for k, (n, ok) in stats.items() if ok / n < 0.95}
    assert recall >= 0.99 and kept >= 0.95 and not worst, (recall, kept, worst)


@pytest.mark.timeout(30)
def test_chpasswd_header_without_a_list_does_not_backtrack_exponentially():
    # A file that mentions "chpasswd:" followed by many indented lines and no "list:" (this project's own
    # contexts.py) took minutes: "[ \t]+[^\n]*" split each line's indent every possible way. Old: 8**30 tries.
    text = "chpasswd:\n" + "        x = 1\n" * 30 + "end\n"
    assert scrub_text(text).text == text
    block = f"chpasswd:\n  expire: false\n  list: |\n    root:{PW[0]}\n"
    assert PW[0] not in scrub_text(block).text
