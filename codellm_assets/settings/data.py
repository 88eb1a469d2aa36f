"""Settings of the data stage: repos (and the company demo repo), ingest, checks, quality, scrub, dedup, data,
dataset and the non-code sources."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from codellm_assets.settings.base import _env_name, _Model, duplicates


class CompanyDemoSettings(_Model):
    """The generated company repo (core/data/company_sample.py): an internal library and the services that use
    it, committed one batch a day - the repo on which fine-tuning visibly beats a base trained on public code."""

    seed: int = Field(0, ge=0, description="which company: 0 is `quillon` (LedgerVault, stamp_quorble, ...); "
                      "another seed draws other library names and service domains (a repo never tuned on)")
    services: int = Field(48, ge=4, le=2000, description="service files, four per daily commit after the "
                          "library's; the time split holds out the newest batch")


class RepoSettings(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="partition key; letters, digits, . _ -")
    path: str | None = Field(None, description="local path of a git repository (absolute or relative)")
    url: str | None = Field(None, description="clone URL; cloned/mirrored under home/mirrors")
    remotes: list[str] = Field(default_factory=list, description="other URLs developers' clones of this repo "
                               "use (what Tabby sends as git_url, e.g. git@host:org/x.git); the gateway also "
                               "matches `url` and the git remotes of `path`")
    branches: list[str] = Field(default_factory=lambda: ["HEAD"], min_length=1)
    languages: list[str] | None = Field(None, description="keep only these languages (default: all known)")
    seed_from_package: str | None = Field(
        None, description="if path does not exist, build a sample git repo there from this installed package")
    seed_company_demo: CompanyDemoSettings | None = Field(
        None, description="if path does not exist, generate the company demo repo there (deterministic: the same "
        "seed gives the same commits); an existing path is used as it is")
    train_weight: float = Field(1.0, gt=0, description="how often the training split shows this repo's files: 3 "
                                "= three passes (each with other FIM cuts), 0.5 = half its files (by hash). Up-"
                                "weight the repos the model is for; down-weight vendored or generated code. "
                                "Validation and the held-out files are never weighted")

    @model_validator(mode="after")
    def _one_source(self) -> RepoSettings:
        if not self.path and not self.url:
            raise ValueError(f"repo '{self.name}': set `path` (a local git repo) or `url` (a clone URL)")
        if self.seed_company_demo is not None and self.seed_from_package:
            raise ValueError(f"repo '{self.name}': `seed_company_demo` and `seed_from_package` both say what to "
                             "build at `path`; keep one")
        if (self.seed_company_demo is not None or self.seed_from_package) and (self.url or not self.path):
            raise ValueError(f"repo '{self.name}': a seeded sample repo is built at `path`; set `path` and remove "
                             "`url`")
        return self


class IngestSettings(_Model):
    """How git_heads_sensor polls the repos (fetching `url:` mirrors) and retries failed snapshot runs."""
    fetch_workers: int = Field(4, ge=1, description="repos fetched at once, in a thread pool of the code server")
    fetch_timeout_s: float = Field(600, gt=0, description="one repo's clone / fetch is killed after this long "
                                   "(the sensor and repo_snapshots both use it)")
    tick_wait_s: float = Field(20, ge=0, description="how long a sensor tick waits for the fetches it started; "
                               "the rest finish in the background and are picked up by a later tick. Keep it "
                               "well under Dagster's sensor timeout (60 s by default)")
    max_fetches_per_tick: int = Field(256, ge=1, description="repos a tick starts fetching at most (the ones "
                                      "polled longest ago first); the others are polled on later ticks")
    backoff_base_s: float = Field(60, ge=0, description="a repo that failed to fetch is not polled again for "
                                  "this long, doubled after every further failure; reset by a success")
    backoff_max_s: float = Field(3600, ge=0, description="the longest wait between polls of a failing repo")
    max_run_retries: int = Field(3, ge=0, description="a snapshot run that failed is requested again this many "
                                 "times for the same heads (the next commit starts over)")
    run_start_grace_s: float = Field(900, gt=0, description="a requested run that never appeared in the "
                                     "instance after this long (a dropped request) is requested again")

    @model_validator(mode="after")
    def _backoff_order(self) -> IngestSettings:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(f"ingest.backoff_max_s ({self.backoff_max_s}) must be >= ingest.backoff_base_s "
                             f"({self.backoff_base_s})")
        return self


class ChecksSettings(_Model):
    gx_sample_rows: int = Field(10_000, ge=1, description="great-expectations validates at most this many rows "
                                "of an asset (an evenly spread, deterministic sample; the metadata says how "
                                "many); the same rules still run on every row in polars, so a bad row outside "
                                "the sample fails the check too")


class QualitySettings(_Model):
    min_lines: int = Field(10, ge=0)
    max_lines: int = Field(500, ge=1)
    long_file_policy: Literal["drop", "truncate"] = "truncate"
    max_line_length: int = Field(1000, ge=10)
    max_mean_line_length: float = Field(100.0, gt=0)
    min_alnum_fraction: float = Field(0.25, ge=0, le=1)
    max_file_bytes: int = Field(1_000_000, ge=1)
    exclude_tests: bool = False
    exclude_globs: list[str] = Field(default_factory=lambda: [
        "*.min.js", "*.min.css", "*generated*", "*_pb2.py", "*_pb2_grpc.py",
        "*/vendor/*", "vendor/*", "*/third_party/*", "third_party/*", "*/node_modules/*", "node_modules/*",
        "*/site-packages/*", "*.lock", "package-lock.json", "yarn.lock", "poetry.lock", "Cargo.lock",
        "go.sum", "pnpm-lock.yaml", "*.map",
    ])


class ScrubSettings(_Model):
    entropy_threshold: float = Field(3.5, ge=0, description="bits/char for keyword-anchored generic secrets")
    redact_emails: bool = True
    redact_ips: bool = True
    redact_phones: bool = True
    redact_hosts: bool = True
    internal_domains: list[str] = Field(default_factory=list, description="the company's own DNS domains "
                                        "(e.g. acme.io, int.acme.net): host names under them are redacted as <HOST>")
    private_tlds: list[str] = Field(default_factory=lambda: ["internal", "corp", "lan", "local", "intra",
                                                             "intranet"],
                                    description="suffixes that only exist inside a company network")
    disabled_rules: list[str] = Field(default_factory=list, description="placeholder kinds not to redact (e.g. "
                                      "a rule with false positives on your code); the blocking re-scan still runs")


class DedupSettings(_Model):
    backend: Literal["rensa", "datasketch"] = "rensa"
    num_perm: int = Field(256, ge=16)
    shingle_size: int = Field(2, ge=1, description="word-token shingle length; 2 with code_aware (3 on raw "
                              "words): tuned on the hard near-duplicate set's tuning slice (benchmarks/dedup.py)")
    threshold: float = Field(0.7, gt=0, lt=1)
    chain_threshold: float = Field(0.5, gt=0, lt=1, description="a file joined to the kept file through a "
                                   "chain of near duplicates (each >= threshold) is removed too when its own "
                                   "Jaccard to the kept file is >= this; >= threshold: star clustering only "
                                   "(benchmarks/dedup.py section 2b)")
    lsh_shards: int = Field(1, ge=1, description="split the LSH bands into this many independent shards "
                            "(same result; each shard needs only the signatures)")
    code_aware: bool = Field(True, description="compare files' code, their comments and docstrings only at "
                             "prose_weight (a copy with reworded prose or a new header is still a copy)")
    prose_weight: float = Field(0.15, ge=0, le=1, description="with code_aware: the hashed fraction of comment "
                                "and docstring shingles compared (0: code only, which calls distinct files that "
                                "share scaffolding and differ in their docs copies; 1: prose counts as code)")
    normalisation_version: int = Field(3, description="version of the code-aware normalisation "
                                       "(code_text.NORMALISATION_VERSION, kept equal by a test): part of the "
                                       "settings identity, so cached signatures change with it. Leave the default")
    decontaminate: bool = True
    decontam_ngram: int = Field(13, ge=4, description="token n-gram length for eval-prompt overlap")

    @model_validator(mode="after")
    def _chain_within_threshold(self) -> DedupSettings:
        if self.chain_threshold > self.threshold:
            raise ValueError(f"dedup.chain_threshold ({self.chain_threshold}) is above dedup.threshold "
                             f"({self.threshold}): a chain only widens the star; set it <= threshold "
                             "(= threshold: star clustering only)")
        return self


class DataSettings(_Model):
    """How the data stages run on one machine (Kubernetes fans out per repo partition on top of this)."""

    workers: int = Field(1, ge=1, description="processes for the per-file stages (clean, scrub, leftover "
                         "re-scan, signatures) over batches of one partition's files; 1: in this process "
                         "(fastest on the 2-core embedded run: a pool's start-up costs more than it saves there)")
    cache_dir: str | None = Field(None, description="per-file stage results (Parquet shards by stage, settings "
                                  "hash and repo); default: <home>/data/blob_cache. Safe to delete")


class DatasetSettings(_Model):
    seq_len: int = Field(256, ge=16)
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="> 0: the adapter's validation loss "
                                       "against the base's is how every run proves it learned")
    holdout_split: Literal["time", "hash"] = Field(
        "time", description="which files are held out of training for the company benchmark: time (the files "
        "the newest commits changed, per repo, by last commit date from git) or hash (a stable hash of "
        "repo:path). A repo whose files all share one date, or whose newest date covers more than half of "
        "them, falls back to hash (named in the manifest)")
    holdout_fraction: float = Field(0.05, ge=0, lt=1, description="share of each repo's files held out for the "
                                    "company benchmark (time: the newest; files of one date stay together)")
    holdout_since: datetime | None = Field(None, description="time split only: hold out every file last "
                                           "changed at or after this date (ISO, UTC when no zone is given) "
                                           "instead of the newest holdout_fraction")
    fim_rate: float = Field(0.0, ge=0, le=1)
    fim_spm_rate: float | None = Field(None, ge=0, le=1, description="share of the FIM examples laid out "
                                       "suffix-prefix-middle (StarCoder trains both); unset: the base model's "
                                       "layout (presets.yaml fim.layout: spm -> all, psm -> none)")
    context_rate: float = Field(0.0, ge=0, le=1, description="share of each repo's FIM documents whose "
                                "examples carry repository context (snippets of the repo's other train files, "
                                "as the gateway and the benchmark retrieve them) before the code: a model "
                                "trained without never learns to read it (core/data/fim_context.py)")
    context_tokens: int = Field(0, ge=0, description="tokens of the training window that context may take; "
                                "match it to what serving sends (serving.repo_context_tokens) and the "
                                "benchmark (eval.company_context_chars, ~3 characters a token)")
    tokenizer_vocab_size: int = Field(4096, ge=300)
    seed: int = Field(0, description="seeds the FIM draws; the splits are by date and content hash, not seeded")

    @field_validator("holdout_since")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v

    @model_validator(mode="after")
    def _context_fits(self) -> DatasetSettings:
        if self.context_rate > 0 and (self.fim_rate == 0 or self.context_tokens == 0):
            raise ValueError("dataset.context_rate applies to FIM examples with a context budget: set "
                             "dataset.fim_rate > 0 and dataset.context_tokens > 0, or context_rate: 0")
        if self.context_rate > 0 and self.context_tokens > self.seq_len // 2:
            raise ValueError(f"dataset.context_tokens ({self.context_tokens}) would leave less than half of the "
                             f"training window (dataset.seq_len {self.seq_len}) for the code: lower it to at most "
                             f"{self.seq_len // 2} or raise seq_len")
        return self

    @model_validator(mode="after")
    def _since_needs_time(self) -> DatasetSettings:
        if self.holdout_since is not None and self.holdout_split != "time":
            raise ValueError("dataset.holdout_since applies to the time split: set dataset.holdout_split: time "
                             "or remove holdout_since")
        return self


class SourceSettings(_Model):
    """One non-code source: a partition of `source_documents`. The token is read from the environment variable
    NAMED by `token_env` when the partition runs; it is never written in the settings file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="partition key; letters, digits, . _ -")
    kind: Literal["github_reviews", "gitlab_reviews", "confluence", "jira"]
    base_url: str = Field(pattern=r"^https?://", description="API root: https://api.github.com (GHE: "
                          "https://HOST/api/v3), https://HOST/api/v4 (GitLab), https://SITE.atlassian.net/wiki "
                          "(Confluence Cloud; Server: its context root), https://SITE.atlassian.net (Jira)")
    repo: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$", description="github_reviews: owner/name")
    project: str | None = Field(None, description="gitlab_reviews: numeric id or group/path of the project")
    projects: list[str] = Field(default_factory=list, description="jira: project keys (ABC, OPS)")
    space: str | None = Field(None, description="confluence: the space key")
    token_env: str = Field(description="NAME of the environment variable holding the API token (never the token)")
    user_env: str | None = Field(None, description="confluence / jira Cloud: NAME of the variable holding the "
                                 "account e-mail (basic auth with the API token); unset: the token is a bearer PAT")
    resolved_only: bool = Field(False, description="reviews: only threads marked resolved")
    since: str | None = Field(None, description="first run: only items updated at or after this ISO date")
    overlap_minutes: int = Field(0, ge=0, description="re-list items updated this long before the cursor (Jira "
                                 "reads JQL dates in the API user's time zone: set it to the zone's offset, or "
                                 "use a UTC user); unchanged versions are skipped, not re-fetched")
    page_size: int = Field(50, ge=1, le=1000)
    max_items: int | None = Field(None, ge=1, description="at most this many changed items per run (the rest next run)")
    linked_commits: bool = Field(True, description="jira: read each changed issue's remote links for commits")
    jira_api: Literal["v2", "v3"] = Field("v2", description="jira: v2 = /rest/api/2/search, startAt/total (Server, "
                                         "Data Center); v3 = Jira Cloud's /rest/api/3/search/jql, nextPageToken, "
                                         "rich-text (ADF) bodies")
    timeout_s: float = Field(30.0, gt=0, description="per request (connect and read)")
    max_retries: int = Field(5, ge=0, description="retries of a rate-limited (429 / 403 rate limit), 5xx or "
                             "timed-out request")
    max_retry_wait_s: float = Field(120.0, gt=0, description="cap on one wait (Retry-After or backoff)")

    _REQUIRED: ClassVar[dict[str, str]] = {"github_reviews": "repo", "gitlab_reviews": "project",
                                           "confluence": "space", "jira": "projects"}

    @field_validator("token_env", "user_env")
    @classmethod
    def _is_env_name(cls, v: str | None, info) -> str | None:
        return _env_name(v, f"sources.connectors[].{info.field_name}")

    @model_validator(mode="after")
    def _kind_fields(self) -> SourceSettings:
        need = self._REQUIRED[self.kind]
        if not getattr(self, need):
            raise ValueError(f"source '{self.name}' (kind {self.kind}) needs `{need}`")
        return self


def _document_quality() -> QualitySettings:
    # Prose is not code: a paragraph is one long line, and a short ticket is still worth keeping.
    return QualitySettings(min_lines=3, max_lines=2000, max_line_length=20000, max_mean_line_length=2000,
                           min_alnum_fraction=0.25, exclude_globs=[])


class SourcesSettings(_Model):
    connectors: list[SourceSettings] = Field(default_factory=list, description="none by default")
    poll_minutes: int = Field(60, ge=1, description="sources_sensor asks each source for changes this often")
    quality: QualitySettings = Field(default_factory=_document_quality, description="the quality rules for "
                                     "documents (same rules as code, limits suited to prose)")

    @model_validator(mode="after")
    def _unique(self) -> SourcesSettings:
        dupes = duplicates([c.name for c in self.connectors])
        if dupes:
            raise ValueError(f"source names must be unique; duplicated: {dupes}")
        return self

