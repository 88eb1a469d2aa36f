"""A real `dagster dev` (webserver + daemon) on a free loopback port, as a user runs it with `make dev`.

One server for the whole e2e package (package-scoped fixture): a temp DAGSTER_HOME holding the
project's dagster.yaml, a temp codellm.yaml (via CODELLM_CONFIG) naming two small git repos made
here: `clean` (an e-mail to redact, nothing else) and `leaky` (an AWS access key id, with the
scrubber's `aws_access_key` rule switched off so the key gets through and the blocking
`no_leftover_secrets` check must fail). The server is stopped by its pid, never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from codellm_assets_tests.conftest import commit_files, git

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCATION = "codellm"
REPOSITORY = "__repository__"
REPO_SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
PER_REPO_STAGES = ["repo_snapshots", "clean_files", "scrubbed_corpus"]
# Built from two halves so that secret scanners run over this test file do not flag it.
LEAKED_AWS_KEY_ID = "AKIA" + "Q7X2M9K4T1B8W3ZR"
REDACTED_EMAIL = "jane.doe@acme-corp.io"
TEST_PARTITIONS = ("clean", "leaky")
# The default multiprocess executor starts one process per step (6 here), each importing the whole code
# location; in-process runs the same asset code in one. The sensor's own runs keep the default.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
SERVER_START_TIMEOUT_S = 90  # ~6-8 s on an idle machine; CI shares 2 cores with other work
LOCATION_LOAD_TIMEOUT_S = 120
# Queued behind the sensor's first runs (2 run slots), then a run process imports the code location.
RUN_TIMEOUT_S = 240


def _module(name: str, body: str) -> str:
    """A small Python file with enough lines to pass the quality rules."""
    funcs = "\n\n".join(
        f"def {name}_{i}(values: list[int]) -> int:\n"
        f"    \"\"\"Sum of the values times {i}.\"\"\"\n"
        f"    total = 0\n    for v in values:\n        total += v * {i}\n    return total\n"
        for i in range(1, 5))
    return f'"""{name}: part of the e2e sample repo."""\n\n{body}\n\n{funcs}'


CLEAN_FILES = {
    "app/billing.py": _module("billing", f'SUPPORT_CONTACT = "{REDACTED_EMAIL}"'),
    "app/inventory.py": _module("inventory", "WAREHOUSES = ['north', 'south']"),
    "app/report.py": _module("report", "COLUMNS = ('sku', 'qty', 'price')"),
}
# No "key"/"secret" keyword near the value: only the aws_access_key rule could catch it.
LEAKY_FILES = {
    "deploy/storage.py": _module("storage", f'UPLOAD_ACCOUNT = "{LEAKED_AWS_KEY_ID}"'),
    "deploy/regions.py": _module("regions", "REGIONS = ['eu-west-1', 'us-east-1']"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    commit_files(path, files, "initial")
    return path


def write_settings(root: Path, port: int) -> Path:
    """codellm.yaml for the server: two tiny repos, state under root/home, aws_access_key rule off."""
    cfg = {
        "home": str(root / "home"),
        "repos": [
            {"name": "clean", "path": str(_make_repo(root / "repos" / "clean", CLEAN_FILES)), "branches": ["main"]},
            {"name": "leaky", "path": str(_make_repo(root / "repos" / "leaky", LEAKY_FILES)), "branches": ["main"]},
        ],
        "quality": {"min_lines": 3},
        "scrub": {"disabled_rules": ["aws_access_key"]},
        "alerts": {"ui_base_url": f"http://127.0.0.1:{port}"},
    }
    path = root / "codellm.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _restore_default_signals() -> None:
    # A non-interactive parent may have SIGINT/SIGTERM ignored; the child would inherit that and
    # only SIGKILL would stop it (see STACK.md). Restore the defaults so SIGTERM shuts down cleanly.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _dagster_executable() -> str:
    beside_python = Path(sys.executable).parent / "dagster"
    exe = str(beside_python) if beside_python.exists() else shutil.which("dagster")
    if not exe:
        pytest.fail("no `dagster` executable beside the test interpreter or on PATH: run `make install`")
    return exe


def _server_env(dagster_home: Path, config: Path) -> dict[str, str]:
    # Stray CODELLM_* overrides from the caller's shell must not change what the server sees.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODELLM")}
    env.update(DAGSTER_HOME=str(dagster_home), CODELLM_CONFIG=str(config), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", GX_ANALYTICS_ENABLED="false", TOKENIZERS_PARALLELISM="false",
               DAGSTER_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    return env


def stop_process_group(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the server by pid; SIGKILL its process group (which we created) if it hangs or
    leaves children behind (daemon, code server, run workers)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(10)


@dataclass
class DagsterDevServer:
    """A running `dagster dev` and the GraphQL calls the tests make against it."""

    port: int
    process: subprocess.Popen
    root: Path
    log_path: Path
    _partition_runs: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """POST a query; GraphQL-level errors fail the test with the server's message."""
        resp = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        try:
            body = resp.json()
        except ValueError:
            resp.raise_for_status()
            raise
        if body.get("errors") or resp.status_code != 200:
            raise AssertionError(f"GraphQL {resp.status_code}: {body.get('errors')} (body {str(body)[:300]})"
                                 f"\nquery: {query}")
        return body["data"]

    def add_partition(self, key: str) -> str:
        """Add a key to the `repos` dynamic partitions (the sensor may have added it already). Asked twice
        when the webserver answers 500 with no GraphQL error (seen once in CI under load, with nothing in
        its log): adding a key is idempotent, a duplicate is an accepted answer."""
        try:
            data = self.graphql(ADD_PARTITION, {"sel": REPO_SELECTOR, "name": "repos", "key": key})
        except AssertionError as e:
            if not str(e).startswith("GraphQL 500: None"):
                raise
            time.sleep(1.0)
            data = self.graphql(ADD_PARTITION, {"sel": REPO_SELECTOR, "name": "repos", "key": key})
        result = data["addDynamicPartition"]
        assert result["__typename"] in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"), result
        return result["__typename"]

    def launch_partition_run(self, partition: str, assets: list[str] = PER_REPO_STAGES) -> str:
        """Launch the per-repo stages for one partition through the GraphQL client; returns the run id."""
        from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

        client = DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=60)
        launch = {"job_name": "__ASSET_JOB", "repository_location_name": LOCATION, "repository_name": REPOSITORY,
                  "asset_selection": assets,
                  "tags": {"dagster/partition": partition, "dagster/priority": "10", "codellm/test": "e2e"}}
        try:
            return client.submit_job_execution(**launch, run_config=IN_PROCESS)
        except DagsterGraphQLClientError as e:
            # A code location that names its own executor has another config schema: use its default.
            if "ConfigValidationInvalid" not in str(e.args[0] if e.args else e):
                raise
            return client.submit_job_execution(**launch)

    def run_status(self, run_id: str) -> str:
        data = self.graphql(RUN_STATUS, {"id": run_id})["runOrError"]
        assert data["__typename"] == "Run", data
        return data["status"]

    def run_errors(self, run_id: str) -> list[str]:
        """Error-level messages of a run's event log: what to show when a run did not succeed."""
        events = self.graphql(RUN_LOGS, {"id": run_id})["logsForRun"].get("events", [])
        out = []
        for ev in events:
            if ev.get("level") == "ERROR" or ev.get("error"):
                detail = (ev.get("error") or {}).get("message", "")
                out.append(f"{ev['__typename']}: {ev.get('message', '')} {detail}".strip())
        return out

    def wait_for_run(self, run_id: str, timeout_s: float = RUN_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        status = "UNKNOWN"
        while time.monotonic() < deadline:
            status = self.run_status(run_id)
            if status in TERMINAL_RUN_STATUSES:
                return status
            time.sleep(1.0)
        raise AssertionError(f"run {run_id} still {status} after {timeout_s:.0f} s\n"
                             f"server log tail:\n{self.log_tail()}")

    def materialize_partition(self, partition: str) -> tuple[str, str]:
        """(run id, final status) of this package's GraphQL-launched run of one repo partition.

        The first call adds both partitions and launches both runs at once (they share the run
        queue with the sensor's own runs), then waits for them; later calls reuse the outcome."""
        if not self._partition_runs:
            launched = {}
            for key in TEST_PARTITIONS:
                self.add_partition(key)
                launched[key] = self.launch_partition_run(key)
            for key, run_id in launched.items():
                self._partition_runs[key] = (run_id, self.wait_for_run(run_id))
        return self._partition_runs[partition]

    def check_executions(self, asset: str, check: str, partition: str | None = None) -> list[dict]:
        data = self.graphql(CHECK_EXECUTIONS, {"key": {"path": [asset]}, "check": check, "partition": partition})
        return data["assetCheckExecutions"]


ADD_PARTITION = """
mutation($sel: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $sel, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}"""

RUN_STATUS = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"""

RUN_LOGS = """
query($id: ID!) {
  logsForRun(runId: $id) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level }
        ... on ErrorEvent { error { message } }
      }
    }
  }
}"""

CHECK_EXECUTIONS = """
query($key: AssetKeyInput!, $check: String!, $partition: String) {
  assetCheckExecutions(assetKey: $key, checkName: $check, partition: $partition, limit: 10) {
    runId status partition
    evaluation { success severity metadataEntries { label ... on IntMetadataEntry { intValue } } }
  }
}"""

WORKSPACE = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack errorChain { error { message stack } } }
        }
      }
    }
    ... on PythonError { message }
  }
}"""


def _wait_for_server_info(server: DagsterDevServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"`dagster dev` exited with {server.process.returncode} while starting:\n"
                        f"{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/server_info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"`dagster dev` did not answer /server_info within {SERVER_START_TIMEOUT_S} s:\n"
                f"{server.log_tail()}")


def _format_python_error(error: dict) -> str:
    """Dagster's PythonError with its cause chain (the user's own exception is usually the last cause)."""
    parts = [error, *(link["error"] for link in error.get("errorChain") or [])]
    return "\n--- caused by ---\n".join(f"{e['message'].strip()}\n{''.join(e.get('stack') or [])}" for e in parts)


def _wait_for_location(server: DagsterDevServer) -> None:
    """Wait until the code location is loaded; a load error fails with Dagster's own traceback."""
    deadline = time.monotonic() + LOCATION_LOAD_TIMEOUT_S
    entries: list = []
    while time.monotonic() < deadline:
        data = server.graphql(WORKSPACE)["workspaceOrError"]
        entries = [e for e in data.get("locationEntries", []) if e["name"] == LOCATION]
        if entries and entries[0]["loadStatus"] == "LOADED":
            error = entries[0]["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                pytest.fail(f"code location '{LOCATION}' failed to load:\n{_format_python_error(error)}")
            return
        time.sleep(1.0)
    pytest.fail(f"code location '{LOCATION}' not loaded after {LOCATION_LOAD_TIMEOUT_S} s: {entries}\n"
                f"{server.log_tail()}")


@pytest.fixture(scope="package")
def dagster_server(tmp_path_factory: pytest.TempPathFactory):
    """`dagster dev -h 127.0.0.1 -p <free port> -w workspace.yaml` on a temp DAGSTER_HOME."""
    root = tmp_path_factory.mktemp("dagster_e2e")
    port = _free_port()
    config = write_settings(root, port)
    with dagster_dev(root, config, root / "dagster_home", port=port) as server:
        yield server


@contextlib.contextmanager
def dagster_dev(root: Path, config: Path, dagster_home: Path, port: int | None = None):
    """`dagster dev -h 127.0.0.1 -p <port> -w workspace.yaml` on ``dagster_home`` (made if missing) and a settings
    file; also for tests that must start the daemon on state made beforehand (e.g. by `codellm run`)."""
    port = port or _free_port()
    if not (dagster_home / "dagster.yaml").exists():
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    log_path = root / f"dagster_dev_{port}.log"
    cmd = [_dagster_executable(), "dev", "-h", "127.0.0.1", "-p", str(port),
           "-w", str(PROJECT_ROOT / "workspace.yaml")]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=_server_env(dagster_home, config), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                # The only code run between fork and exec is signal.signal: no lock to deadlock on.
                                preexec_fn=_restore_default_signals)  # noqa: PLW1509
    server = DagsterDevServer(port=port, process=proc, root=root, log_path=log_path)
    try:
        _wait_for_server_info(server)
        _wait_for_location(server)
        yield server
    finally:
        stop_process_group(proc)
