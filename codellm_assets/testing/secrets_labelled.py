"""A labelled set for the scrubber: secrets in realistic code contexts, and look-alikes that must be kept.

Secrets are GENERATED at run time (seeded, format-correct, random), never written here literally: a
realistic token in the source would trip push protection and scanners. ``build_labelled_set(seed)`` returns
the same set for the same seed.

A secret sample counts as caught when none of its ``secrets`` substrings survive scrubbing; a look-alike
is kept when scrubbing leaves its text unchanged.
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


@dataclass(frozen=True)
class Sample:
    """``kind``: the secret type, or ``lookalike:<category>``; ``secrets``: values that must disappear."""

    kind: str
    context: str
    text: str
    secrets: tuple[str, ...] = ()

    @property
    def is_secret(self) -> bool:
        return not self.kind.startswith("lookalike:")


class FakeSecrets:
    """Random values in each provider's format."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def chars(self, n: int, alphabet: str = ALNUM) -> str:
        while True:  # random tokens have digits and both cases; retry the rare draws that do not
            value = "".join(self.rng.choice(alphabet) for _ in range(n))
            if alphabet != ALNUM or n < 12 or (any(c.isdigit() for c in value) and not value.isdigit()):
                return value

    def b64url(self, raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def aws_key_id(self) -> str:
        return self.rng.choice(["AKIA", "ASIA"]) + self.chars(16, UPPER_ALNUM)

    def aws_secret(self) -> str:
        return self.chars(40, B64)

    def github(self) -> str:
        kind = self.rng.choice(["ghp_", "gho_", "ghs_", "fine"])
        if kind == "fine":
            return "github_pat_" + self.chars(22) + "_" + self.chars(59)
        return kind + self.chars(36)

    def slack_token(self) -> str:
        digits = "0123456789"
        return (self.rng.choice(["xoxb-", "xoxp-"]) + self.chars(11, digits) + "-" + self.chars(12, digits)
                + "-" + self.chars(24, string.ascii_lowercase + digits))

    def slack_webhook(self) -> str:
        return ("https://hooks.slack.com/services/T" + self.chars(8, UPPER_ALNUM) + "/B" + self.chars(10, UPPER_ALNUM)
                + "/" + self.chars(24))

    def stripe(self) -> str:
        return self.rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + self.chars(self.rng.choice([24, 34, 99]))

    def google(self) -> str:
        return "AIza" + self.chars(35, URLSAFE)

    def openai(self) -> str:
        if self.rng.random() < 0.5:
            return "sk-" + self.chars(20) + "T3Blbk" + "FJ" + self.chars(20)
        return "sk-proj-" + self.chars(64, URLSAFE) + "T3Blbk" + "FJ" + self.chars(64, URLSAFE)

    def anthropic(self) -> str:
        return "sk-ant-api03-" + self.chars(93, URLSAFE) + "AA"

    def jwt(self) -> str:
        header = self.b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = self.b64url(json.dumps({"sub": self.chars(8), "iat": self.rng.randint(1.6e9, 1.8e9)}).encode())
        return f"{header}.{payload}.{self.b64url(self.rng.randbytes(32))}"

    def pem_body(self, nbytes: int = 600) -> list[str]:
        body = base64.b64encode(self.rng.randbytes(nbytes)).decode()
        return [body[i:i + 64] for i in range(0, len(body), 64)]

    def password(self) -> str:
        specials = "!#%^*-_=+."
        core = self.chars(self.rng.randint(8, 14), ALNUM + specials)
        return core + self.rng.choice(string.digits) + self.rng.choice(specials)

    def uuid(self) -> str:
        h = self.chars(32, HEX)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _secret_samples(f: FakeSecrets) -> list[Sample]:
    s: list[Sample] = []

    def add(kind: str, context: str, template: str, *values: str) -> None:
        s.append(Sample(kind, context, template.format(*values), tuple(values)))

    for _ in range(2):
        k, sec = f.aws_key_id(), f.aws_secret()
        add("aws_access_key", "python", 'import boto3\nclient = boto3.client("s3", aws_access_key_id="{}")\n', k)
        add("aws_access_key", "env", "AWS_ACCESS_KEY_ID={}\nAWS_REGION=eu-west-1\n", f.aws_key_id())
        add("aws_access_key", "ini", "[default]\naws_access_key_id = {}\n", f.aws_key_id())
        add("aws_secret_key", "env", "AWS_SECRET_ACCESS_KEY={}\n", sec)
        add("aws_secret_key", "ini", "[prod]\naws_secret_access_key = {}\nregion = us-east-1\n", f.aws_secret())
        add("aws_secret_key", "python",
            'session = Session(aws_access_key_id=KEY_ID,\n    aws_secret_access_key="{}")\n',
            f.aws_secret())
    for ctx, tpl in [("python", 'GITHUB_TOKEN = "{}"\n'), ("yaml", "env:\n  GH_TOKEN: {}\n"),
                     ("shell", 'curl -H "Authorization: token {}" https://api.github.com/user\n'),
                     ("json", '{{"github": {{"token": "{}"}}}}\n'),
                     ("js", "const octokit = new Octokit({{ auth: '{}' }});\n")]:
        add("github_token", ctx, tpl, f.github())
    for ctx, tpl in [("env", "GITLAB_TOKEN={}\n"), ("python", 'gl = gitlab.Gitlab(URL, private_token="{}")\n'),
                     ("yaml", "variables:\n  CI_PUSH_TOKEN: {}\n")]:
        add("gitlab_token", ctx, tpl, "glpat-" + f.chars(20, URLSAFE))
    for ctx, tpl in [("python", 'client = WebClient(token="{}")\n'), ("env", "SLACK_BOT_TOKEN={}\n"),
                     ("yaml", "slack:\n  token: {}\n")]:
        add("slack_token", ctx, tpl, f.slack_token())
    for ctx, tpl in [("python", 'WEBHOOK = "{}"\nrequests.post(WEBHOOK, json=payload)\n'),
                     ("yaml", "alerts:\n  slack_webhook_url: {}\n"), ("shell", "curl -X POST -d @msg.json {}\n")]:
        add("slack_webhook", ctx, tpl, f.slack_webhook())
    for ctx, tpl in [("python", 'stripe.api_key = "{}"\n'), ("js", "const stripe = require('stripe')('{}');\n"),
                     ("env", "STRIPE_SECRET_KEY={}\n")]:
        add("stripe_key", ctx, tpl, f.stripe())
    for ctx, tpl in [("js", 'const MAPS_KEY = "{}";\n'), ("python", 'genai.configure(api_key="{}")\n'),
                     ("html", '<script src="https://maps.googleapis.com/maps/api/js?key={}"></script>\n')]:
        add("google_api_key", ctx, tpl, f.google())
    for ctx, tpl in [("python", 'client = OpenAI(api_key="{}")\n'), ("env", "OPENAI_API_KEY={}\n"),
                     ("shell", 'curl https://api.openai.com/v1/models -H "Authorization: Bearer {}"\n')]:
        add("openai_key", ctx, tpl, f.openai())
    for ctx, tpl in [("python", 'client = anthropic.Anthropic(api_key="{}")\n'), ("env", "ANTHROPIC_API_KEY={}\n"),
                     ("yaml", "llm:\n  anthropic_key: '{}'\n")]:
        add("anthropic_key", ctx, tpl, f.anthropic())
    for ctx, tpl in [("python", 'headers = {{"Authorization": "Bearer {}"}}\n'), ("json", '{{"id_token": "{}"}}\n'),
                     ("js", "localStorage.setItem('session', '{}');\n")]:
        add("jwt", ctx, tpl, f.jwt())
    for label in ("RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"):
        lines = f.pem_body(f.rng.choice([300, 600, 1200]))
        pem = f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"
        s.append(Sample("private_key", "pem", "# deploy key\n" + pem, tuple(lines)))
    lines = f.pem_body(400)
    escaped = "\\n".join(["-----BEGIN PRIVATE KEY-----", *lines, "-----END PRIVATE KEY-----", ""])
    s.append(Sample("private_key", "json", '{"type": "service_account", "private_key": "' + escaped + '",\n'
                    ' "client_email": "svc@proj.iam.gserviceaccount.com"}\n', tuple(lines)))
    lines = f.pem_body(300)
    concat = "".join(f'    "{ln}\\n"\n' for ln in lines)
    s.append(Sample("private_key", "python", 'KEY = (\n    "-----BEGIN RSA PRIVATE KEY-----\\n"\n' + concat
                    + '    "-----END RSA PRIVATE KEY-----\\n"\n)\n', tuple(lines)))
    for scheme, host in [("postgresql", "db.internal:5432/app"), ("mysql+pymysql", "10.0.0.5/shop"),
                         ("mongodb+srv", "cluster0.ab12c.mongodb.net/prod"), ("redis", "cache:6379/0"),
                         ("amqp", "rabbit.svc:5672/")]:
        pw = f.password().replace("%", "").replace("#", "")
        add("db_password", "python", 'DATABASE_URL = "' + scheme + '://app_user:{}@' + host + '"\n', pw)
    add("db_password", "env", "DATABASE_URL=postgres://svc:{}@prod-db.acme.internal:5432/orders\n",
        f.chars(18))
    for ctx, tpl in [("env", ("AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=https;AccountName=acmeprod;"
                              "AccountKey={};EndpointSuffix=core.windows.net\n")),
                     ("json", ('{{"ConnectionStrings": {{"Blob": "DefaultEndpointsProtocol=https;AccountName=logs;'
                               'AccountKey={};EndpointSuffix=core.windows.net"}}}}\n'))]:
        add("azure_storage_key", ctx, tpl, base64.b64encode(f.rng.randbytes(64)).decode())
    for ctx, tpl in [("env", "VAULT_TOKEN={}\n"), ("python", 'client = hvac.Client(url=VAULT_ADDR, token="{}")\n'),
                     ("shell", "export VAULT_TOKEN={}\nvault kv get secret/app\n")]:
        add("vault_token", ctx, tpl, "hvs." + f.chars(90, URLSAFE))
    for ctx, tpl in [("npmrc", "//registry.npmjs.org/:_authToken={}\n"), ("env", "NPM_TOKEN={}\n"),
                     ("yaml", "steps:\n  - run: npm publish\n    env:\n      NODE_AUTH_TOKEN: {}\n")]:
        add("npm_token", ctx, tpl, "npm_" + f.chars(36))
    add("twilio_key", "python", 'client = Client(ACCOUNT_SID, AUTH_TOKEN)\nTWILIO_API_KEY = "{}"\n',
        "SK" + f.chars(32, HEX))
    add("twilio_key", "env", "TWILIO_ACCOUNT_SID={}\n", "AC" + f.chars(32, HEX))
    add("twilio_key", "yaml", "twilio:\n  api_key: {}\n", "SK" + f.chars(32, HEX))
    for ctx, tpl in [("python", 'sg = SendGridAPIClient("{}")\n'), ("env", "SENDGRID_API_KEY={}\n"),
                     ("js", "sgMail.setApiKey('{}');\n")]:
        add("sendgrid_key", ctx, tpl, "SG." + f.chars(22, URLSAFE) + "." + f.chars(43, URLSAFE))
    for ctx, tpl in [("python", 'resp = requests.get(url, headers={{"Authorization": "Bearer {}"}})\n'),
                     ("shell", 'curl -H "Authorization: Bearer {}" https://api.acme.io/v2/orders\n'),
                     ("http", "GET /v1/users HTTP/1.1\nAuthorization: Bearer {}\n")]:
        add("auth_header", ctx, tpl, f.chars(40, URLSAFE + "."))
    for user in ("deploy", "ci-bot"):
        basic = base64.b64encode(f"{user}:{f.password()}".encode()).decode()
        add("auth_header", "python", 'session.headers["Authorization"] = "Basic {}"\n', basic)
    for ctx, tpl in [("env", "HEROKU_API_KEY={}\n"), ("yaml", "deploy:\n  heroku_api_key: {}\n")]:
        add("heroku_api_key", ctx, tpl, f.uuid())
    add("heroku_api_key", "netrc", "machine api.heroku.com\n  login me@acme.io\n  password {}\n", f.uuid())
    for ctx, tpl in [("python", 'MAILGUN_API_KEY = "{}"\n'), ("env", "MAILGUN_KEY={}\n")]:
        add("mailgun_key", ctx, tpl, "key-" + f.chars(32, HEX))
    for ctx, tpl in [("python", 'shopify.Session.setup(api_key=API_KEY, secret="{}")\n'),
                     ("env", "SHOPIFY_TOKEN={}\n")]:
        add("shopify_token", ctx, tpl, f.rng.choice(["shpat_", "shpss_"]) + f.chars(32, HEX))
    for ctx, tpl in [("ini", "[pypi]\nusername = __token__\npassword = {}\n"),
                     ("yaml", "env:\n  TWINE_PASSWORD: {}\n")]:
        add("pypi_token", ctx, tpl, "pypi-AgEIcHlwaS5vcmc" + f.chars(80, URLSAFE))
    for host in ("ghcr.io", "registry.acme.io"):
        auth = base64.b64encode(f"robot:{f.password()}".encode()).decode()
        add("docker_auth", "json", '{{"auths": {{"' + host + '": {{"auth": "{}"}}}}}}\n', auth)
    for ctx, tpl in [("python", 'login(token="{}")\n'), ("env", "HF_TOKEN={}\n")]:
        add("huggingface_token", ctx, tpl, "hf_" + f.chars(34, string.ascii_letters))
    add("telegram_bot_token", "python", 'bot = telebot.TeleBot("{}")\n',
        f.chars(10, string.digits) + ":" + f.chars(35, URLSAFE))
    add("databricks_token", "env", "DATABRICKS_TOKEN={}\n", "dapi" + f.chars(32, HEX))
    add("digitalocean_token", "env", "DIGITALOCEAN_ACCESS_TOKEN={}\n", "dop_v1_" + f.chars(64, HEX))
    # generic passwords and keys, anchored on the variable name only
    for ctx, tpl in [("python", 'password = "{}"\n'), ("python", 'conn = psycopg2.connect(host=h, password="{}")\n'),
                     ("env", "DB_PASSWORD={}\n"), ("yaml", "database:\n  user: app\n  password: {}\n"),
                     ("json", '{{"username": "admin", "password": "{}"}}\n'), ("ini", "[smtp]\npasswd = {}\n"),
                     ("js", "const dbPassword = '{}';\n"), ("java", 'String password = "{}";\n'),
                     ("xml", "<datasource>\n  <password>{}</password>\n</datasource>\n"),
                     ("shell", "mysqldump --user=root --password {} shop > dump.sql\n"),
                     ("dockerfile", "ENV POSTGRES_PASSWORD={}\n"), ("yaml", "redis:\n  auth_pass: '{}'\n")]:
        add("password", ctx, tpl, f.password())
    for ctx, tpl in [("python", 'API_KEY = "{}"\n'), ("python", 'self.client_secret = "{}"\n'),
                     ("js", "const apiKey = '{}';\n"), ("yaml", "oauth:\n  client_secret: {}\n"),
                     ("json", '{{"auth_token": "{}"}}\n'), ("env", "export SECRET_TOKEN={}\n"),
                     ("dockerfile", "ENV API_KEY {}\n"), ("python", 'headers = {{"X-Api-Key": "{}"}}\n'),
                     ("ini", "[service]\nsecret_key = {}\n"), ("go", 'apiSecret := "{}"\n')]:
        add("generic_secret", ctx, tpl, f.chars(f.rng.choice([24, 32, 40]), f.rng.choice([ALNUM, HEX, URLSAFE])))
    # PII
    for ctx, tpl in [("python", '__author__ = "Jane Doe <{}>"\n'), ("python", "# Maintainer: {}\n"),
                     ("json", '{{"name": "R. Patel", "email": "{}"}}\n'), ("yaml", "owners:\n  - {}\n"),
                     ("dockerfile", 'LABEL maintainer="{}"\n')]:
        first = f.rng.choice(["jane.doe", "r.patel", "mike", "a.nguyen", "tom+ci"])
        add("email", ctx, tpl, f"{first}@{f.rng.choice(['acme-corp.com', 'gmail.com', 'company.io', 'uni.edu'])}")
    for ip in ("10.24.3.17", "172.20.1.5", "192.168.10.42", "100.64.7.3", "10.0.12.250"):
        ctx, tpl = f.rng.choice([("python", 'DB_HOST = "{}"\n'), ("nginx", "upstream api {{ server {}:8080; }}\n"),
                                 ("yaml", "hosts:\n  - {}\n")])
        add("ip", ctx, tpl, ip)
    for ip in ("fd12:3456:789a:1::1", "fdab:cd00:12:7::42"):  # unique local (private) IPv6
        add("ip", "python", 'PEER = "{}"\n', ip)
    for phone in ("+1 (415) 555-0132", "+44 20 7946 0958", "(212) 555-0187", "415-555-0199", "+4930123456789"):
        add("phone", f.rng.choice(["python", "yaml"]), 'SUPPORT_PHONE = "{}"\n', phone)
    return s


def _lookalike_samples(f: FakeSecrets) -> list[Sample]:
    """Things that look like secrets or PII and must be left alone."""
    sha1, sha256 = f.chars(40, HEX), f.chars(64, HEX)
    integrity = base64.b64encode(f.rng.randbytes(64)).decode()
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + f.rng.randbytes(180)).decode()
    example_key = "AKIA" + "IOSFODNN7" + "EXAMPLE"
    example_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
    rows = {
        "env_reference": [
            'password = os.environ["DB_PASSWORD"]\n', 'API_KEY = os.getenv("API_KEY")\n',
            "const stripeKey = process.env.STRIPE_SECRET_KEY;\n", 'token = ENV["GITHUB_TOKEN"]\n',
            "  password: ${DB_PASSWORD}\n", "api_key: {{ vault_api_key }}\n", 'export TOKEN="$CI_JOB_TOKEN"\n',
            "password = %(db_password)s\n", "secret = settings.SECRET_KEY\n", "token = getpass.getpass()\n",
            'auth = request.headers["Authorization"]\n', "self.password = password\n",
            "aws_secret_access_key=credentials.secret_key,\n", "DB_PASSWORD=${{ secrets.DB_PASSWORD }}\n",
        ],
        "placeholder": [
            "password=None\n", "password=password\n", 'password = ""\n', 'password = "***"\n',
            'api_key = "<your-api-key>"\n', 'SECRET_KEY = "changeme"\n', 'token = "xxx"\n',
            'API_TOKEN = "XXXXXXXXXXXXXXXXXXXXXXXX"\n', 'GITHUB_TOKEN = "your_token_here"\n',
            "api_key: <API_KEY>\n", 'password: "REPLACE_ME"\n', 'client_secret = "{client_secret}"\n',
            'headers = {"Authorization": f"Bearer {token}"}\n', "Authorization: Bearer <token>\n",
            'url = "postgres://user:password@localhost:5432/app"\n', 'url = f"postgresql://{user}:{pw}@{host}/db"\n',
            "DATABASE_URL=postgresql://${DB_USER}:${DB_PASS}@db:5432/app\n", 'db = "mysql://root:@localhost/test"\n',
            'aws_access_key_id = "' + example_key + '"\n', 'aws_secret_access_key = "' + example_secret + '"\n',
            'SLACK = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"\n',
            'password = "{{ .Values.db.password }}"\n', 'DJANGO_SECRET_KEY = "django-insecure-change-me"\n',
        ],
        "hash_or_id": [
            f'commit = "{sha1}"\n', f"    rev: {sha1}\n", f'SHA256 = "{sha256}"\n', f'"sha": "{sha1}",\n',
            f'request_id = "{f.uuid()}"\n', f'{{"id": "{f.uuid()}", "name": "widget"}}\n',
            f'run_uuid = uuid.UUID("{f.uuid()}")\n', f'"integrity": "sha512-{integrity}",\n',
            'md5_of_empty = "d41d8cd98f00b204e9800998ecf8427e"\n', f'cache_key = "{sha1}"\n',
            f'GPG_KEY = "{f.chars(40, HEX).upper()}"\n', f'etag = "W/\\"{f.chars(32, HEX)}\\""\n',
            f'checksum: "sha256:{sha256}"\n', f'<img src="data:image/png;base64,{png}">\n',
        ],
        "identifier": [
            "def handleAuthenticationTokenRefreshForUserSessionManager(self):\n",
            'tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")\n', "max_tokens = 4096\n",
            'pad_token = "<pad>"\n', 'eos_token = "</s>"\n', 'token_type = "bearer"\n',
            'TOKEN_URL = "https://oauth2.googleapis.com/token"\n', 'password_field = "password"\n',
            "PASSWORD_MIN_LENGTH = 12\n", 'sort_key = "created_at"\n', 'cache_key = f"user:{uid}:profile"\n',
            "id = Column(Integer, primary_key=True)\n", 'API_KEY_HEADER = "X-API-Key"\n',
            'SECRET_KEY_ENV = "DJANGO_SECRET_KEY"\n', 'secret_name = "prod/payments/stripe"\n',
            'ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"\n',
            'token_pattern = r"(?u)\\b\\w\\w+\\b"\n', 'KEY_FILE = "/etc/ssl/private/server.key"\n',
            "for token in tokens:\n    if token == 'def':\n        yield token\n",
            "if line.startswith('-----BEGIN RSA PRIVATE KEY-----'):\n    kind = 'rsa'\n",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE" + f.chars(52, B64)
            + "\n-----END PUBLIC KEY-----\n",
            "-----BEGIN CERTIFICATE-----\n" + "\n".join(f.pem_body(300)) + "\n-----END CERTIFICATE-----\n",
            "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n-----END OPENSSH PRIVATE KEY-----\n",
            'color = "#a3f9c2"\n', "private_key_path = os.path.expanduser('~/.ssh/id_ed25519')\n",
        ],
        "address": [
            'HOST = "127.0.0.1"\n', 'app.run(host="0.0.0.0", port=8000)\n', 'addr = "::1"\n',
            'TEST_IP = "192.0.2.10"\n', 'DNS = ["8.8.8.8", "1.1.1.1", "9.9.9.9"]\n', "server 34.201.12.9:8080;\n",
            'PEER = "2a00:1450:4001:82b::200e"\n', 'resolver 2606:4700:4700::1111;\n',
            'peer = "198.51.100.7"\n', 'gateway = "203.0.113.5"\n',
            'v6 = "2001:db8::1"\n', '__version__ = "1.2.3.4"\n', 'setup(name="pkg", version="10.0.0.1")\n',
            "requests>=2.31.0.1\n", 'netmask = "255.255.255.0"\n', 'BROADCAST = "255.255.255.255"\n',
            'cidr = "10.0.0.0/8"\n', 'OID = ObjectIdentifier("2.5.29.17")\n', "ts = '12:30:45'\n",
            "x = arr[1::2]\n", 'mac = "00:1a:2b:3c:4d:5e"\n', 'url = "http://localhost:8080/health"\n',
        ],
        "email": [
            'EMAIL = "user@example.com"\n', 'admin = "admin@example.org"\n', "# see dev@localhost\n",
            'FROM = "noreply@github.com"\n', 'git clone git@github.com:acme/widgets.git\n',
            'DEFAULT_FROM = "alerts@example.net"\n', "@app.route('/users/<int:id>')\n", "y = x@self.weight.T\n",
            '@pytest.mark.parametrize("a", [1, 2])\n',
            'ssh_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 alice@laptop"\n',
            'cipher = "aes256-gcm@openssh.com"\n',
        ],
        "number": [
            'released = "2024-01-15"\n', "timeout_ms = 1234567890\n", 'isbn = "978-3-16-148410-0"\n',
            'VERSION = "1.2.3"\n', "port = 8080\n", 'zip_code = "94105-1234"\n', "total = a + 1234567\n",
            'phone_pattern = r"\\d{3}-\\d{3}-\\d{4}"\n', "x = 1e+10\n",
        ],
    }
    return [Sample(f"lookalike:{cat}", "mixed", text) for cat, texts in rows.items() for text in texts]


def build_labelled_set(seed: int = 0) -> list[Sample]:
    """Secret samples (>= 20 types, several contexts each) followed by look-alikes (> 100)."""
    f = FakeSecrets(seed)
    return _secret_samples(f) + _lookalike_samples(f)


def evaluate(samples: list[Sample], redact) -> dict[str, dict[str, float]]:
    """Per kind: n, caught (secrets whose values all disappeared) or kept (look-alikes left unchanged).

    ``redact(text) -> str`` is the scrubber under test."""
    stats: dict[str, dict[str, float]] = {}
    for sample in samples:
        out = redact(sample.text)
        ok = all(v not in out for v in sample.secrets) if sample.is_secret else out == sample.text
        row = stats.setdefault(sample.kind, {"n": 0, "ok": 0})
        row["n"] += 1
        row["ok"] += ok
    return stats


def rates(stats: dict[str, dict[str, float]]) -> tuple[float, float]:
    """(recall over secret kinds, keep rate over look-alikes), micro-averaged."""
    sec = [v for k, v in stats.items() if not k.startswith("lookalike:")]
    look = [v for k, v in stats.items() if k.startswith("lookalike:")]
    recall = sum(v["ok"] for v in sec) / max(1, sum(v["n"] for v in sec))
    keep = sum(v["ok"] for v in look) / max(1, sum(v["n"] for v in look))
    return recall, keep
