"""Review threads -> training text: "code + review comment -> revised code" where the change was applied,
else the commented diff with the discussion.

Shared by GitHub (``diff_hunk`` on each review comment) and GitLab (the file at the reviewed commit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from codellm_assets.core.data.languages import language_from_path

# ```suggestion (GitHub) and ```suggestion:-0+0 (GitLab, with the line range it replaces).
_SUGGESTION = re.compile(r"^[ \t]*```suggestion(?::-(\d+)\+(\d+))?[ \t]*\n(.*?)^[ \t]*```[ \t]*$",
                         re.DOTALL | re.MULTILINE)
REVISED_AFTER = 10   # lines after the commented one shown as the revision
_HUNK_HEADER = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


@dataclass(frozen=True)
class Suggestion:
    lines: list[str]
    above: int = 0   # GitLab: lines above the commented one that it also replaces
    below: int = 0


@dataclass
class ReviewThread:
    path: str
    code: list[str]                  # the code the comment is about, new side, ending at the commented lines
    commented: int                   # how many of code's last lines the comment is on
    comments: list[tuple[str, str]]  # (author, body), first is the review comment
    diff: str = ""                   # the diff hunk shown to the reviewer, when the API gives one
    final_added: set[str] = field(default_factory=set)   # stripped '+' lines of the merged change to `path`
    revised: list[str] | None = None  # the code after a later commit changed it without a suggestion


def find_suggestion(body: str) -> Suggestion | None:
    m = _SUGGESTION.search(body)
    if not m:
        return None
    text = m.group(3)
    lines = text[:-1].split("\n") if text.endswith("\n") else (text.split("\n") if text else [])
    return Suggestion(lines, int(m.group(1) or 0), int(m.group(2) or 0))


def hunk_new_side(diff_hunk: str) -> list[str]:
    """The new-side lines of a unified diff hunk (context and '+' lines, prefixes removed)."""
    out = []
    for line in diff_hunk.split("\n"):
        if line.startswith(("@@", "-", "\\")):
            continue
        out.append(line[1:] if line[:1] in ("+", " ") else line)
    return out


def added_lines(patch: str | None) -> set[str]:
    """Stripped, non-blank '+' lines of a patch: what the merged change put into the file."""
    if not patch:
        return set()
    return {line[1:].strip() for line in patch.split("\n")
            if line.startswith("+") and not line.startswith("+++") and line[1:].strip()}


def suggestion_applied(original: list[str], suggestion: list[str], final_added: set[str]) -> bool:
    """Whether the merged change carries the suggestion: every non-blank suggested line is among the final
    added lines, and the lines it replaced (those not kept by the suggestion) are not all still there."""
    wanted = [s.strip() for s in suggestion if s.strip()]
    if not final_added or not all(s in final_added for s in wanted):
        return False
    removed = [o.strip() for o in original if o.strip() and o.strip() not in set(wanted)]
    if not removed:
        return bool(wanted)
    return not all(o in final_added for o in removed)


def revised_region(patch: str | None, line: int | None, original: list[str], width: int) -> list[str] | None:
    """The new-side lines of the final patch's hunk around ``line`` (the commented line's number), if the
    commented lines are gone from it: what a later commit made of the code the reviewer pointed at."""
    if not patch or not line:
        return None
    wanted = {o.strip() for o in original if o.strip()}
    for hunk in re.split(r"(?m)^(?=@@ )", patch):
        head = _HUNK_HEADER.match(hunk)
        if not head:
            continue
        start = int(head.group(1))
        body = hunk_new_side(hunk.split("\n", 1)[1] if "\n" in hunk else "")
        if start <= line <= start + len(body):
            window = body[max(0, line - start - width): line - start + 1 + REVISED_AFTER]
            while window and not window[-1].strip():
                window.pop()
            if window and not wanted <= {w.strip() for w in window}:
                return window
    return None


def _fence(path: str) -> str:
    return language_from_path(path) or ""


def render(thread: ReviewThread, title: str) -> tuple[str, str]:
    """(kind, Markdown): a review example when the change was applied, else the commented diff."""
    lang = _fence(thread.path)
    original = thread.code[len(thread.code) - thread.commented:] if thread.commented else []
    head = [f"# Code review: `{thread.path}`", "", f"Change: {title}", ""]
    discussion = []
    for i, (author, body) in enumerate(thread.comments):
        label = "Review comment" if i == 0 else "Reply"
        quoted = "\n".join(f"> {b}" if b else ">" for b in body.strip().split("\n"))
        discussion += [f"**{label}** ({author}):", "", quoted, ""]
    suggestion = find_suggestion(thread.comments[0][1]) if thread.comments else None
    revised = None
    if suggestion and suggestion_applied(original, suggestion.lines, thread.final_added):
        revised = thread.code[:len(thread.code) - thread.commented] + suggestion.lines
    elif thread.revised is not None:
        revised = thread.revised
    if revised is not None:
        text = head + ["## Code", "", f"```{lang}", *thread.code, "```", "", *discussion,
                       "## Revised code", "", f"```{lang}", *revised, "```", ""]
        return "review_example", "\n".join(text)
    shown = thread.diff or "\n".join(thread.code)
    text = head + ["## Commented diff", "", "```diff" if thread.diff else f"```{lang}", shown, "```", "",
                   *discussion]
    return "review_comment", "\n".join(text)
