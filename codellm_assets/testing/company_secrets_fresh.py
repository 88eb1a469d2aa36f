"""FRESH templates for the company-style labelled set (see ``company_secrets``): written after all tuning was
done and measured once, so nothing in the scrubber was shaped by them (the HELD slice's totals were looked at
during tuning; this slice's were not). Other ecosystems and file types than both other slices."""

from __future__ import annotations

from codellm_assets.testing.company_secrets import Gen


def appsettings_json(g: Gen) -> None:
    g.file.path = "src/Api/appsettings.Production.json"
    g.file.text = (
        "{\n  \"ConnectionStrings\": {\n"
        f"    \"Default\": \"Server={g.s('internal_host', g.host())};Database=Orders;User Id=api;"
        f"Password={g.s('password', g.password(url_safe=True))};\"\n  }},\n"
        f"  \"Smtp\": {{ \"Host\": \"{g.s('internal_host', g.host())}\", "
        f"\"Password\": \"{g.s('password', g.password())}\" }},\n"
        f"  \"InstrumentationKey\": \"{g.k('uuid', g.uuid())}\",\n"
        f"  \"Version\": \"{g.k('version', g.version())}\"\n}}\n"
    )


def rails_database_yml(g: Gen) -> None:
    g.file.path = "config/database.yml"
    g.file.text = (
        "production:\n  adapter: postgresql\n"
        f"  host: {g.s('internal_host', g.host())}\n  username: rails\n"
        f"  password: <%= ENV['DB_PASSWORD'] %>\n"
        f"  replica_password: {g.s('password', g.password())}\n"
        f"  pool: {g.k('number', str(g.rng.randint(5, 40)))}\n"
    )


def kafka_properties(g: Gen) -> None:
    g.file.path = "config/consumer.properties"
    g.file.text = (
        f"bootstrap.servers={g.s('internal_host', g.host())}:9092\n"
        "security.protocol=SASL_SSL\n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        f"username=\"svc\" password=\"{g.s('password', g.password())}\";\n"
        f"ssl.truststore.password={g.s('password', g.password())}\n"
        f"group.id={g.k('uuid', g.uuid())}\n"
    )


def jenkinsfile(g: Gen) -> None:
    g.file.path = "Jenkinsfile"
    name, token = g.provider()
    g.file.text = (
        "pipeline {\n  environment {\n"
        f"    {name.upper()}_TOKEN = '{g.s('provider_token', token)}'\n"
        f"    REGISTRY = '{g.s('internal_host', g.host())}'\n  }}\n  stages {{\n    stage('push') {{\n"
        f"      steps {{ sh \"docker login -u jenkins -p {g.s('password', g.password())} $REGISTRY\" }}\n"
        f"    }}\n  }}\n}}\n// pinned plugin {g.k('digest', g.sha(40))}\n"
    )


def netrc_and_pgpass(g: Gen) -> None:
    g.file.path = g.pick("home/.netrc", "ops/netrc")
    g.file.text = (
        f"machine {g.s('internal_host', g.host())}\n  login deploy\n  password {g.s('password', g.password())}\n"
        f"machine {g.k('public_host', 'github.com')} login bot password {g.k('placeholder', '$GITHUB_TOKEN')}\n"
    )


def airflow_connections(g: Gen) -> None:
    g.file.path = "airflow/connections.yaml"
    g.file.text = (
        "warehouse:\n  conn_type: postgres\n"
        f"  host: {g.s('internal_host', g.host())}\n  login: airflow\n  password: '{g.s('password', g.password())}'\n"
        f"  port: 5432\nslack:\n  conn_type: http\n  password: {g.s('api_key', g.api_key())}\n"
        f"  extra: '{{\"checksum\": \"{g.k('digest', g.sha())}\"}}'\n"
    )


def cloud_init(g: Gen) -> None:
    g.file.path = "infra/cloud-init.yaml"
    g.file.text = (
        "#cloud-config\nusers:\n  - name: ops\n"
        f"    passwd: {g.s('password_hash', g.password_hash())}\n"
        f"    ssh_authorized_keys:\n"
        f"      - {g.k('public_key', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI' + g.chars(43))} ops\n"
        "chpasswd:\n  list: |\n"
        f"    root:{g.s('password', g.password())}\n"
        f"write_files:\n  - path: /etc/resolv.conf\n    content: nameserver {g.k('public_ip', g.public_ip())}\n"
        f"ntp:\n  servers: [{g.s('private_ip', g.private_ip())}]\n"
    )


def php_config(g: Gen) -> None:
    g.file.path = "wp-config.php"
    g.file.text = (
        "<?php\n"
        f"define( 'DB_PASSWORD', '{g.s('password', g.password())}' );\n"
        f"define( 'DB_HOST', '{g.s('internal_host', g.host())}' );\n"
        f"define( 'AUTH_KEY', '{g.s('api_key', g.chars(64))}' );\n"
        f"$mail->Password = '{g.s('password', g.password())}';\n"
        f"// WordPress {g.k('version', g.version())}\n"
    )


def go_config(g: Gen) -> None:
    g.file.path = "internal/config/defaults.go"
    g.file.text = (
        "package config\n\nvar Default = Config{\n"
        f"\tDSN:      \"postgres://svc:{g.s('password', g.password(url_safe=True))}@{g.s('internal_host', g.host())}"
        f"/ledger?sslmode=require\",\n"
        f"\tAPIToken: \"{g.s('bearer_token', g.uuid())}\",\n"
        f"\tTraceID:  \"{g.k('uuid', g.uuid())}\",\n"
        f"\tOwner:    \"{g.s('email', g.email())}\",\n}}\n"
    )


def incident_doc(g: Gen) -> None:
    g.file.path = "postmortems/2024-outage.md"
    g.file.text = (
        "## Timeline\n"
        f"- 09:12 {g.s('email', g.email())} noticed errors from `{g.s('internal_host', g.host())}`\n"
        f"- 09:20 reset the service account; new password is `{g.s('password', g.password())}`\n"
        f"- 09:31 traffic moved to {g.s('private_ip', g.private_ip())}; public VIP {g.k('public_ip', g.public_ip())}\n"
        f"- deploy {g.k('digest', g.sha(40))} rolled back to {g.k('version', 'v' + g.version())}\n"
    )


def git_credentials(g: Gen) -> None:
    g.file.path = g.pick(".git-credentials", "ci/git-credentials")
    g.file.text = (
        f"https://deploy:{g.s('password', g.password(url_safe=True))}@{g.s('internal_host', g.host())}\n"
        f"https://x-access-token:{g.s('provider_token', 'ghs_' + g.chars(36))}@github.com\n"
    )


def haproxy_cfg(g: Gen) -> None:
    g.file.path = "haproxy/haproxy.cfg"
    g.file.text = (
        "userlist admins\n"
        f"  user ops password {g.s('password_hash', g.password_hash())}\n"
        f"  user view insecure-password {g.s('password', g.password())}\n"
        f"backend api\n  server a1 {g.s('internal_host', g.host())}:8080 check\n"
        f"  server a2 {g.s('private_ip', g.private_ip())}:8080 check\n"
        f"stats auth admin:{g.s('password', g.password(url_safe=True))}\n"
    )


TEMPLATES = [appsettings_json, rails_database_yml, kafka_properties, jenkinsfile, netrc_and_pgpass,
             airflow_connections, cloud_init, php_config, go_config, incident_doc, git_credentials, haproxy_cfg]
