"""Completions that try to forge their HumanEval verdict instead of solving the task: all score failed.

Every attack is a *wrong* solution plus a forgery; it is scored through `score_samples` (the path the
eval gate uses) in each isolation the sandbox can be in: uid=nobody (root, readable checkout), the
nested user namespace (forced, and the real switch a checkout inside a 0700 directory causes, where the
runner used to be dumpable and its /proc/self/fd open to the program) and the reduced mode.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import codellm_assets
from codellm_assets.core.evaluation.humaneval import load_problems, score_samples
from codellm_assets.core.evaluation.sandbox.runner import Sandbox, SandboxError

WRONG = "    return False\n"  # HumanEval/0 has asserts that need True

# Every pipe the program can open through /proc: its own fds and those of each ancestor up to (and
# including) the process that owns the Sandbox ({owner}): the status pipe and the zygote's answer pipe
# are among them. Pipes only, and only this process tree: the test must not write into anything else.
FORGE_ALL_FDS = """
import os
msgs = [b'{{"result": "passed"}}\\n'] + [('{{"id": "%d", "status": "passed", "result": "passed", "exit_code": 0, '
        '"stdout_tail": "", "stderr_tail": "", "duration_s": 0.1}}\\n' % i).encode() for i in range(64)]
pids, pid = ['self'], os.getpid()
while pid > 1 and pid != {owner}:
    try:
        pid = int(open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        break
    pids.append(str(pid))
for p in pids:
    try:
        fds = os.listdir('/proc/%s/fd' % p)
    except OSError:
        continue
    for f in fds:
        path = '/proc/%s/fd/%s' % (p, f)
        try:
            if not os.readlink(path).startswith('pipe:'):
                continue
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            continue
        for m in msgs:
            try:
                os.write(fd, m)
            except OSError:
                pass
        os.close(fd)
os._exit(0)
""".format(owner=os.getpid())

ATTACKS = {
    "status fd 3..31": WRONG + "import os\nfor fd in range(3, 32):\n    try:\n"
                       "        os.write(fd, b'{\"result\": \"passed\"}\\n')\n    except OSError:\n        pass\n"
                       "os._exit(0)\n",
    "/proc/self/fd and /proc/*/fd": WRONG + FORGE_ALL_FDS,
    "close stdout and stderr": WRONG + "import os\nos.close(1)\nos.close(2)\n",
    "overwrite stdout": WRONG + "import os, sys\nos.write(1, b'passed\\n' * 100)\nsys.stdout = None\n",
    "os._exit(0) before the asserts": WRONG + "import os\nos._exit(0)\n",
    "os._exit(0) inside the function": "    import os\n    os._exit(0)\n",
    "sys.exit(0)": WRONG + "import sys\nsys.exit(0)\n",
    "patch AssertionError": WRONG + "import builtins\nclass Never(BaseException):\n    pass\n"
                            "builtins.AssertionError = Never\n",
    "patch builtins": WRONG + "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.len = lambda x: 0\n"
                      "builtins.isinstance = lambda *a: True\nbuiltins.__import__ = None\n",
    "always-equal return value": "    class Eq:\n        def __eq__(self, o):\n            return True\n"
                                 "        __ne__ = lambda self, o: False\n        __bool__ = lambda self: True\n"
                                 "    return Eq()\n",
    "settrace skips the asserts": WRONG + "import sys\ndef tr(frame, event, arg):\n"
                                  "    if frame.f_code.co_name == 'check':\n        raise SystemExit(0)\n"
                                  "    return tr\nsys.settrace(tr)\n",
    "kill the judge": WRONG + "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
}

# HumanEval/32 imports math, random and copy in its tests: shadows and a fake __pycache__ in the
# program's cwd (the only writable place, shared with the judge) must not be used. Only the cwd: in the
# reduced mode /tmp is the host's.
SHADOW = """    return 12345.0
import os
for name in ('math', 'random', 'copy', 'string'):
    body = 'fabs = lambda x: 0.0\\nisclose = lambda *a, **k: True\\n'
    open(name + '.py', 'w').write(body)
    os.makedirs('__pycache__', exist_ok=True)
    open(os.path.join('__pycache__', name + '.cpython-311.pyc'), 'wb').write(b'fake')
    open(os.path.join('__pycache__', '<string>.cpython-311.pyc'), 'wb').write(b'fake')
"""


@pytest.fixture(scope="module")
def problems():
    return load_problems()


def _samples(problems) -> list[dict]:
    samples = [{"task_id": "HumanEval/0", "completion": body, "attack": name} for name, body in ATTACKS.items()]
    samples.append({"task_id": "HumanEval/32", "completion": SHADOW, "attack": "shadow modules + fake __pycache__"})
    # Controls: the honest solutions still pass in the same run (the forgeries did not break scoring).
    samples += [{"task_id": t, "completion": problems[t]["canonical_solution"], "attack": "control"}
                for t in ("HumanEval/0", "HumanEval/32")]
    return samples


def _assert_only_controls_pass(results: list[dict], mode: str) -> None:
    forged = [(r["attack"], r["result"]) for r in results if r["passed"] and r["attack"] != "control"]
    assert forged == [], f"{mode}: forged verdicts scored as passed: {forged}"
    assert all(r["passed"] for r in results if r["attack"] == "control"), results


@pytest.mark.parametrize("isolation", ["any", "userns", "reduced"])
def test_forgeries_fail_in_every_isolation(problems, isolation):
    if isolation == "reduced" and os.getuid() == 0:
        with pytest.raises(SandboxError, match="as root with no namespaces"):
            Sandbox(max_parallel=1, isolation="reduced")
        return
    with Sandbox(max_parallel=2, isolation="any" if isolation == "userns" else isolation) as probe:
        if isolation == "userns" and not probe.mode.startswith("full"):
            pytest.skip(f"no user namespaces here: {probe.mode}")
    with Sandbox(max_parallel=2, isolation=isolation) as box:
        report = score_samples(_samples(problems), problems=problems, sandbox=box, timeout_s=5)
    assert report.isolation == box.mode
    if isolation == "userns":
        assert "nested-userns" in box.mode
    _assert_only_controls_pass(report.results, box.mode)


RUN_IN_COPY = """
import json, sys
from codellm_assets.core.evaluation.humaneval import score_samples, load_problems
import codellm_assets
samples = json.load(open(sys.argv[1]))
report = score_samples(samples, problems=load_problems(), workers=2, timeout_s=5, isolation="full")
print(json.dumps({"package": codellm_assets.__file__, "mode": report.isolation, "results": report.results}))
"""


def test_forgeries_fail_from_a_checkout_in_a_closed_directory(problems, tmp_path):
    """A checkout inside a 0700 directory is unreadable for nobody: the sandbox switches to the nested
    user namespace by itself (this is the real switch, not a forced mode)."""
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    shutil.copytree(Path(codellm_assets.__file__).parent, closed / "checkout" / "codellm_assets",
                    ignore=shutil.ignore_patterns("__pycache__"))
    samples_file = tmp_path / "samples.json"
    samples_file.write_text(json.dumps(_samples(problems)))
    env = {**os.environ, "PYTHONPATH": str(closed / "checkout")}
    out = subprocess.run([sys.executable, "-c", RUN_IN_COPY, str(samples_file)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=240)
    if out.returncode and "SandboxError" in out.stderr:
        pytest.skip(f"no full isolation here: {out.stderr[-300:]}")
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["package"].startswith(str(closed)), answer["package"]
    if os.getuid() == 0:
        assert "nested-userns" in answer["mode"], answer["mode"]
    _assert_only_controls_pass(answer["results"], answer["mode"])


def test_full_isolation_refuses_to_score_without_it(problems, monkeypatch):
    """eval.isolation: full on a machine that cannot give it: a clear error, nothing scored."""
    import codellm_assets.core.evaluation.sandbox.runner as runner

    monkeypatch.setitem(runner.ISOLATION_PREFERENCE, "full", "none")  # the zygote gets no namespaces
    samples = [{"task_id": "HumanEval/0", "completion": problems["HumanEval/0"]["canonical_solution"]}]
    with pytest.raises(SandboxError, match=r"eval.isolation is 'full' but this machine gives only 'reduced.*"
                                           r"eval.isolation: any"):
        score_samples(samples, problems=problems, isolation="full")


def test_humaneval_mode_needs_trusted_tests():
    with Sandbox(max_parallel=1, isolation="any") as box, pytest.raises(ValueError, match="tests="):
        box.submit("assert 1", timeout_s=1, mode="humaneval")
