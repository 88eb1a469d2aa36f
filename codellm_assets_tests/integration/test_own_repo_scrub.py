"""The project's own repository is in the default corpus: after scrubbing, the independent re-scan must
find nothing in it, or `make run` would stop at the blocking check on a fresh clone."""

import subprocess
from pathlib import Path

from codellm_assets.core.data.scrub.scrubber import find_leftovers, scrub_text
from codellm_assets.settings import PROJECT_ROOT


def test_scrubbed_project_sources_have_no_leftovers():
    files = subprocess.run(["git", "-C", str(PROJECT_ROOT), "ls-files", "*.py"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert len(files) > 50
    leftovers = {}
    for rel in files:
        found = find_leftovers(scrub_text((Path(PROJECT_ROOT) / rel).read_text()).text)
        if found:
            leftovers[rel] = [(f.type, f.line) for f in found]
    assert leftovers == {}
