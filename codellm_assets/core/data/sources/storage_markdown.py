"""Confluence storage format (XHTML with ``ac:`` / ``ri:`` elements) -> Markdown.

The Confluence-specific elements are rewritten into plain HTML first (code macros into ``<pre><code>``,
panels into quotes, page links into their titles, task lists into check boxes); markdownify does the rest.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Tag
from markdownify import markdownify

_PANELS = {"info": "Info", "note": "Note", "warning": "Warning", "tip": "Tip", "panel": "Note"}
_DROPPED_MACROS = {"toc", "children", "recently-updated", "anchor", "pagetree", "jira", "attachments"}


def _code_block(soup: BeautifulSoup, macro: Tag) -> Tag:
    lang = macro.find("ac:parameter", attrs={"ac:name": "language"})
    body = macro.find("ac:plain-text-body")
    pre, code = soup.new_tag("pre"), soup.new_tag("code")
    if lang and lang.get_text(strip=True):
        code["class"] = f"language-{lang.get_text(strip=True)}"
    code.string = body.get_text() if body else ""
    pre.append(code)
    return pre


def _panel(soup: BeautifulSoup, macro: Tag, label: str) -> Tag:
    quote = soup.new_tag("blockquote")
    title = macro.find("ac:parameter", attrs={"ac:name": "title"})
    head = soup.new_tag("p")
    head.append(soup.new_tag("strong"))
    head.strong.string = f"{label}:" + (f" {title.get_text(strip=True)}" if title else "")
    quote.append(head)
    body = macro.find("ac:rich-text-body")
    for child in list(body.contents) if body else []:
        quote.append(child.extract())
    return quote


def _rewrite_macros(soup: BeautifulSoup) -> None:
    # innermost first: a code block inside a panel is rewritten before the panel moves it
    for macro in reversed(soup.find_all(["ac:structured-macro", "ac:macro"])):
        name = (macro.get("ac:name") or "").lower()
        if name in ("code", "noformat"):
            macro.replace_with(_code_block(soup, macro))
        elif name in _PANELS:
            macro.replace_with(_panel(soup, macro, _PANELS[name]))
        elif name in _DROPPED_MACROS:
            macro.decompose()
        else:   # expand, section, column, …: keep what they wrap
            body = macro.find("ac:rich-text-body")
            if body:
                macro.replace_with(*list(body.contents)) if body.contents else macro.decompose()
            else:
                macro.decompose()


def _rewrite_links_and_media(soup: BeautifulSoup) -> None:
    for link in soup.find_all("ac:link"):
        body = link.find(["ac:plain-text-link-body", "ac:link-body"])
        target = link.find(["ri:page", "ri:attachment", "ri:space", "ri:blog-post"])
        text = body.get_text() if body else ""
        if not text and target is not None:
            text = target.get("ri:content-title") or target.get("ri:filename") or target.get("ri:space-key") or ""
        if not text and link.find("ri:user"):
            text = "@user"
        link.replace_with(text)
    for image in soup.find_all("ac:image"):
        att = image.find("ri:attachment")
        url = image.find("ri:url")
        name = (att.get("ri:filename") if att else None) or (url.get("ri:value") if url else None) or "image"
        image.replace_with(f"[image: {name}]")
    for user in soup.find_all("ri:user"):
        user.replace_with("@user")
    for emoticon in soup.find_all("ac:emoticon"):
        emoticon.replace_with(emoticon.get("ac:emoji-fallback") or "")
    for when in soup.find_all("time"):
        when.replace_with(when.get("datetime") or when.get_text())


def _rewrite_tasks(soup: BeautifulSoup) -> None:
    for tasks in soup.find_all("ac:task-list"):
        ul = soup.new_tag("ul")
        for task in tasks.find_all("ac:task"):
            status = task.find("ac:task-status")
            body = task.find("ac:task-body")
            li = soup.new_tag("li")
            li.string = ("[x] " if status and status.get_text(strip=True) == "complete" else "[ ] ") + \
                (body.get_text(" ", strip=True) if body else "")
            ul.append(li)
        tasks.replace_with(ul)


def _language(el: Tag) -> str | None:
    classes = el.get("class") or []
    classes = classes.split() if isinstance(classes, str) else classes
    for c in classes:
        if c.startswith("language-"):
            return c[len("language-"):]
    return None


def storage_to_markdown(storage: str, title: str | None = None) -> str:
    """Markdown of a page's ``body.storage.value`` (with ``# title`` first when given)."""
    soup = BeautifulSoup(storage or "", "html.parser")
    _rewrite_tasks(soup)
    _rewrite_macros(soup)
    _rewrite_links_and_media(soup)
    for leftover in soup.find_all(re.compile(r"^(ac|ri):")):   # anything Confluence-only still there
        leftover.unwrap()
    text = markdownify(str(soup), heading_style="ATX", bullets="-", code_language_callback=_code_language)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return (f"# {title}\n\n{text}" if title else text) + "\n"


def _code_language(el: Tag) -> str | None:
    code = el.find("code")
    return _language(code) if isinstance(code, Tag) else _language(el)
