"""The long tail of provider token formats, each rule with a true and a false example beside it.

Written from each provider's documented token layout (prefix, alphabet, length), not copied from another
scanner. Two shapes:
- ``_p``: a distinctive prefix (``sgp_``, ``ntn_``, ``dckr_pat_``...) followed by a fixed alphabet and length;
- ``_kw``: formats without a prefix (a UUID, 32 hex) that are only a secret next to the provider's name in the
  variable (``SNYK_TOKEN=<uuid>``, ``datadog_api_key: <32 hex>``).

``example`` is built at test time (``build_example``): strings are kept as written, ``(alphabet, n)`` parts are
drawn at random, ``UUID`` is a random UUID; the secret is the text from the first drawn part to the last.
Nothing secret-shaped is written in this file (the project's own repository is scrubbed and re-scanned).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from codellm_assets.core.data.scrub.rulebase import Rule, _has_mix, _r, _random_enough

H, A, U = "0123456789abcdef", string.ascii_letters + string.digits, string.ascii_uppercase + string.digits
L, D, S = string.ascii_lowercase + string.digits, string.digits, string.ascii_letters + string.digits + "-_"
B = A + "+/"
UUID = ("uuid",)
_UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_END = r"(?![A-Za-z0-9_\-])"


@dataclass(frozen=True)
class ProviderRule:
    rule: Rule
    example: tuple          # text parts: str as is, (alphabet, n) drawn, UUID
    counter_example: str    # must be kept


def _p(kind: str, pattern: str, *triggers: str, ex: tuple, no: str, **kw) -> ProviderRule:
    return ProviderRule(_r(kind, pattern, *triggers, **kw), ex, no)


def _kw(kind: str, names: tuple[str, ...], value: str, *, ex: tuple, no: str, check=_has_mix) -> ProviderRule:
    """``<name>...<sep><value>``: the provider's name in the key, then an assignment, then the value format."""
    pattern = (r"(?:" + "|".join(names) + r")[\w.\-]{0,40}?[\"'`]?\]?[ \t]*(?::=|=>|=|:|,)?[ \t]*[\"'`]?(" + value
               + ")" + _END)
    return ProviderRule(_r(kind, pattern, *names, group=1, ignorecase=True, bounded=False, check=check), ex, no)


def _assign(name: str, *parts) -> tuple:
    return (f'{name} = "', *parts, '"')


MORE_PROVIDER_RULES: tuple[ProviderRule, ...] = (
    # --- developer platforms and code hosting -----------------------------------------------------------
    _p("sourcegraph_token", r"sgp_(?:[a-fA-F0-9]{16}_|local_)?[a-fA-F0-9]{40}" + _END, "sgp_",
       ex=("SRC_ACCESS_TOKEN=", "sgp_", (H, 16), "_", (H, 40)), no="prefix = 'sgp_local'"),
    _p("notion_token", r"ntn_\d{11}[A-Za-z0-9]{35}" + _END, "ntn_", ex=("NOTION=", "ntn_", (D, 11), (A, 35)),
       no="ntn_reference_docs"),
    _p("notion_token", r"secret_[A-Za-z0-9]{43}" + _END, "secret_", check=_random_enough,
       ex=("notion = Client(auth='", "secret_", (A, 43), "')"), no="secret_key_base = None"),
    _p("onepassword_secret_key", r"A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}"
       r"-[A-Z0-9]{5}" + _END, "A3-", ex=("key: ", "A3-", (U, 6), "-", (U, 11), "-", (U, 5), "-", (U, 5), "-", (U, 5)),
       no="paper size A3-LANDSCAPE"),
    _p("dockerhub_token", r"dckr_(?:pat|oat)_[A-Za-z0-9_\-]{27,}", "dckr_pat_", "dckr_oat_",
       ex=("docker login -p ", "dckr_pat_", (S, 27)), no="dckr_pat_"),
    _p("clojars_token", r"CLOJARS_[a-z0-9]{60}" + _END, "CLOJARS_", ex=("t=", "CLOJARS_", (L, 60)),
       no="CLOJARS_USERNAME=me"),
    _p("nuget_key", r"oy2[a-z0-9]{43}" + _END, "oy2", check=_has_mix, ex=("nuget push -k ", "oy2", (L, 43)),
       no="oy2 = 3"),
    _p("crates_token", r"cio[A-Za-z0-9]{32}" + _END, "cio", check=lambda v: _has_mix(v) and _random_enough(v),
       ex=("CARGO_REGISTRY_TOKEN=", "cio", (A, 32)), no="audio = cio_ctx"),
    _p("sonarqube_token", r"sq[upa]_[a-f0-9]{40}" + _END, "squ_", "sqp_", "sqa_",
       ex=("SONAR_TOKEN=", "squ_", (H, 40)), no="squ_root = lambda x: x"),
    _p("buildkite_token", r"bkua_[a-f0-9]{40}" + _END, "bkua_", ex=("t = '", "bkua_", (H, 40), "'"), no="bkua_"),
    _p("circleci_token", r"CCIP(?:AT|RJ)_[A-Za-z0-9]{22}_[a-f0-9]{40}" + _END, "CCIPAT_", "CCIPRJ_",
       ex=("CIRCLE=", "CCIPAT_", (A, 22), "_", (H, 40)), no="CCIPAT_ = ''"),
    _p("figma_token", r"figd_[A-Za-z0-9_\-]{40}" + _END, "figd_", ex=("FIGMA=", "figd_", (S, 40)), no="figd_help"),
    _p("prefect_key", r"pnu_[A-Za-z0-9]{36}" + _END, "pnu_", ex=("PREFECT_API_KEY=", "pnu_", (A, 36)),
       no="pnu_count = 2"),
    _p("readme_key", r"rdme_[a-z0-9]{70}" + _END, "rdme_", ex=("README_API_KEY=", "rdme_", (L, 70)),
       no="rdme_file = 'x'"),
    _p("typeform_token", r"tfp_[A-Za-z0-9_\-.=]{59}" + _END, "tfp_", ex=("TF=", "tfp_", (S, 59)), no="tfp_ = 1"),
    _p("harness_token", r"(?:pat|sat)\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20}" + _END, "pat.", "sat.",
       ex=("HARNESS=", "pat.", (S, 22), ".", (A, 24), ".", (A, 20)), no="sat.value = 3"),
    _p("atlassian_token", r"ATCTT3[A-Za-z0-9_\-=]{60,}", "ATCTT3", ex=("c=", "ATCTT3", (S, 180)), no="ATCTT3 docs"),
    _p("gitlab_token", r"glsoat-[A-Za-z0-9_\-]{20,}", "glsoat-", ex=("t=", "glsoat-", (S, 20)), no="glsoat-"),
    # --- clouds and hosting ---------------------------------------------------------------------------
    _p("aws_bedrock_key", r"ABSK[A-Za-z0-9+/]{109,269}={0,2}", "ABSK",
       ex=("AWS_BEARER_TOKEN_BEDROCK=", "ABSK", (B, 132)),
       no="ABSK = 'abs key'"),
    _p("aws_bedrock_key", r"bedrock-api-key-[A-Za-z0-9+/]{100,}={0,2}", "bedrock-api-key-",
       ex=("token = '", "bedrock-api-key-", (B, 400), "'"), no="see bedrock-api-key-docs"),
    _p("cloudflare_origin_ca_key", r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}" + _END, "v1.0-",
       ex=("CF_ORIGIN=", "v1.0-", (H, 24), "-", (H, 146)), no="release v1.0-beta"),
    _kw("cloudflare_token", ("cloudflare", "cf_api"), r"[A-Za-z0-9_\-]{40}|[a-f0-9]{37}",
        ex=_assign("cloudflare_api_token", (S, 40)), no="cloudflare_zone = 'example.com'"),
    _p("clickhouse_key", r"4b1d[A-Za-z0-9]{38}" + _END, "4b1d", check=_has_mix, ex=("CH_KEY=", "4b1d", (A, 38)),
       no="color 4b1d2f"),
    _p("tencent_secret_id", r"AKID[A-Za-z0-9]{32}" + _END, "AKID", ex=("sid = '", "AKID", (A, 32), "'"),
       no="AKID_LENGTH = 36"),
    _p("scaleway_key", r"SCW[A-Z0-9]{17}" + _END, "SCW", check=_has_mix, ex=("SCW_ACCESS_KEY=", "SCW", (U, 17)),
       no="SCW_DEFAULT_REGION=fr-par"),
    _p("supabase_token", r"sbp_[a-f0-9]{40}" + _END, "sbp_", ex=("SUPABASE_ACCESS_TOKEN=", "sbp_", (H, 40)),
       no="sbp_ = 0"),
    _p("supabase_token", r"sb_secret_[A-Za-z0-9_\-]{31,}", "sb_secret_", ex=("k='", "sb_secret_", (S, 31), "'"),
       no="sb_secret_"),
    _p("neon_key", r"napi_[a-z0-9]{64}" + _END, "napi_", ex=("NEON_API_KEY=", "napi_", (L, 64)),
       no="napi_module_register()"),
    _p("netlify_token", r"nfp_[A-Za-z0-9]{36}" + _END, "nfp_", ex=("NETLIFY_AUTH_TOKEN=", "nfp_", (A, 36)),
       no="nfp_count = 1"),
    _p("render_key", r"rnd_[A-Za-z0-9]{32}" + _END, "rnd_", check=_random_enough, ex=("RENDER=", "rnd_", (A, 32)),
       no="rnd_seed = 42"),
    _p("flyio_token", r"FlyV1 fm[12]_[A-Za-z0-9+/=_,\-]{50,}", "FlyV1 ", ex=("FLY_API_TOKEN='", "FlyV1 fm2_", (B, 120),
       "'"), no="FlyV1 docs"),
    _p("openshift_token", r"sha256~[A-Za-z0-9_\-]{43}" + _END, "sha256~", ex=("oc login --token=", "sha256~", (S, 43)),
       no="sha256~ is the prefix"),
    _p("tailscale_key", r"tskey-(?:auth|api|client|webhook|scim|cert)-[A-Za-z0-9]{6,}-[A-Za-z0-9]{10,}", "tskey-",
       ex=("TS_AUTHKEY=", "tskey-auth-", (A, 11), "CNTRL-", (A, 32)), no="tskey-auth-<key>"),
    _p("yandex_token", r"AQVN[A-Za-z0-9_\-]{35,38}" + _END, "AQVN", ex=("YC=", "AQVN", (S, 36)), no="AQVN = 1"),
    _p("yandex_token", r"t1\.[A-Za-z0-9_\-]+={0,2}\.[A-Za-z0-9_\-]{86}={0,2}", "t1.",
       ex=("YC_TOKEN=", "t1.", (S, 40), ".", (S, 86)), no="t1.start()"),
    _p("azure_devops_token", r"AZDO[A-Za-z0-9]{4}" + _END, "AZDO", left=r"[A-Za-z0-9]{76}",
       ex=("ADO_PAT=", (A, 76), "AZDO", (A, 4)), no="AZDO_ORG=acme"),
    _p("azure_apim_key", r"ocp-apim-subscription-key[\"']?[ \t]*[:=,][ \t]*[\"']?([a-f0-9]{32})" + _END,
       "ocp-apim-subscription-key", group=1, ignorecase=True, bounded=False,
       ex=("-H 'Ocp-Apim-Subscription-Key: ", (H, 32), "'"), no="Ocp-Apim-Subscription-Key: {key}"),
    _kw("azure_devops_token", ("azure_devops", "azdo", "ado_pat", "devops_pat"), r"[a-z2-7]{52}",
        ex=_assign("AZDO_TOKEN", ("abcdefghijklmnopqrstuvwxyz234567", 52)), no="azdo_project = 'web'",
        check=lambda v: any(c.isdigit() for c in v)),
    _kw("ibm_cloud_key", ("ibm",), r"[A-Za-z0-9_\-]{44}", ex=_assign("IBM_CLOUD_API_KEY", (S, 44)),
        no="ibm_region = 'us-south'"),
    _kw("linode_token", ("linode", "vultr", "hetzner", "hcloud"), r"[a-f0-9]{64}|[A-Z0-9]{36}",
        ex=_assign("LINODE_TOKEN", (H, 64)), no="linode_region = 'eu-west'"),
    _kw("gcp_key_id", ("private_key_id",), r"[a-f0-9]{40}", ex=('{"private_key_id": "', (H, 40), '"}'),
        no='{"private_key_id": "<id>"}'),
    # --- observability, CI, SaaS ------------------------------------------------------------------------
    _kw("sumologic_key", ("sumo",), r"su[A-Za-z0-9]{12}|[A-Za-z0-9]{64}", ex=_assign("SUMO_ACCESS_ID", "su", (A, 12)),
        no="sumo_endpoint = 'https://api.sumologic.com'"),
    _kw("snyk_token", ("snyk",), _UUID_RE, ex=("SNYK_TOKEN=", UUID), no="snyk_org = 'acme'"),
    _kw("datadog_key", ("datadog", "dd_api", "dd_app", "dd-api", "dd-app"), r"[a-f0-9]{40}|[a-f0-9]{32}",
        ex=_assign("DD_API_KEY", (H, 32)), no="datadog_site = 'datadoghq.eu'"),
    _kw("codecov_token", ("codecov",), _UUID_RE + r"|[a-f0-9]{32}", ex=("CODECOV_TOKEN: ", UUID),
        no="codecov_flags: unit"),
    _kw("launchdarkly_key", ("launchdarkly", "ld_sdk", "ld_api"), r"(?:api|sdk|mob)-" + _UUID_RE,
        ex=_assign("LAUNCHDARKLY_SDK_KEY", "sdk-", UUID), no="launchdarkly_env = 'prod'"),
    _kw("algolia_key", ("algolia",), r"[a-f0-9]{32}", ex=_assign("ALGOLIA_ADMIN_KEY", (H, 32)),
        no="algolia_index = 'docs'"),
    _kw("fastly_token", ("fastly",), r"[A-Za-z0-9_\-]{32}", ex=_assign("FASTLY_API_TOKEN", (S, 32)),
        no="fastly_service = 'www'"),
    _kw("okta_token", ("okta",), r"00[A-Za-z0-9_\-]{40}", ex=_assign("OKTA_API_TOKEN", "00", (S, 40)),
        no="okta_domain = 'acme.okta.com'"),
    _kw("bitbucket_secret", ("bitbucket",), r"[A-Za-z0-9=_\-]{32,64}", ex=_assign("BITBUCKET_APP_PASSWORD", (A, 32)),
        no="bitbucket_workspace = 'acme-team'", check=_random_enough),
    _kw("confluent_secret", ("confluent", "kafka_api"), r"[A-Za-z0-9+/]{64}|[A-Z0-9]{16}",
        ex=_assign("CONFLUENT_API_SECRET", (B, 64)), no="confluent_env = 'prod'"),
    _kw("intercom_token", ("intercom",), r"[A-Za-z0-9=_\-]{60}", ex=_assign("INTERCOM_TOKEN", (S, 60)),
        no="intercom_app = 'web'"),
    _kw("zendesk_token", ("zendesk",), r"[A-Za-z0-9]{40}", ex=_assign("ZENDESK_API_TOKEN", (A, 40)),
        no="zendesk_subdomain = 'acme'"),
    _kw("hubspot_key", ("hubspot",), _UUID_RE, ex=_assign("HUBSPOT_API_KEY", UUID), no="hubspot_portal = 'x'"),
    _p("hubspot_key", r"pat-(?:na|eu|ap)\d-" + _UUID_RE + _END, "pat-na", "pat-eu", "pat-ap",
       ex=("HUBSPOT=", "pat-na1-", UUID), no="pat-na1-docs"),
    _kw("twitch_token", ("twitch",), r"[a-z0-9]{30}", ex=_assign("TWITCH_CLIENT_SECRET", (L, 30)),
        no="twitch_channel = 'acme'"),
    _kw("twitter_secret", ("twitter",), r"[A-Za-z0-9]{25}|[A-Za-z0-9]{50}|[0-9]{15,25}-[A-Za-z0-9]{20,40}",
        ex=_assign("TWITTER_API_SECRET", (A, 50)), no="twitter_handle = 'acme'"),
    _p("twitter_bearer", "A" * 22 + r"[A-Za-z0-9%]{30,}", "A" * 22, check=_has_mix,
       ex=("TWITTER_BEARER=", "AAAAAAAAAAAAAAAAAAAAAA", (A, 60)), no="pad = 'AAAAAAAAAAAAAAAAAAAAAA'"),
    _kw("mailjet_key", ("mailjet", "mj_apikey"), r"[a-f0-9]{32}", ex=_assign("MAILJET_API_SECRET", (H, 32)),
        no="mailjet_sender = 'ops'"),
    _kw("postmark_token", ("postmark",), _UUID_RE, ex=_assign("POSTMARK_SERVER_TOKEN", UUID),
        no="postmark_stream = 'x'"),
    _kw("sparkpost_key", ("sparkpost",), r"[a-f0-9]{40}", ex=_assign("SPARKPOST_API_KEY", (H, 40)),
        no="sparkpost_region = 'eu'"),
    _kw("messagebird_key", ("messagebird", "message_bird", "message-bird"), r"[A-Za-z0-9]{25}",
        ex=_assign("MESSAGEBIRD_API_KEY", (A, 25)), no="messagebird_origin = 'acme'"),
    _kw("plivo_token", ("plivo", "vonage", "nexmo"), r"[A-Za-z0-9]{40}|[A-Za-z0-9]{16}|[a-f0-9]{8}",
        ex=_assign("PLIVO_AUTH_TOKEN", (A, 40)), no="plivo_number = 'x'"),
    _kw("honeycomb_key", ("honeycomb", "hny_"), r"[A-Za-z0-9]{22}|[a-f0-9]{32}",
        ex=_assign("HONEYCOMB_API_KEY", (A, 22)),
        no="honeycomb_dataset = 'prod'"),
    _kw("newrelic_key", ("newrelic", "new_relic"), r"[A-Za-z0-9]{40}|[a-f0-9]{32}",
        ex=_assign("NEW_RELIC_LICENSE_KEY", (A, 40)), no="newrelic_app = 'api'"),
    _kw("pagerduty_key", ("pagerduty",), r"[A-Za-z0-9_+\-]{20}|[a-f0-9]{32}", ex=_assign("PAGERDUTY_TOKEN", (S, 20)),
        no="pagerduty_service = 'api'"),
    _kw("opsgenie_key", ("opsgenie",), _UUID_RE, ex=_assign("OPSGENIE_API_KEY", UUID), no="opsgenie_team = 'sre'"),
    _kw("segment_key", ("segment_write", "segment_key", "segment_api"), r"[A-Za-z0-9]{32}",
        ex=_assign("SEGMENT_WRITE_KEY", (A, 32)), no="segment_size = 4096"),
    _kw("mixpanel_secret", ("mixpanel", "amplitude"), r"[a-f0-9]{32}", ex=_assign("MIXPANEL_API_SECRET", (H, 32)),
        no="mixpanel_project = 'web'"),
    _kw("travis_token", ("travis",), r"[A-Za-z0-9_\-]{22}", ex=_assign("TRAVIS_TOKEN", (S, 22)),
        no="travis_branch = 'main'"),
    _kw("drone_token", ("drone",), r"[A-Za-z0-9]{32}", ex=_assign("DRONE_TOKEN", (A, 32)), no="drone_server = 'ci'"),
    _kw("asana_token", ("asana",), r"\d/\d{16}:[A-Za-z0-9]{32}|2/\d{16}/\d{16}:[a-f0-9]{32}",
        ex=_assign("ASANA_PAT", "1/", (D, 16), ":", (A, 32)), no="asana_workspace = 'acme'"),
    _kw("trello_key", ("trello",), r"[a-f0-9]{32}|[a-f0-9]{64}|ATTA[A-Za-z0-9]{60,}",
        ex=_assign("TRELLO_API_KEY", (H, 32)), no="trello_board = 'sprint'"),
    _kw("gitter_token", ("gitter",), r"[a-z0-9_\-]{40}", ex=_assign("GITTER_TOKEN", (L, 40)), no="gitter_room = 'x'"),
    _kw("mattermost_token", ("mattermost",), r"[a-z0-9]{26}", ex=_assign("MATTERMOST_TOKEN", (L, 26)),
        no="mattermost_team = 'eng'"),
    _kw("sendbird_token", ("sendbird",), r"[a-f0-9]{40}|" + _UUID_RE, ex=_assign("SENDBIRD_API_TOKEN", (H, 40)),
        no="sendbird_app = 'chat'"),
    _kw("pusher_secret", ("pusher",), r"[a-f0-9]{20}", ex=_assign("PUSHER_APP_SECRET", (H, 20)),
        no="pusher_cluster = 'eu'"),
    _kw("rapidapi_key", ("rapidapi", "x-rapidapi"), r"[A-Za-z0-9_\-]{50}", ex=_assign("RAPIDAPI_KEY", (S, 50)),
        no="rapidapi_host = 'x'"),
    _kw("wandb_key", ("wandb",), r"[a-f0-9]{40}", ex=_assign("WANDB_API_KEY", (H, 40)), no="wandb_project = 'llm'"),
    _kw("cohere_key", ("cohere", "co_api"), r"[A-Za-z0-9]{40}", ex=_assign("COHERE_API_KEY", (A, 40)),
        no="cohere_model = 'command'"),
    _kw("mistral_key", ("mistral",), r"[A-Za-z0-9]{32}", ex=_assign("MISTRAL_API_KEY", (A, 32)),
        no="mistral_model = 'large'"),
    _kw("deepgram_key", ("deepgram", "assemblyai", "elevenlabs", "together_api"), r"[a-f0-9]{32,64}|[A-Za-z0-9]{40}",
        ex=_assign("DEEPGRAM_API_KEY", (H, 40)), no="deepgram_model = 'nova'"),
    _kw("snowflake_secret", ("snowflake",), r"[A-Za-z0-9_\-!@#%^&*]{12,64}", ex=_assign("SNOWFLAKE_PASSWORD", (A, 16)),
        no="snowflake_warehouse = 'COMPUTE_WH'", check=_random_enough),
    _kw("mongodb_atlas_key", ("atlas_private", "mongodb_atlas", "atlas_api"), _UUID_RE,
        ex=_assign("ATLAS_PRIVATE_KEY", UUID), no="atlas_project = 'x'"),
    _kw("vault_token", ("vault",), r"s\.[A-Za-z0-9]{24}", ex=_assign("VAULT_TOKEN", "s.", (A, 24)),
        no="vault_addr = 'https://vault'"),
    _kw("adyen_key", ("adyen",), r"AQE[A-Za-z0-9+/=_\-]{80,}", ex=_assign("ADYEN_API_KEY", "AQE", (A, 120)),
        no="adyen_merchant = 'Acme'"),
    _kw("gocardless_token", ("gocardless",), r"live_[A-Za-z0-9_\-=]{40}",
        ex=_assign("GOCARDLESS_TOKEN", "live_", (S, 40)),
        no="gocardless_env = 'live'"),
    _kw("mollie_key", ("mollie",), r"(?:live|test)_[A-Za-z0-9]{30}", ex=_assign("MOLLIE_API_KEY", "live_", (A, 30)),
        no="mollie_locale = 'nl_NL'"),
    _kw("coinbase_secret", ("coinbase", "kraken", "kucoin", "bittrex", "binance"), r"[A-Za-z0-9+/=_\-]{32,100}",
        ex=_assign("COINBASE_API_SECRET", (A, 64)), no="coinbase_pair = 'BTC-USD'", check=_random_enough),
    _kw("sidekiq_secret", ("bundle_enterprise__contribsys__com", "bundle_gems__contribsys__com", "sidekiq"),
        r"[a-f0-9]{8}:[a-f0-9]{8}", ex=("BUNDLE_ENTERPRISE__CONTRIBSYS__COM=", (H, 8), ":", (H, 8)),
        no="sidekiq_concurrency = 10", check=lambda v: True),
    _p("maxmind_key", r"_mmk" + _END, "_mmk", left=r"[A-Za-z0-9]{6}_[A-Za-z0-9]{29}",
       ex=("MAXMIND_LICENSE_KEY=", (A, 6), "_", (A, 29), "_mmk"), no="file_mmk = 1"),
    # --- prefix formats of SaaS and payment providers -----------------------------------------------------
    _p("adafruit_key", r"aio_[A-Za-z0-9]{28}" + _END, "aio_", check=_random_enough, ex=("IO_KEY=", "aio_", (A, 28)),
       no="aio_http_session = None"),
    _p("adobe_secret", r"p8e-[A-Za-z0-9]{32}" + _END, "p8e-", ex=("ADOBE=", "p8e-", (A, 32)), no="p8e-"),
    _p("contentful_token", r"CFPAT-[A-Za-z0-9_\-]{43}" + _END, "CFPAT-", ex=("CMA=", "CFPAT-", (S, 43)), no="CFPAT-"),
    _p("defined_networking_key", r"dnkey-[a-z0-9=_\-]{26}-[a-z0-9=_\-]{52}", "dnkey-",
       ex=("DN=", "dnkey-", (L, 26), "-", (L, 52)), no="dnkey-"),
    _p("dropbox_token", r"sl\.[A-Za-z0-9_\-=]{130,}", "sl.", ex=("DROPBOX=", "sl.", (S, 140)), no="x = sl.start"),
    _p("duffel_token", r"duffel_(?:test|live)_[A-Za-z0-9_\-=]{43}" + _END, "duffel_",
       ex=("t=", "duffel_live_", (S, 43)), no="duffel_live_mode = True"),
    _p("easypost_key", r"EZ[AT]K[A-Za-z0-9]{54}" + _END, "EZAK", "EZTK", ex=("EP=", "EZAK", (A, 54)), no="EZAK"),
    _p("flutterwave_key", r"FLW(?:SEC|PUB)K(?:_TEST)?-[a-h0-9]{32}-X", "FLWSECK", "FLWPUBK",
       ex=("FLW=", "FLWSECK_TEST-", ("abcdefgh0123456789", 32), "-X"), no="FLWSECK_TEST-<key>-X"),
    _p("frameio_token", r"fio-u-[A-Za-z0-9_\-=]{64}" + _END, "fio-u-", ex=("FIO=", "fio-u-", (S, 64)), no="fio-u-"),
    _p("grafana_key", r"eyJrIjoi[A-Za-z0-9]{60,100}={0,2}", "eyJrIjoi", ex=("GRAFANA=", "eyJrIjoi", (A, 72)),
       no="eyJrIjoi"),
    _p("huggingface_token", r"api_org_[A-Za-z]{34}" + _END, "api_org_",
       ex=("HF=", "api_org_", (string.ascii_letters, 34)),
       no="api_org_id = 3"),
    _p("infracost_key", r"ico-[A-Za-z0-9]{32}" + _END, "ico-", check=_has_mix,
       ex=("INFRACOST_API_KEY=", "ico-", (A, 32)),
       no="favicon-small.png"),
    _p("intra42_secret", r"s-s4t2(?:ud|af)-[a-f0-9]{64}" + _END, "s-s4t2",
       ex=("s=", "s-s4t2ud-", (H, 64)), no="s-s4t2"),
    _p("jfrog_token", r"cmVmdGtu[A-Za-z0-9]{56}" + _END, "cmVmdGtu", ex=("JF=", "cmVmdGtu", (A, 56)), no="cmVmdGtu"),
    _p("mailgun_key", r"pubkey-[a-f0-9]{32}" + _END, "pubkey-", ex=("MG=", "pubkey-", (H, 32)), no="pubkey-file"),
    _p("mapbox_token", r"sk\.eyJ[A-Za-z0-9_\-]{50,}\.[A-Za-z0-9_\-]{20,}", "sk.eyJ",
       ex=("MAPBOX=", "sk.eyJ", (S, 60), ".", (S, 22)), no="mapbox pk.eyJ docs"),
    _p("octopus_key", r"API-[A-Z0-9]{26}" + _END, "API-", check=_has_mix, ex=("OCTOPUS=", "API-", (U, 26)),
       no="API-VERSION-HEADER"),
    _p("plaid_token", r"access-(?:sandbox|development|production)-" + _UUID_RE + _END, "access-sandbox-",
       "access-development-", "access-production-", ex=("t='", "access-production-", UUID, "'"),
       no="access-production-db"),
    _p("pubnub_key", r"sec-c-[A-Za-z0-9]{48}" + _END, "sec-c-", ex=("PN=", "sec-c-", (A, 48)), no="sec-c-"),
    _p("scalingo_token", r"tk-us-[A-Za-z0-9_\-]{48}" + _END, "tk-us-", ex=("SC=", "tk-us-", (S, 48)), no="tk-us-east"),
    _p("brevo_key", r"x(?:keysib|smtpsib)-[a-f0-9]{64}-[A-Za-z0-9]{16}" + _END, "xkeysib-", "xsmtpsib-",
       ex=("BREVO=", "xkeysib-", (H, 64), "-", (A, 16)), no="xkeysib-"),
    _p("settlemint_token", r"sm_(?:pat|aat|sat)_[A-Za-z0-9]{16}" + _END, "sm_pat_", "sm_aat_", "sm_sat_",
       ex=("SM=", "sm_pat_", (A, 16)), no="sm_pat_"),
    _p("shippo_token", r"shippo_(?:live|test)_[a-fA-F0-9]{40}" + _END, "shippo_", ex=("S=", "shippo_live_", (H, 40)),
       no="shippo_live_mode"),
    _p("stytch_secret", r"secret-(?:test|live)-[A-Za-z0-9_\-=]{36}" + _END, "secret-test-", "secret-live-",
       ex=("STYTCH=", "secret-live-", (S, 36)), no="secret-live-docs"),
    _p("razorpay_key", r"rzp_(?:live|test)_[A-Za-z0-9]{14}" + _END, "rzp_live_", "rzp_test_",
       ex=("RZ=", "rzp_live_", (A, 14)), no="rzp_live_"),
    _p("telnyx_key", r"KEY[0-9A-F]{32}_[A-Za-z0-9]{22}" + _END, "KEY", ex=("T=", "KEY", ("0123456789ABCDEF", 32), "_",
       (A, 22)), no="KEY_NAME = 'x'"),
    _p("clickup_token", r"pk_\d{6,10}_[A-Z0-9]{32}" + _END, "pk_",
       ex=("CU=", "pk_", (D, 8), "_", (U, 32)), no="pk_id = 1"),
    _p("intercom_token", r"dG9rOi[A-Za-z0-9+/]{40,}={0,2}", "dG9rOi", ex=("IC=", "dG9rOi", (B, 60)), no="dG9rOi"),
    _p("salesforce_token", r"00D[A-Za-z0-9]{12,15}![A-Za-z0-9_.]{80,}", "00D",
       ex=("SF=", "00D", (A, 12), "!", (A, 96)), no="00D = 1"),
    _p("instagram_token", r"IGQV[A-Za-z0-9_\-]{100,}", "IGQV", ex=("IG=", "IGQV", (S, 140)), no="IGQV"),
    _p("zapier_webhook", r"hooks\.zapier\.com/hooks/catch/\d+/[A-Za-z0-9]+/?", "hooks.zapier.com/", bounded=False,
       ex=("url = 'https://", "hooks.zapier.com/hooks/catch/", (D, 7), "/", (L, 6), "'"),
       no="url = 'https://hooks.zapier.com/docs'"),
    _p("teams_webhook", r"webhook\.office\.com/webhookb2/[A-Za-z0-9\-@]+/IncomingWebhook/[A-Za-z0-9]+/[A-Za-z0-9\-]+",
       "webhook.office.com/webhookb2/", bounded=False,
       ex=("url='https://acme.", "webhook.office.com/webhookb2/", UUID, "@", UUID, "/IncomingWebhook/", (H, 32), "/",
           UUID, "'"), no="url='https://acme.webhook.office.com/'"),
    _p("google_chat_webhook", r"chat\.googleapis\.com/v1/spaces/[A-Za-z0-9_\-]+/messages\?key=[^\s'\"&]+&token="
       r"[A-Za-z0-9_\-%=]+", "chat.googleapis.com/v1/spaces/", bounded=False,
       ex=("u='https://", "chat.googleapis.com/v1/spaces/", (S, 11), "/messages?key=", (S, 39), "&token=",
           (S, 43), "'"),
       no="u='https://chat.googleapis.com/v1/spaces/'"),
    # --- more keyword-anchored and prefix formats ---------------------------------------------------------
    _p("bitbucket_secret", r"ATBB[A-Za-z0-9_=.\-]{32,}", "ATBB", ex=("BB=", "ATBB", (A, 32)), no="ATBB = 1"),
    _p("aiven_password", r"AVNS_[A-Za-z0-9_\-]{21}" + _END, "AVNS_", ex=("pw=", "AVNS_", (S, 21)), no="AVNS_ = 1"),
    _p("akamai_token", r"akab-[a-z0-9]{16}-[a-z0-9]{16}" + _END, "akab-", ex=("client_token = ", "akab-", (L, 16), "-",
       (L, 16)), no="akab-docs"),
    _p("amazon_mws_token", r"amzn\.mws\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "amzn.mws.",
       ex=("MWS=", "amzn.mws.", UUID), no="amzn.mws.docs"),
    _p("airtable_token", r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}" + _END, "pat",
       ex=("AIRTABLE=", "pat", (A, 14), ".", (H, 64)),
       no="path.join(a, b)"),
    _p("azure_function_key", r"x-functions-key[\"']?[ \t]*[:=,][ \t]*[\"']?([A-Za-z0-9_\-]{44,56}={0,2})",
       "x-functions-key", group=1, ignorecase=True, bounded=False, ex=("-H 'x-functions-key: ", (S, 54), "=='"),
       no="-H 'x-functions-key: $FUNC_KEY'"),
    _kw("consul_token", ("consul", "nomad"), _UUID_RE, ex=_assign("CONSUL_HTTP_TOKEN", UUID), no="consul_dc = 'dc1'"),
    _kw("mandrill_key", ("mandrill",), r"[A-Za-z0-9_\-]{22}", ex=_assign("MANDRILL_API_KEY", (S, 22)),
        no="mandrill_from = 'ops'"),
    _kw("fauna_secret", ("fauna",), r"fn[A-Za-z0-9_\-]{38}", ex=_assign("FAUNA_SECRET", "fn", (S, 38)),
        no="fauna_region = 'eu'"),
    _kw("ovh_secret", ("ovh",), r"[A-Za-z0-9]{32}", ex=_assign("OVH_APPLICATION_SECRET", (A, 32)),
        no="ovh_endpoint = 'ovh-eu'"),
    _kw("lightstep_token", ("lightstep",), r"[A-Za-z0-9+/=]{84,}|[A-Za-z0-9]{32}",
        ex=_assign("LIGHTSTEP_ACCESS_TOKEN", (A, 32)), no="lightstep_project = 'web'"),
    _kw("splunk_token", ("splunk", "hec_token"), _UUID_RE, ex=_assign("SPLUNK_HEC_TOKEN", UUID),
        no="splunk_index = 'main'"),
    _kw("elastic_key", ("elastic",), r"[A-Za-z0-9+/=_\-]{40,120}", ex=_assign("ELASTIC_API_KEY", (B, 60)),
        no="elastic_index = 'logs-2024'", check=_random_enough),
    _kw("coveralls_token", ("coveralls",), r"[A-Za-z0-9]{32,37}", ex=_assign("COVERALLS_REPO_TOKEN", (A, 33)),
        no="coveralls_service = 'github'"),
    _kw("gradle_publish_secret", ("gradle.publish",), r"[A-Za-z0-9]{32}", ex=("gradle.publish.secret=", (A, 32)),
        no="gradle.publish.key=${GRADLE_KEY}"),
    _kw("linkedin_secret", ("linkedin",), r"[A-Za-z0-9]{16}", ex=_assign("LINKEDIN_CLIENT_SECRET", (A, 16)),
        no="linkedin_page = 'acme'"),
    _kw("spotify_secret", ("spotify",), r"[a-f0-9]{32}", ex=_assign("SPOTIFY_CLIENT_SECRET", (H, 32)),
        no="spotify_market = 'US'"),
    _kw("auth0_secret", ("auth0",), r"[A-Za-z0-9_\-]{64}", ex=_assign("AUTH0_CLIENT_SECRET", (S, 64)),
        no="auth0_domain = 'acme.eu.auth0.com'"),
    _kw("sanity_token", ("sanity",), r"sk[A-Za-z0-9]{78,}", ex=_assign("SANITY_API_TOKEN", "sk", (A, 180)),
        no="sanity_dataset = 'production'"),
    _kw("lob_key", ("lob_",), r"(?:live|test)_[a-f0-9]{35}", ex=_assign("LOB_API_KEY", "live_", (H, 35)),
        no="lob_env = 'test'"),
    _kw("freshdesk_key", ("freshdesk", "freshworks"), r"[A-Za-z0-9]{20}", ex=_assign("FRESHDESK_API_KEY", (A, 20)),
        no="freshdesk_domain = 'acme'"),
    _kw("dropbox_token", ("dropbox",), r"[A-Za-z0-9]{11}AAAAAAAAAA[A-Za-z0-9_\-]{43}|[a-z0-9]{15}",
        ex=_assign("DROPBOX_APP_SECRET", (L, 15)), no="dropbox_folder = '/team'"),
    _kw("packagist_token", ("packagist",), r"pack[A-Za-z0-9_]{30,}|[a-f0-9]{20,}",
        ex=_assign("PACKAGIST_TOKEN", (H, 24)),
        no="packagist_vendor = 'acme'"),
    _kw("upstash_token", ("upstash",), r"[A-Za-z0-9=_\-]{40,}", ex=_assign("UPSTASH_REDIS_REST_TOKEN", (S, 60)),
        no="upstash_region = 'eu1'", check=_random_enough),
    _kw("weaviate_key", ("weaviate", "qdrant"), r"[A-Za-z0-9_\-]{32,}", ex=_assign("WEAVIATE_API_KEY", (A, 36)),
        no="weaviate_class = 'Docs'", check=_random_enough),
    # --- AI providers -----------------------------------------------------------------------------------
    _p("langsmith_key", r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}" + _END, "lsv2_", ex=("LS=", "lsv2_pt_", (H, 32),
       "_", (H, 10)), no="lsv2_"),
    _p("pinecone_key", r"pcsk_[A-Za-z0-9]{4,}_[A-Za-z0-9]{40,}" + _END, "pcsk_", ex=("PC=", "pcsk_", (A, 5), "_",
       (A, 60)), no="pcsk_"),
    _p("elevenlabs_key", r"sk_[a-f0-9]{48}" + _END, "sk_", ex=("XI_API_KEY=", "sk_", (H, 48)), no="sk_ = 1"),
    _p("cerebras_key", r"csk-[a-z0-9]{48}" + _END, "csk-", check=_has_mix, ex=("C=", "csk-", (L, 48)), no="csk-"),
)


def build_example(parts: tuple, rng: random.Random) -> tuple[str, str]:
    """(text, secret) for a rule's ``example``."""
    drawn: list[str] = []
    first = last = None
    for part in parts:
        if part is UUID or part == UUID:
            h = "".join(rng.choice(H) for _ in range(32))
            value = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        elif isinstance(part, tuple):
            alphabet, n = part
            while True:
                value = "".join(rng.choice(alphabet) for _ in range(n))
                mixable = any(c.isdigit() for c in alphabet) and any(c.isalpha() for c in alphabet)
                if n < 12 or alphabet == H or not mixable or (
                        any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
                    break  # random tokens of a letters-and-digits alphabet have both
        else:
            drawn.append(part)
            continue
        first = len(drawn) if first is None else first
        last = len(drawn)
        drawn.append(value)
    text = "".join(drawn)
    return text, "".join(drawn[first:last + 1])
