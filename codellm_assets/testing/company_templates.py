"""TUNING templates for the company-style labelled set (see ``company_secrets``): the scrubber was tuned on
these. Each template fills ``g.file`` (path and text) through ``g.s`` (a secret) and ``g.k`` (a look-alike)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from codellm_assets.testing.company_secrets import HEX, Gen

# RFC 4231 test case 1 (HMAC-SHA256 of "Hi There"), computed: a literal 64-hex string would read as a secret to
# the high-entropy scanners that re-scan this repository
RFC4231_VECTOR = hmac.new(b"\x0b" * 20, b"Hi There", hashlib.sha256).hexdigest()
CERT_B64 = base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()  # a public certificate's base64 head


def sql_migration(g: Gen) -> None:
    user = g.pick("app_rw", "reporting", "etl_loader", "billing")
    g.file.path = f"db/migrations/V{g.rng.randint(1, 90)}__create_{user}.sql"
    g.file.text = (
        f"-- {g.k('version', 'Flyway ' + g.version())} migration, owner {g.s('email', g.email())}\n"
        f"CREATE USER {user} WITH PASSWORD '{g.s('password', g.password())}';\n"
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user};\n"
        f"CREATE USER 'legacy'@'%' IDENTIFIED BY '{g.s('password', g.password())}';\n"
        f"ALTER ROLE readonly PASSWORD '{g.k('placeholder', g.placeholder())}';\n"
        f"INSERT INTO users (email, password_hash) VALUES ('{g.s('email', g.email())}', "
        f"'{g.s('password_hash', g.password_hash())}');\n"
        f"-- checksum {g.k('digest', g.sha())}\n"
    )


def spring_properties(g: Gen) -> None:
    host = g.host()
    g.file.path = f"src/main/resources/application-{g.pick('prod', 'staging', 'dev')}.properties"
    g.file.text = (
        f"spring.datasource.url=jdbc:postgresql://{g.s('internal_host', host)}:5432/orders\n"
        f"spring.datasource.username=orders\n"
        f"spring.datasource.password={g.s('password', g.password())}\n"
        f"spring.rabbitmq.host={g.s('internal_host', g.host())}\n"
        f"spring.rabbitmq.password={g.s('password', g.password())}\n"
        f"app.version={g.k('version', g.version())}\n"
        f"app.dns.fallback={g.k('public_ip', g.public_ip())}\n"
        f"spring.mail.password={g.k('placeholder', '${MAIL_PASSWORD}')}\n"
    )


def spring_yaml(g: Gen) -> None:
    g.file.path = "src/main/resources/application.yml"
    g.file.text = (
        "spring:\n  datasource:\n"
        f"    url: jdbc:mysql://{g.s('internal_host', g.host())}:3306/shop?useSSL=true\n"
        f"    username: shop\n    password: {g.s('password', g.password())}\n"
        f"  redis:\n    host: {g.s('internal_host', g.host())}\n    password: \"{g.s('password', g.password())}\"\n"
        f"management:\n  server:\n    address: {g.s('private_ip', g.private_ip())}\n"
        f"build:\n  commit: {g.k('digest', g.sha(40))}\n"
    )


def java_datasource(g: Gen) -> None:
    g.file.path = f"src/main/java/com/{g.company}/db/DataSourceConfig.java"
    g.file.text = (
        f"package com.{g.company}.db;\n\nimport com.zaxxer.hikari.HikariDataSource;\n\n"
        "public class DataSourceConfig {\n"
        f"    private static final String DB_PASS = \"{g.s('password', g.password())}\";\n"
        f"    private static final String BUILD_ID = \"{g.k('uuid', g.uuid())}\";\n\n"
        "    public HikariDataSource dataSource() {\n        HikariDataSource ds = new HikariDataSource();\n"
        f"        ds.setJdbcUrl(\"jdbc:postgresql://{g.s('internal_host', g.host())}:5432/app\");\n"
        f"        ds.setUsername(\"app\");\n        ds.setPassword(\"{g.s('password', g.password())}\");\n"
        "        return ds;\n    }\n}\n"
    )


def compose(g: Gen) -> None:
    g.file.path = "docker-compose.yml"
    pw = g.password(url_safe=True)
    g.file.text = (
        "services:\n  db:\n    image: postgres:" + g.k("version", g.version()) + "\n    environment:\n"
        f"      POSTGRES_PASSWORD: {g.s('password', g.password())}\n      POSTGRES_USER: app\n"
        f"  worker:\n    image: {g.k('public_host', 'ghcr.io')}/{g.company}/worker@sha256:{g.k('digest', g.sha())}\n"
        "    environment:\n"
        f"      - DATABASE_URL=postgres://app:{g.s('password', pw)}@db:5432/app\n"
        f"      - AMQP_URL=amqp://{g.s('internal_host', g.host())}:5672\n"
        f"      - SECRET_KEY={g.s('django_secret_key', g.django_key())}\n"
        f"    dns:\n      - {g.k('public_ip', g.public_ip())}\n"
    )


def dockerfile(g: Gen) -> None:
    g.file.path = "Dockerfile"
    g.file.text = (
        f"FROM python:{g.k('version', '3.' + str(g.rng.randint(9, 13)))}-slim\n"
        f"LABEL maintainer=\"{g.s('email', g.email())}\"\n"
        f"ARG PIP_INDEX_URL=https://{g.s('internal_host', g.host())}/simple\n"
        f"RUN echo '{g.s('private_ip', g.private_ip())} {g.s('internal_host', g.host())}' >> /etc/hosts\n"
        f"ENV API_TOKEN={g.s('api_key', g.api_key())}\n"
        f"RUN curl -fsSL https://{g.k('public_host', 'deb.debian.org')}/key.gpg | apt-key add -\n"
    )


def shell_script(g: Gen) -> None:
    g.file.path = f"scripts/backup_{g.pick('db', 'orders', 'ledger')}.sh"
    g.file.text = (
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        f"mysqldump -h {g.s('internal_host', g.host())} -u backup -p'{g.s('password', g.password())}' shop > dump.sql\n"
        f"PGPASSWORD={g.s('password', g.password())} psql -h {g.s('private_ip', g.private_ip())} -U etl -c 'select 1'\n"
        f"sshpass -p '{g.s('password', g.password())}' scp dump.sql backup@{g.s('internal_host', g.host())}:/srv\n"
        f"curl -u deploy:{g.s('password', g.password(url_safe=True))} https://{g.s('internal_host', g.host())}/api\n"
        f"sha256sum dump.sql  # expect {g.k('digest', g.sha())}\n"
        f"ping -c1 {g.k('public_ip', g.public_ip())}\n"
    )


def runbook(g: Gen) -> None:
    g.file.path = f"docs/runbooks/{g.pick('failover', 'rotate-keys', 'oncall')}.md"
    g.file.text = (
        "# Database failover\n\n"
        f"1. SSH to `{g.s('internal_host', g.host())}` as `ops`.\n"
        f"2. The admin password is {g.s('password', g.password())} (rotate after use).\n"
        f"3. Vault root: `password: {g.s('password', g.password())}`\n"
        f"4. Page {g.s('email', g.email(internal=True))} if replication lag stays high.\n"
        f"5. Check resolver {g.k('public_ip', g.public_ip())} and the pinned key fingerprint "
        f"`SHA256:{g.k('digest', g.b64(g.rng.randbytes(32), False))}`.\n"
        f"6. Use `export DB_PASSWORD={g.k('placeholder', '<your password>')}` locally.\n"
    )


def terraform(g: Gen) -> None:
    g.file.path = f"infra/{g.pick('rds', 'cache', 'mq')}.tf"
    g.file.text = (
        'resource "aws_db_instance" "main" {\n'
        f'  identifier = "orders-{g.k("uuid", g.uuid())}"\n'
        f'  password   = "{g.s("password", g.password())}"\n'
        f'  engine_version = "{g.k("version", g.version())}"\n}}\n\n'
        'provider "datadog" {\n'
        f'  api_key = "{g.s("api_key", g.chars(32, HEX))}"\n'
        f'  app_key = "{g.s("api_key", g.hex40())}"\n}}\n'
        f'variable "db_password" {{ default = "{g.k("placeholder", "changeme")}" }}\n'
    )


def helm_values(g: Gen) -> None:
    g.file.path = "charts/app/values-prod.yaml"
    g.file.text = (
        "image:\n  repository: " + g.k("public_host", "ghcr.io") + f"/{g.company}/app\n"
        f"  tag: \"{g.k('version', g.version())}\"\n"
        f"ingress:\n  host: {g.s('internal_host', g.host())}\n"
        f"postgresql:\n  auth:\n    password: {g.s('password', g.password())}\n"
        f"secrets:\n  sentryDsn: https://{g.chars(32, HEX)}@o1.ingest.sentry.io/1\n"
        f"  apiKey: \"{g.s('api_key', g.api_key())}\"\n"
    )


def k8s_secret(g: Gen) -> None:
    g.file.path = f"k8s/{g.pick('registry', 'db')}-secret.yaml"
    cfg = g.dockerconfig(g.pick("ghcr.io", g.host()))
    pw = g.b64(g.password().encode())
    g.file.text = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\ntype: kubernetes.io/dockerconfigjson\ndata:\n"
        f"  .dockerconfigjson: {g.s('dockerconfigjson', cfg)}\n"
        f"  db-password: \"{g.s('k8s_secret_data', pw)}\"\n"
        f"  ca.crt: {g.k('public_key', CERT_B64)}\n"
    )


def json_service_account(g: Gen) -> None:
    g.file.path = f"config/{g.pick('service-account', 'integration', 'partner')}.json"
    g.file.text = (
        "{\n"
        f'  "type": "service_account",\n  "client_email": "{g.s("email", g.email())}",\n'
        f'  "api_secret": "{g.s("api_key", g.hex40())}",\n'
        f'  "client_id": "{g.k("number", str(g.rng.randint(10**17, 10**18)))}",\n'
        f'  "sha": "{g.k("digest", g.sha(40))}",\n'
        f'  "endpoint": "https://{g.s("internal_host", g.host())}/v1"\n}}\n'
    )


def dotenv(g: Gen) -> None:
    g.file.path = g.pick(".env", ".env.production", "deploy/.env")
    name, token = g.provider()
    g.file.text = (
        f"{name.upper()}_TOKEN={g.s('provider_token', token)}\n"
        f"REDIS_URL=redis://:{g.s('password', g.password(url_safe=True))}@{g.s('internal_host', g.host())}:6379/0\n"
        f"SMTP_HOST={g.s('internal_host', g.host())}\n"
        f"SENTRY_RELEASE={g.k('digest', g.sha(40))}\n"
        f"FEATURE_FLAG_ID={g.k('uuid', g.uuid())}\n"
        f"STRIPE_KEY={g.k('placeholder', g.placeholder('stripe_key'))}\n"
    )


def ci_yaml(g: Gen) -> None:
    g.file.path = g.pick(".gitlab-ci.yml", ".github/workflows/deploy.yml")
    name, token = g.provider()
    g.file.text = (
        "deploy:\n  script:\n"
        f"    - curl -H \"Authorization: Bearer {g.s('bearer_token', g.uuid())}\" https://api.{g.company}.io/deploy\n"
        f"    - ./release --token {g.s('provider_token', token)}\n"
        f"    - docker login -u ci -p {g.k('placeholder', '$CI_REGISTRY_PASSWORD')} {g.k('public_host', 'ghcr.io')}\n"
        f"  variables:\n    CHECKSUM: {g.k('digest', g.sha())}\n"
    )


def js_basic_auth(g: Gen) -> None:
    g.file.path = "server/auth.js"
    g.file.text = (
        "const basicAuth = require('express-basic-auth');\n"
        "app.use(basicAuth({\n  users: {\n"
        f"    admin: '{g.s('password', g.password())}',\n    {g.pick('ops', 'grafana')}: "
        f"'{g.s('password', g.password())}',\n  }},\n}}));\n"
        f"// test vector from RFC 4231: {g.k('test_vector', RFC4231_VECTOR)}\n"
    )


def python_settings(g: Gen) -> None:
    g.file.path = f"{g.company}/settings/production.py"
    name, token = g.provider()
    g.file.text = (
        f'"""Production settings. Contact {g.s("email", g.email())}."""\n'
        f"SECRET_KEY = '{g.s('django_secret_key', g.django_key())}'\n"
        f"ALLOWED_HOSTS = ['{g.s('internal_host', g.host())}', '{g.k('public_host', 'localhost')}']\n"
        f"CACHES = {{'default': {{'LOCATION': 'redis://{g.s('internal_host', g.host())}:6379/1'}}}}\n"
        f"{name.upper()}_API_KEY = \"{g.s('provider_token', token)}\"\n"
        f"VERSION = '{g.k('version', g.version())}'\n"
        f"PASSWORD_HASHERS = ['django.contrib.auth.hashers.Argon2PasswordHasher']\n"
        f"# bcrypt format reference: {g.k('placeholder', '$2b$<cost>$<salt+hash>')}\n"
    )


def http_client(g: Gen) -> None:
    g.file.path = "client/api.go"
    g.file.text = (
        "package client\n\n"
        f"const requestID = \"{g.k('uuid', g.uuid())}\"\n\n"
        "func newRequest() *http.Request {\n"
        f"\treq, _ := http.NewRequest(\"GET\", \"https://{g.s('internal_host', g.host())}/v2/items\", nil)\n"
        f"\treq.Header.Set(\"Authorization\", \"Bearer {g.s('bearer_token', g.uuid())}\")\n"
        f"\treq.Header.Set(\"X-Api-Key\", \"{g.s('api_key', g.api_key())}\")\n\treturn req\n}}\n"
    )


def pem_config(g: Gen) -> None:
    pem, lines = g.pem(g.pick("RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY"))
    g.file.path = "deploy/keys.yaml"
    g.file.text = "tls:\n  key: |\n" + "".join("    " + ln + "\n" for ln in pem.splitlines()) + (
        f"  fingerprint: {g.k('digest', g.sha())}\n")
    for ln in lines[1:-1]:
        g.s("private_key", ln)


def shadow_and_ldap(g: Gen) -> None:
    g.file.path = g.pick("ansible/roles/users/vars/main.yml", "ldap/seed.ldif")
    g.file.text = (
        "users:\n"
        f"  - name: deploy\n    password: \"{g.s('password_hash', g.password_hash())}\"\n"
        f"  - name: backup\n    hash: '{g.s('password_hash', g.password_hash())}'\n"
        f"userPassword: {g.s('password_hash', g.password_hash())}\n"
        f"# uid {g.k('number', str(g.rng.randint(1000, 60000)))} on {g.s('internal_host', g.host())}\n"
    )


def python_fixture(g: Gen) -> None:
    g.file.path = f"tests/fixtures/{g.pick('seed', 'demo')}_users.py"
    g.file.text = (
        f"# demo login: root / {g.s('password', g.password())}  (staging only)\n"
        "def seed(db):\n"
        f"    \"\"\"Creds ops/{g.s('password', g.password())} work on {g.s('internal_host', g.host())}.\"\"\"\n"
        f"    db.add(User(name='ops', email='{g.s('email', g.email())}', uid='{g.k('uuid', g.uuid())}'))\n"
        f"    # see docs/{g.k('path', 'users/README.md')} and the {g.k('path', 'admin/settings')} page\n"
    )


def access_table(g: Gen) -> None:
    g.file.path = "docs/access.md"
    g.file.text = (
        "| system | user | password | notes |\n|---|---|---|---|\n"
        f"| {g.s('internal_host', g.host())} | admin | `{g.s('password', g.password())}` | rotate quarterly |\n"
        f"| grafana | viewer | {g.s('password', g.password())} | read only |\n"
        f"| vpn | - | {g.k('placeholder', '(in 1Password)')} | |\n"
        f"\nBuild {g.k('version', g.version())}, fingerprint {g.k('digest', g.sha(40))}.\n"
    )


def ci_shell(g: Gen) -> None:
    g.file.path = g.pick("ci/release.sh", "scripts/sign.sh")
    g.file.text = (
        f"echo '{g.s('password', g.password())}' | docker login -u ci --password-stdin "
        f"{g.k('public_host', 'ghcr.io')}\n"
        f"keytool -importkeystore -srcstorepass {g.s('password', g.password())} -destkeystore app.p12\n"
        f"htpasswd -bc /etc/nginx/.htpasswd ops {g.s('password', g.password())}\n"
        f"mongo --host {g.s('internal_host', g.host())} -u root -p {g.s('password', g.password())} admin\n"
        f"rabbitmqctl add_user app {g.s('password', g.password())}\n"
        f"git tag v{g.k('version', g.version())} && sha1sum app.p12  # {g.k('digest', g.sha(40))}\n"
    )


def powershell(g: Gen) -> None:
    g.file.path = "deploy/setup.ps1"
    g.file.text = (
        f"$pw = ConvertTo-SecureString \"{g.s('password', g.password())}\" -AsPlainText -Force\n"
        f"New-PSDrive -Name X -Root \\\\{g.s('internal_host', g.host())}\\share\n"
        f"$env:API_KEY = \"{g.s('api_key', g.api_key())}\"\n"
        f"Test-Connection {g.k('public_ip', g.public_ip())}\n"
    )


TEMPLATES = [python_fixture, access_table, ci_shell, powershell, sql_migration, spring_properties, spring_yaml,
             java_datasource, compose, dockerfile, shell_script, runbook, terraform, helm_values, k8s_secret,
             json_service_account, dotenv, ci_yaml, js_basic_auth, python_settings, http_client, pem_config,
             shadow_and_ldap]
