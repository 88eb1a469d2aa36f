"""Decontamination against HumanEval and extra eval texts: what must be caught, what must be left alone."""

from __future__ import annotations

import inspect
import json
import json.decoder
import textwrap

import pytest

from codellm_assets.core.data.decontam import (
    build_decontam_index,
    code_fragments,
    decontaminate,
    humaneval_items,
    humaneval_texts,
    load_eval_items,
)
from codellm_assets.core.data.dedup import Doc
from codellm_assets.testing.near_dups import source_paths

ITEMS = dict(humaneval_items())
PROMPT0, SOLUTION0 = ITEMS["HumanEval/0/prompt"], ITEMS["HumanEval/0/solution"]
REAL = inspect.getsource(json.decoder)


@pytest.fixture(scope="module")
def index():
    return build_decontam_index(humaneval_items(), 13)


def test_humaneval_ships_164_prompts_and_solutions():
    assert len(ITEMS) == 328 and len(humaneval_texts()) == 328
    assert PROMPT0.lstrip().startswith("from typing import List")


def reformatted(code: str) -> str:
    """The same code with other indentation, quotes and spacing: token n-grams must still match."""
    return textwrap.indent(code.replace('"""', "'''").replace(", ", " ,  "), "  ")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "prompt pasted into a module",
            REAL + "\n\n" + PROMPT0 + SOLUTION0,
            {
                "HumanEval/0/prompt:ngram",
                "HumanEval/0/prompt:docstring",
                "HumanEval/0/prompt:signature",
                "HumanEval/0/solution:ngram",
            },
        ),
        (
            "reformatted prompt and solution",
            reformatted(PROMPT0 + SOLUTION0),
            {
                "HumanEval/0/prompt:ngram",
                "HumanEval/0/prompt:docstring",
                "HumanEval/0/prompt:signature",
                "HumanEval/0/solution:ngram",
            },
        ),
        (
            "renamed copy: the signature and docstring no longer match",
            reformatted(PROMPT0.replace("has_close_elements", "close_enough") + SOLUTION0),
            {"HumanEval/0/prompt:ngram", "HumanEval/0/solution:ngram"},
        ),
        (
            "solution under another name",
            "def close_pairs(numbers, threshold):\n" + SOLUTION0,
            {"HumanEval/0/solution:ngram"},
        ),
        (
            "docstring under another signature",
            'def f(xs, t):\n    """' + PROMPT0.split('"""')[1] + '"""\n    return None\n',
            {"HumanEval/0/prompt:docstring", "HumanEval/0/prompt:ngram"},
        ),
        (
            "common short lines",
            "def add(x: int, y: int):\n    return x + y\n\ndef f(x):\n    return x\n",
            set(),
        ),
        (
            "nested-loop idiom",
            (
                "def g(l):\n    for i in range(len(l)):\n        for j in range(i + 1, len(l)):\n"
                "            for k in range(j + 1, len(l)):\n                print(l[i], l[j], l[k])\n"
            ),
            set(),
        ),
        (
            "number-word table",
            (
                "NAMES = {'zero': 0, 'one': 1, 'two': 2, 'three': 3, 'four': 4, 'five': 5,\n"
                "         'six': 6, 'seven': 7, 'eight': 8, 'nine': 9}\n"
            ),
            set(),
        ),
        ("real module", REAL, set()),
    ],
)
def test_hits(index, name, text, expected):
    assert set(index.hits(text)) == expected, name


def test_extra_eval_texts_by_position_or_by_id():
    secret = (
        "def rotate_ledger(entries, epoch):\n    '''Rotate the company ledger entries by epoch and re-sign "
        "each block with the rotating treasury key.'''\n"
    )
    index = build_decontam_index(["unrelated text", secret, ("bench/7", secret)], ngram=13)
    assert index.size == 3
    # the header is too short (< 40 characters squashed) to count on its own
    assert index.hits("x = 1\n" + secret) == [
        "bench/7:docstring",
        "bench/7:ngram",
        "eval-1:docstring",
        "eval-1:ngram",
    ]
    assert index.hits(REAL) == []


def test_short_fragments_are_not_used():
    assert code_fragments("def add(x: int, y: int):\n    '''Add two numbers.'''\n") == []
    long_sig = "def has_close_elements(numbers: List[float], threshold: float) -> bool:"
    assert [rule for rule, _, _ in code_fragments(long_sig)] == ["signature"]


def test_decontaminate_keeps_input_order_and_reports_hits(index):
    docs = [Doc("b", REAL), Doc("dirty", "import os\n" + PROMPT0), Doc("a", "x = 1\n")]
    kept, hits = decontaminate(docs, index)
    assert kept == ["b", "a"]
    assert list(hits) == ["dirty"] and "HumanEval/0/prompt:ngram" in hits["dirty"]


def test_bad_ngram_length_is_refused():
    with pytest.raises(ValueError, match="n-gram"):
        build_decontam_index(["x"], 0)


def test_load_eval_items_reads_company_tasks(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(
        json.dumps({"task_id": "t/1", "prompt": "def f():\n", "canonical_solution": "    return 1\n"})
        + "\n\n"
        + json.dumps({"id": 2, "prompt": "def g():\n"})
        + "\n"
    )
    assert load_eval_items(path) == [
        ("t/1/prompt", "def f():\n"),
        ("t/1/solution", "    return 1\n"),
        ("2/prompt", "def g():\n"),
    ]
    path.write_text('{"task_id": "ok", "prompt": "x"}\n{"task_id": "bad"}\n')
    with pytest.raises(ValueError, match=r"tasks.jsonl:2: .*'prompt'"):
        load_eval_items(path)


def test_no_hits_on_real_source_files(index):
    """Real code is not contaminated: 400 site-packages files, none flagged."""
    paths = source_paths()[::50][:400]
    flagged = {}
    for p in paths:
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if index.hits(text):
            flagged[str(p)] = index.hits(text)
    assert flagged == {}
