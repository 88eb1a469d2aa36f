"""Public code: the Python sources of installed open-source packages, what the tiny base is pre-trained on
(``model.tiny_pretrain_source: public``) and what its tokenizer is trained on.

A company's real base (StarCoder2, Qwen2.5-Coder...) was pre-trained on public code and ships a fixed
tokenizer; it has never seen the company's repositories. The tiny base plays that part only if it, too,
learns from public code alone: the packages listed here are read from the installed distributions (never a
configured repo, never the training dataset), so whatever the adapter then knows about the company's
internal library it learned from fine-tuning.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from codellm_assets.core.data.samples import SampleError, package_sources
from codellm_assets.core.data.tokenization import train_bpe_tokenizer

# The default list (settings.ModelSettings.tiny_pretrain_packages) holds pure-Python packages every install of
# this project has (dependencies of dagster, mlflow and transformers): ~3.4 MB of varied Python (CLIs, HTTP,
# templating, WSGI, packaging metadata), ~0.9 M tokens of the tiny tokenizer.


@dataclass(frozen=True)
class PublicCorpus:
    """The texts (one per source file, in path order) and what they are: packages with versions, a digest."""
    texts: tuple[str, ...]
    packages: tuple[str, ...]
    versions: tuple[str, ...]
    sha256: str

    @property
    def description(self) -> str:
        return ", ".join(f"{p} {v}" for p, v in zip(self.packages, self.versions, strict=True))

    @property
    def chars(self) -> int:
        return sum(map(len, self.texts))


def _version(package: str) -> str:
    for dist in (package, {"attr": "attrs"}.get(package, package)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


@functools.lru_cache(maxsize=4)
def public_corpus(packages: tuple[str, ...]) -> PublicCorpus:
    """The ``.py`` sources of the installed ``packages`` (a clear error naming one that is missing)."""
    if not packages:
        raise SampleError("no public packages to pre-train on: list some in model.tiny_pretrain_packages "
                          "(e.g. [click, typer, requests])")
    texts: list[str] = []
    digest = hashlib.sha256()
    for package in packages:
        try:
            files = package_sources(package)
        except SampleError as e:
            raise SampleError(f"{e} (listed in model.tiny_pretrain_packages)") from None
        for path, raw in files.items():
            if not path.endswith(".py"):
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue   # not UTF-8: not worth teaching a tokenizer
            if text.strip():
                texts.append(text)
                digest.update(f"{package}/{path}\0".encode())
                digest.update(raw)
    return PublicCorpus(tuple(texts), tuple(packages), tuple(_version(p) for p in packages),
                        digest.hexdigest()[:16])


@functools.lru_cache(maxsize=4)
def public_tokenizer(packages: tuple[str, ...], vocab_size: int):
    """The tiny base's tokenizer when it is pre-trained on public code: a byte-level BPE of ``vocab_size``
    trained on that public corpus, never on the company's files.

    Why not on the training dataset (as before): a company's real base ships a fixed tokenizer learned from
    public code, so its internal names (``stamp_quorble``) arrive as several sub-word pieces the base has seen
    in other words; a tokenizer trained on the company corpus would give them whole tokens whose embeddings
    the public-only base never trained - and LoRA does not train embeddings, so no adapter could emit them.
    BPE training is deterministic: the same packages (versions) and size give the same files, hence the same
    base cache key. ~5 s on 2 cores for ~3.4 MB; cached per process.
    """
    import tempfile

    corpus = public_corpus(tuple(packages))
    with tempfile.TemporaryDirectory(prefix="codellm-public-tok-") as tmp:
        tok = train_bpe_tokenizer(corpus.texts, vocab_size, Path(tmp))
    return tok
