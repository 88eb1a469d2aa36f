"""HELD-BACK templates for the company-style labelled set (see ``company_secrets``): other file layouts and
phrasings than the tuning templates, used with other seeds. Never tuned on: only its totals are reported."""

from __future__ import annotations

from codellm_assets.testing.company_secrets import HEX, LOWER_ALNUM, Gen
from codellm_assets.testing.company_templates import CERT_B64


def sql_grants(g: Gen) -> None:
    g.file.path = f"sql/{g.rng.randint(100, 999)}_roles.sql"
    user = g.pick("svc_api", "analytics", "replicator")
    g.file.text = (
        f"/* roles for {g.s('internal_host', g.host())} -- requested by {g.s('email', g.email())} */\n"
        f"ALTER USER {user} IDENTIFIED BY \"{g.s('password', g.password())}\";\n"
        f"CREATE ROLE {user}_ro LOGIN PASSWORD '{g.s('password', g.password())}' VALID UNTIL 'infinity';\n"
        f"UPDATE accounts SET pw_hash = '{g.s('password_hash', g.password_hash())}' WHERE id = "
        f"{g.k('number', str(g.rng.randint(1, 9999)))};\n"
        f"SELECT md5('{g.k('test_vector', 'The quick brown fox jumps over the lazy dog')}');\n"
    )


def kotlin_config(g: Gen) -> None:
    g.file.path = f"app/src/main/kotlin/com/{g.company}/Db.kt"
    g.file.text = (
        f"package com.{g.company}.infra\n\n"
        "object Db {\n"
        f"    private const val PASSWORD = \"{g.s('password', g.password())}\"\n"
        f"    private const val SCHEMA_VERSION = \"{g.k('version', g.version())}\"\n"
        "    val source = PGSimpleDataSource().apply {\n"
        f"        serverNames = arrayOf(\"{g.s('internal_host', g.host())}\")\n"
        f"        user = \"ledger\"\n        password = \"{g.s('password', g.password())}\"\n    }}\n}}\n"
    )


def legacy_properties(g: Gen) -> None:
    g.file.path = "conf/app.properties"
    g.file.text = (
        f"# generated {g.k('version', 'v' + g.version())}\n"
        f"db.host = {g.s('internal_host', g.host())}\n"
        f"db.pass = {g.s('password', g.password())}\n"
        f"ldap.bind.credentials={g.s('password', g.password())}\n"
        f"mq.uri=amqp://guest@{g.s('internal_host', g.host())}:5672/vhost\n"
        f"cache.node={g.s('private_ip', g.private_ip())}:11211\n"
        f"ntp.server={g.k('public_ip', g.public_ip())}\n"
        f"db.password={g.k('placeholder', g.placeholder())}\n"
    )


def compose_mapping(g: Gen) -> None:
    g.file.path = g.pick("compose.prod.yaml", "deploy/docker-compose.override.yml")
    g.file.text = (
        "version: '3.8'\nservices:\n  mysql:\n    image: mysql:8\n    environment:\n"
        f"      - MYSQL_ROOT_PASSWORD={g.s('password', g.password())}\n"
        f"      - MYSQL_PASSWORD={g.k('placeholder', '${MYSQL_PASSWORD:?set it}')}\n"
        "  api:\n    environment:\n"
        f"      MONGO_URI: \"mongodb://api:{g.s('password', g.password(url_safe=True))}@"
        f"{g.s('internal_host', g.host())}:27017/api\"\n"
        f"      JWT_SIGNING_SECRET: \"{g.s('api_key', g.chars(32))}\"\n"
        f"    extra_hosts:\n      - \"{g.s('internal_host', g.host())}:{g.s('private_ip', g.private_ip())}\"\n"
    )


def dockerfile_multistage(g: Gen) -> None:
    g.file.path = f"services/{g.pick('api', 'worker')}/Dockerfile"
    g.file.text = (
        f"FROM {g.k('public_host', 'docker.io')}/library/node:{g.k('version', str(g.rng.randint(16, 22)))} AS build\n"
        f"RUN npm config set registry https://{g.s('internal_host', g.host())}/npm/\n"
        f"RUN echo \"//{g.s('internal_host', g.host())}/:_authToken="
        f"{g.s('api_key', g.chars(36, LOWER_ALNUM))}\" > .npmrc\n"
        f"ENV DB_PASS=\"{g.s('password', g.password())}\"\n"
        f"HEALTHCHECK CMD curl -f http://{g.s('private_ip', g.private_ip())}:8080/health || exit 1\n"
    )


def makefile(g: Gen) -> None:
    g.file.path = "Makefile"
    g.file.text = (
        "deploy:\n"
        f"\tsshpass -p {g.s('password', g.password())} ssh root@{g.s('internal_host', g.host())} "
        "'systemctl restart app'\n"
        f"\tmysql --host={g.s('internal_host', g.host())} -uadmin -p{g.s('password', g.password())} < seed.sql\n"
        f"\tcurl --user ci:{g.s('password', g.password(url_safe=True))} -X POST "
        f"https://{g.k('public_host', 'github.com')}/x\n"
        f"\t@echo sha {g.k('digest', g.sha(40))}\n"
    )


def runbook_prose(g: Gen) -> None:
    g.file.path = f"wiki/{g.pick('Incident-Response', 'DR-Plan', 'Kafka-Ops')}.md"
    g.file.text = (
        "## Access\n\n"
        f"The break-glass account on {g.s('internal_host', g.host())} uses password "
        f"`{g.s('password', g.password())}`.\n"
        f"- password: `{g.s('password', g.password())}`\n"
        f"- contact: {g.s('email', g.email(internal=True))}\n"
        f"- bastion: {g.s('private_ip', g.private_ip())}\n"
        f"- DNS: {g.k('public_ip', g.public_ip())}, docs at https://{g.k('public_host', 'example.com')}/x\n"
        f"- example key id `{g.k('uuid', g.uuid())}` (a job id, not a secret)\n"
    )


def tfvars(g: Gen) -> None:
    g.file.path = f"envs/{g.pick('prod', 'stage')}.auto.tfvars"
    g.file.text = (
        f"db_admin_password = \"{g.s('password', g.password())}\"\n"
        f"cloudflare_api_token = \"{g.s('api_key', g.chars(40, LOWER_ALNUM + '_'))}\"\n"
        f"vpc_cidr = \"{g.k('cidr', '10.20.0.0/16')}\"\n"
        f"dns_servers = [\"{g.k('public_ip', g.public_ip())}\"]\n"
        f"ami_id = \"ami-{g.k('digest', g.chars(17, HEX))}\"\n"
    )


def helm_stringdata(g: Gen) -> None:
    g.file.path = "charts/api/templates/secret.yaml"
    g.file.text = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n"
        f"stringData:\n  REDIS_PASSWORD: {g.s('password', g.password())}\n"
        f"data:\n  token: >-\n    {g.s('k8s_secret_data', g.b64(g.api_key().encode()))}\n"
        f"  .dockerconfigjson: '{g.s('dockerconfigjson', g.dockerconfig(g.host()))}'\n"
        f"  tls.crt: {g.k('public_key', CERT_B64)}\n"
    )


def json_nested(g: Gen) -> None:
    g.file.path = f"config/{g.pick('prod', 'default')}.json"
    name, token = g.provider()
    g.file.text = (
        "{\n  \"services\": {\n"
        f"    \"{name}\": {{\"apiKey\": \"{g.s('provider_token', token)}\"}},\n"
        f"    \"billing\": {{\"secret\": \"{g.s('api_key', g.hex40())}\", "
        f"\"host\": \"{g.s('internal_host', g.host())}\"}},\n"
        f"    \"owner\": \"{g.s('email', g.email())}\"\n  }},\n"
        f"  \"build\": {{\"id\": \"{g.k('uuid', g.uuid())}\", \"rev\": \"{g.k('digest', g.sha(40))}\"}}\n}}\n"
    )


def envrc(g: Gen) -> None:
    g.file.path = g.pick(".envrc", "env/prod.env")
    name, token = g.provider()
    g.file.text = (
        f"export {name.upper()}_KEY='{g.s('provider_token', token)}'\n"
        f"export PGPASSWORD='{g.s('password', g.password())}'\n"
        f"export API_KEY={g.s('api_key', g.api_key())}\n"
        f"export NODE_VERSION={g.k('version', g.version())}\n"
        f"export SESSION_ID_EXAMPLE={g.k('uuid', g.uuid())}\n"
    )


def github_actions(g: Gen) -> None:
    g.file.path = ".github/workflows/release.yml"
    name, token = g.provider()
    g.file.text = (
        "jobs:\n  release:\n    steps:\n      - name: notify\n        run: |\n"
        f"          curl -sS -H 'Authorization: Bearer {g.s('bearer_token', g.uuid())}' \\\n"
        f"            https://{g.s('internal_host', g.host())}/hooks\n"
        f"      - uses: actions/checkout@{g.k('digest', g.sha(40))}\n"
        f"        env:\n          TOKEN: {g.k('placeholder', '${{ secrets.RELEASE_TOKEN }}')}\n"
        f"          {name.upper()}_SECRET: {g.s('provider_token', token)}\n"
    )


def python_client(g: Gen) -> None:
    g.file.path = f"{g.company}_client/http.py"
    g.file.text = (
        "def session():\n"
        f"    \"\"\"Talks to {g.s('internal_host', g.host())}; legacy user admin / "
        f"{g.s('password', g.password())}.\"\"\"\n"
        f"    s = requests.Session()\n    s.auth = (\"svc\", \"{g.s('password', g.password())}\")\n"
        f"    s.headers[\"Authorization\"] = \"Bearer {g.s('bearer_token', g.uuid())}\"\n"
        f"    s.headers[\"X-Request-Id\"] = \"{g.k('uuid', g.uuid())}\"\n"
        f"    return s\n\nHASH = \"{g.s('password_hash', g.password_hash())}\"\n"
    )


def maven_settings(g: Gen) -> None:
    g.file.path = "settings.xml"
    g.file.text = (
        "<settings>\n  <servers>\n    <server>\n      <id>internal</id>\n      <username>deployer</username>\n"
        f"      <password>{g.s('password', g.password())}</password>\n    </server>\n  </servers>\n"
        f"  <mirrors><mirror><url>https://{g.s('internal_host', g.host())}/maven2</url></mirror></mirrors>\n"
        f"  <!-- schema {g.k('version', g.version())} -->\n</settings>\n"
    )


def ansible_inventory(g: Gen) -> None:
    g.file.path = "inventory/hosts.ini"
    g.file.text = (
        "[db]\n"
        f"{g.s('internal_host', g.host())} ansible_host={g.s('private_ip', g.private_ip())} "
        f"ansible_password={g.s('password', g.password())}\n"
        f"[web]\n{g.s('internal_host', g.host())}\n"
        f"[all:vars]\nansible_become_pass={g.k('placeholder', '{{ vault_become_pass }}')}\n"
    )


def shadow_file(g: Gen) -> None:
    g.file.path = g.pick("fixtures/users.yaml", "seed/htpasswd.txt")
    g.file.text = (
        f"root:{g.s('password_hash', g.password_hash())}:19000:0:99999:7:::\n"
        f"admin:{g.s('password_hash', g.password_hash())}\n"
        f"# algorithm docs: {g.k('placeholder', '$argon2id$v=19$m=<mem>,t=<iter>,p=<par>$<salt>$<hash>')}\n"
    )


def nginx_conf(g: Gen) -> None:
    g.file.path = "nginx/conf.d/upstream.conf"
    g.file.text = (
        f"upstream api {{\n    server {g.s('internal_host', g.host())}:8443;\n"
        f"    server {g.s('private_ip', g.private_ip())}:8443 backup;\n}}\n"
        f"resolver {g.k('public_ip', g.public_ip())} valid=30s;\n"
        f"proxy_set_header Authorization \"Bearer {g.s('bearer_token', g.uuid())}\";\n"
    )


def pem_json(g: Gen) -> None:
    pem, lines = g.pem(g.pick("EC PRIVATE KEY", "PRIVATE KEY"))
    g.file.path = "secrets/signer.json"
    g.file.text = "{\"key\": \"" + pem.replace("\n", "\\n") + "\", \"kid\": \"" + g.k("uuid", g.uuid()) + "\"}\n"
    for ln in lines[1:-1]:
        g.s("private_key", ln)


TEMPLATES = [sql_grants, kotlin_config, legacy_properties, compose_mapping, dockerfile_multistage, makefile,
             runbook_prose, tfvars, helm_stringdata, json_nested, envrc, github_actions, python_client,
             maven_settings, ansible_inventory, shadow_file, nginx_conf, pem_json]
