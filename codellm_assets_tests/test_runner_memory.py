"""`codellm run` executes every step in one process: what a step freed must go back to the OS before the next
step, or the peak grows with the number of partitions (measured in a fresh subprocess: RSS is per process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from codellm_assets import runner

SCRIPT = textwrap.dedent("""
    import psutil
    from codellm_assets.runner import peak_rss_gb, release_memory

    rss = lambda: psutil.Process().memory_info().rss
    base = rss()
    texts = ["x" * 10_000 + str(i) for i in range(20_000)]           # 200 MB of file-sized strings
    survivors = ["y" * 10_000 + str(i) for i in range(0, 20_000, 50)]  # a few kept, between them in the heap
    del texts
    held = rss() - base
    release_memory()
    print(held, rss() - base, peak_rss_gb())
""")


@pytest.mark.skipif(runner._LIBC is None or not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_memory_gives_freed_pages_back():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    held, after, peak = (float(x) for x in out.split())
    assert held > 150e6             # freed, but still resident: what piled up step after step
    assert after < 50e6             # given back
    assert peak > 0.2               # the process's peak so far (GB) still says what it needed


def test_what_lives_before_the_steps_is_frozen_for_the_run_only():
    """Collections during the run skip the definitions and modules (gc.freeze); after the run, and after a
    failing one, the collector sees everything again."""
    import gc

    assert gc.get_freeze_count() == 0
    with runner._frozen_until_done():
        assert gc.get_freeze_count() > 0
        cycle: list = []
        cycle.append(cycle)              # made during a step: still collected
        del cycle
        assert gc.collect() >= 1
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), runner._frozen_until_done():
        raise RuntimeError("a step failed")
    assert gc.get_freeze_count() == 0
