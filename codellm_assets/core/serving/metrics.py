"""Prometheus metrics of one gateway app, on its own CollectorRegistry (never the global one, so several
apps in one process - tests, benchmarks - do not collide). The metric names are a contract with the k8s
dashboards and the monitoring sensors: keep them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
TPS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class GatewayMetrics:
    """All gateway metrics; ``render()`` gives the exposition text for ``GET /metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("codellm_requests_total", "Requests by served version, slot and status",
                                ["version", "slot", "status"], registry=r)
        self.latency = Histogram("codellm_request_latency_seconds", "End-to-end generation latency",
                                 ["version", "slot"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("codellm_tokens_generated_total", "Completion tokens generated",
                              ["version"], registry=r)
        self.tokens_per_second = Histogram("codellm_tokens_per_second", "Completion tokens per second per "
                                           "request", ["version"], buckets=TPS_BUCKETS, registry=r)
        self.inflight = Gauge("codellm_inflight_requests", "Requests being generated now", registry=r)
        self.feedback = Counter("codellm_feedback_total", "IDE feedback events", ["event", "version"],
                                registry=r)
        self.buggy = Counter("codellm_buggy_code_total", "Completions the detector judged buggy",
                             ["version"], registry=r)
        self.assessed = Counter("codellm_assessed_completions_total", "Completions the detector checked",
                                ["version"], registry=r)
        self.syntax_errors = Counter("codellm_syntax_error_total", "Completions with a syntax error",
                                     ["version"], registry=r)
        self.canary_fallbacks = Counter("codellm_canary_fallbacks_total", "Canary failures answered by "
                                        "production instead", registry=r)
        self.shadow_requests = Counter("codellm_shadow_requests_total", "Requests mirrored to the shadow "
                                       "version", registry=r)
        self.shadow_failures = Counter("codellm_shadow_failures_total", "Shadow mirrors that failed, timed "
                                       "out, were preempted or skipped", ["reason"], registry=r)
        self.shadow_similarity = Histogram("codellm_shadow_similarity", "difflib ratio of shadow vs served "
                                           "answer", buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0), registry=r)
        self.store_dropped = Gauge("codellm_store_dropped_rows", "Rows the store dropped (queue full)",
                                   registry=r)
        self.ready = Gauge("codellm_ready", "1 when the last generation check succeeded", registry=r)
        self.repo_context = Counter("codellm_repo_context_total", "Completions by repository-context outcome "
                                    "(added, empty, no_repo, unknown_repo, no_index, no_room, skipped, error)",
                                    ["outcome"], registry=r)
        self.repo_context_chunks = Counter("codellm_repo_context_chunks_total", "Repository-context snippets "
                                           "put before prompts", registry=r)
        self.repo_context_seconds = Histogram("codellm_repo_context_seconds", "Time to retrieve and fit the "
                                              "repository context of one request", buckets=LATENCY_BUCKETS,
                                              registry=r)
        self.routing_weight = Gauge("codellm_routing_weight", "Routing table weights", ["slot", "version"],
                                    registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
