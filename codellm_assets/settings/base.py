"""Shared parts of the settings sections: the base model, the settings error and the helpers several sections use."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict

# The source checkout (tests and benchmarks use it to find the shipped codellm.yaml). Settings are NOT looked up
# here: a non-editable install or a second checkout sharing a venv would read another checkout's var/.
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
CONFIG_FILE_NAME = "codellm.yaml"


class SettingsError(ValueError):
    """A settings file that cannot be used; the message names the file, the key and the fix."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# What a token looks like (GitHub ghp_/github_pat_, GitLab glpat-, Atlassian ATATT…, Slack xox…, a JWT, or a
# long run of mixed letters and digits): token_env holding one means the token itself was pasted into the file.
_TOKEN_LOOKING = re.compile(r"^(gh[pousr]_|github_pat_|glpat-|ATATT|xox[abposr]-|eyJ)|(?=.*[a-z])(?=.*\d).{20,}")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def _env_name(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    if _TOKEN_LOOKING.search(value):
        raise ValueError(f"{where} must be the NAME of an environment variable that holds the secret (e.g. "
                         "GITHUB_TOKEN), not the secret itself: take the value out of the file, rotate it (it was "
                         "in a config file), and put it in the environment (Kubernetes: a Secret -> env)")
    if not _ENV_NAME.match(value):
        raise ValueError(f"{where}: '{value}' is not an environment variable name (upper-case letters, digits, _)")
    return value



def duplicates(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted (for the "must be unique" rules)."""
    return sorted({n for n in names if names.count(n) > 1})
