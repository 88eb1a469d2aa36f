"""Atlassian Document Format (Jira Cloud's v3 rich text: descriptions, comments) -> Markdown-ish text."""

from __future__ import annotations

from typing import Any


def _marked(node: dict) -> str:
    text = node.get("text", "")
    marks = node.get("marks") or []
    kinds = {m.get("type") for m in marks}
    if "code" in kinds:
        text = f"`{text}`"
    if "strong" in kinds:
        text = f"**{text}**"
    if "em" in kinds:
        text = f"*{text}*"
    href = next(((m.get("attrs") or {}).get("href") for m in marks if m.get("type") == "link"), None)
    return f"[{text}]({href})" if href else text


def _list(node: dict, ordered: bool) -> str:
    items = [adf_to_markdown(item).strip().replace("\n", "\n   ") for item in node.get("content") or []]
    return "\n".join(f"{i + 1}. {t}" if ordered else f"- {t}" for i, t in enumerate(items)) + "\n\n"


def adf_to_markdown(node: Any) -> str:
    """Text of an ADF node (a str is returned as it is: v2 bodies are plain wiki text)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    kind, attrs = node.get("type"), node.get("attrs") or {}
    if kind == "text":
        return _marked(node)
    if kind == "hardBreak":
        return "\n"
    if kind in ("mention", "emoji", "status"):
        return str(attrs.get("text", ""))
    if kind in ("bulletList", "orderedList"):
        return _list(node, ordered=kind == "orderedList")
    inner = "".join(adf_to_markdown(child) for child in node.get("content") or [])
    if kind == "codeBlock":
        return f"```{attrs.get('language') or ''}\n{inner}\n```\n\n"
    if kind == "heading":
        return "#" * int(attrs.get("level", 2)) + f" {inner}\n\n"
    if kind in ("paragraph", "panel", "tableRow"):
        return f"{inner.rstrip()}\n\n"
    if kind == "blockquote":
        return "\n".join(f"> {line}" if line else ">" for line in inner.strip().split("\n")) + "\n\n"
    if kind in ("tableCell", "tableHeader"):
        return inner.strip() + " | "
    if kind == "doc":
        return inner.strip()
    return inner
