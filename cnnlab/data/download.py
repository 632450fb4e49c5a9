"""Download data set files from public mirrors into the user's cache, verified by SHA-256.

Each file is streamed (urllib, with a timeout) into a temporary file in the cache folder while
its *decompressed* content is hashed; only a file whose hash matches the published value is
renamed into place, so a failed or corrupted download leaves nothing behind. Mirrors are tried
in order; when all fail the error names each one with its reason and the ways to supply the
files by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from cnnlab.engine.errors import CnnlabError
from cnnlab.engine.fileio import atomic_write
from cnnlab.engine.progress import ProgressBar

# SHA-256 of each file's decompressed content, as published with the data sets.
SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
        ),
        "train-labels-idx1-ubyte": (
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
        ),
        "t10k-images-idx3-ubyte": (
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
        ),
        "t10k-labels-idx1-ubyte": (
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
        ),
        "train-labels-idx1-ubyte": (
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
        ),
        "t10k-images-idx3-ubyte": (
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
        ),
        "t10k-labels-idx1-ubyte": (
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
        ),
    },
}

# Public mirrors, tried in order; each serves ``<file>.gz`` under its base URL.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}

DEFAULT_TIMEOUT = 30.0  # seconds without data before a mirror is given up
MAX_DOWNLOAD_BYTES = 2**30  # refuse a compressed file larger than this
MAX_CONTENT_BYTES = 2**31  # refuse decompressed content larger than this
_CHUNK = 1 << 16


class _MirrorError(Exception):
    """One mirror could not deliver one file; ``str()`` is the short reason."""


def cache_dir(name: str | None = None) -> Path:
    """The cnnlab cache folder (``$XDG_CACHE_HOME/cnnlab`` or ``~/.cache/cnnlab``), or a data
    set's subfolder in it when ``name`` is given."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative (or empty) value.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    root = base / "cnnlab"
    return root / name if name else root


def local_file(folder: Path, filename: str) -> Path | None:
    """Return ``folder/filename.gz`` or ``folder/filename`` (in that order) if it exists."""
    for candidate in (folder / f"{filename}.gz", folder / filename):
        if candidate.is_file():
            return candidate
    return None


def default_mirrors(name: str) -> tuple[str, ...]:
    """The mirrors for ``name``: ``$CNNLAB_MIRRORS`` (space- or comma-separated base URLs) if
    set, else the built-in list."""
    override = os.environ.get("CNNLAB_MIRRORS", "").replace(",", " ").split()
    if override:
        return tuple(override)
    if name not in MIRRORS:
        raise CnnlabError(
            f"no download mirrors known for {name!r}; known: {', '.join(MIRRORS)}, "
            "or set $CNNLAB_MIRRORS"
        )
    return MIRRORS[name]


def fetch(
    name: str,
    files: Mapping[str, str] | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    dest: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Download the files of data set ``name`` that ``dest`` lacks; return ``dest``.

    ``files`` maps each uncompressed file name to the SHA-256 of its content (default: all of
    ``SHA256[name]``); each is fetched as ``<mirror><file>.gz`` and stored as ``dest/<file>.gz``.
    ``dest`` defaults to ``cache_dir(name)``, ``mirrors`` to :func:`default_mirrors`. Files
    already in ``dest`` (compressed or not) are kept as they are.
    """
    if files is None:
        if name not in SHA256:
            raise CnnlabError(f"no download known for {name!r}; known: {', '.join(SHA256)}")
        files = SHA256[name]
    mirrors = tuple(mirrors) if mirrors is not None else default_mirrors(name)
    folder = Path(dest) if dest is not None else cache_dir(name)
    for filename, sha256 in files.items():
        if local_file(folder, filename) is None:
            _fetch_file(name, filename, sha256.lower(), mirrors, timeout, folder, progress)
    return folder


def fetch_archive(
    name: str,
    filename: str,
    sha256: str,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    dest: str | os.PathLike | None = None,
    progress: bool = True,
    hint: str | None = None,
) -> Path:
    """Download the archive ``filename`` of data set ``name`` (verified by the SHA-256 of its
    bytes, as published for archives) into ``dest`` unless it is there; return its path.
    ``hint`` replaces the failure message's advice on supplying the files by hand."""
    mirrors = tuple(mirrors) if mirrors is not None else default_mirrors(name)
    folder = Path(dest) if dest is not None else cache_dir(name)
    target = folder / filename
    if not target.is_file():
        _fetch_file(name, filename, sha256.lower(), mirrors, timeout, folder, progress, _Hash, hint)
    return target


def _fetch_file(
    name: str,
    filename: str,
    sha256: str,
    mirrors: Sequence[str],
    timeout: float,
    folder: Path,
    progress: bool,
    content: type[_GunzipHash | _Hash] | None = None,
    hint: str | None = None,
) -> None:
    """Try each mirror in turn for one file; raise one CnnlabError if all fail.

    By default the file is fetched as ``<filename>.gz`` and its decompressed content hashed;
    with ``content=_Hash`` it is fetched as named and its bytes hashed.
    """
    remote = f"{filename}.gz" if content is None else filename
    failures = []
    for mirror in mirrors:
        base = mirror if mirror.endswith("/") else mirror + "/"
        try:
            _download(
                base + remote, folder / remote, sha256, timeout, progress, content or _GunzipHash
            )
            return
        except _MirrorError as failure:
            failures.append(f"{base} ({failure})")
    tried = "; tried " + ", ".join(failures) if failures else "; no mirrors to try"
    hint = hint or (
        f"supply the files yourself: pass --data-dir DIR, set $CNNLAB_DATA=DIR, or copy them "
        f"into {folder}"
    )
    raise CnnlabError(f"{name}: could not download {remote}{tried}; {hint}")


def _download(
    url: str,
    target: Path,
    sha256: str,
    timeout: float,
    progress: bool,
    hasher: type[_GunzipHash | _Hash],
) -> None:
    """Stream ``url`` into ``target`` atomically if its content (gunzipped for
    ``_GunzipHash``) hashes to ``sha256``.

    Every way a mirror can fail is raised as ``_MirrorError`` with a short reason; the
    temporary file is removed by ``atomic_write`` on any failure.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            if total is not None and total > MAX_DOWNLOAD_BYTES:
                raise _MirrorError(f"file of {total} bytes is larger than expected")
            content = hasher()
            with (
                atomic_write(target, "wb") as out,
                ProgressBar(total, desc=target.name, unit="B", enabled=progress) as bar,
            ):
                received = 0
                while chunk := response.read(_CHUNK):
                    received += len(chunk)
                    if received > MAX_DOWNLOAD_BYTES:
                        raise _MirrorError("file is larger than expected")
                    content.feed(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
                if total is not None and received < total:
                    raise _MirrorError(f"connection closed after {received} of {total} bytes")
                digest = content.finish()
                if digest != sha256:
                    raise _MirrorError(f"checksum mismatch: SHA-256 {digest[:12]}…")
    except CnnlabError:
        raise  # e.g. the cache folder is not writable: another mirror cannot help
    except urllib.error.HTTPError as err:
        raise _MirrorError(f"HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise _MirrorError(_describe(err.reason, timeout)) from None
    except (OSError, http.client.HTTPException) as err:
        raise _MirrorError(_describe(err, timeout)) from None
    except ValueError as err:  # a malformed mirror URL
        raise _MirrorError(str(err)) from None


def _describe(reason: object, timeout: float) -> str:
    """A short reason for a network failure."""
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


class _Hash:
    """SHA-256 of a file fed in pieces, with the same interface as :class:`_GunzipHash`."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        self._sha.update(data)

    def finish(self) -> str:
        return self._sha.hexdigest()


class _GunzipHash:
    """SHA-256 of the content of a gzip stream fed in pieces, with bounded memory."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._pending = False  # the inflater may hold more output for the input so far
        self._size = 0

    def feed(self, data: bytes) -> None:
        """Decompress and hash ``data``; raise ``_MirrorError`` if it is not valid gzip."""
        try:
            while data or self._pending:
                if self._inflater.eof:  # a further gzip member follows
                    self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                out = self._inflater.decompress(data, _CHUNK)
                self._pending = len(out) == _CHUNK and not self._inflater.eof
                self._size += len(out)
                if self._size > MAX_CONTENT_BYTES:
                    raise _MirrorError("decompressed content is larger than expected")
                self._sha.update(out)
                eof = self._inflater.eof
                data = self._inflater.unused_data if eof else self._inflater.unconsumed_tail
        except zlib.error as err:
            raise _MirrorError(f"not valid gzip data ({err})") from None

    def finish(self) -> str:
        """Return the hex digest; raise ``_MirrorError`` if the stream stopped mid-way."""
        if not self._inflater.eof:
            raise _MirrorError("gzip data ends early")
        return self._sha.hexdigest()
