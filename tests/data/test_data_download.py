"""Download tests against a local HTTP server that serves files the tests write."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from local_server import Routes, dead_url, serving

import cnnlab.data
from cnnlab.data import datasets, download
from cnnlab.data.idx import read_idx, write_idx
from cnnlab.engine.errors import CnnlabError

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
LABELS = "t10k-labels-idx1-ubyte"


@pytest.fixture
def server() -> Iterator[Routes]:
    with serving() as httpd:
        yield httpd


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the tests out of the real home, cache and system folders."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.delenv("CNNLAB_MIRRORS", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", (tmp_path / "system",))
    return tmp_path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_in(folder: Path) -> list[str]:
    """Every file left in ``folder`` (temporary ones included), or [] if it does not exist."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def serve_mini(server: Routes, prefix: str, content: bytes = b"mini content") -> dict[str, str]:
    """Serve one tiny made-up file under ``prefix``; return its name -> checksum entry."""
    server.routes[f"/{prefix}/mini.gz"] = gzip.compress(content)
    return {"mini": sha256(content)}


def idx_gz(array: np.ndarray, folder: Path, name: str) -> tuple[bytes, str]:
    """``array`` as a gzip IDX file's bytes, and the SHA-256 of its decompressed content."""
    write_idx(folder / f"{name}.gz", array)
    packed = (folder / f"{name}.gz").read_bytes()
    return packed, sha256(gzip.decompress(packed))


def test_fetch_verifies_and_stores_an_idx_file(server: Routes, isolated: Path) -> None:
    labels = np.arange(10000, dtype=np.uint8) * 7 % 10
    server.routes[f"/good/{LABELS}.gz"], digest = idx_gz(labels, isolated / "made", LABELS)
    cache = isolated / "cache" / "cnnlab" / "mnist"
    wanted = {LABELS: digest}
    folder = cnnlab.data.fetch("mnist", wanted, mirrors=[server.url + "good/"], progress=False)
    assert folder == cache
    assert files_in(cache) == [f"{LABELS}.gz"]
    np.testing.assert_array_equal(read_idx(cache / f"{LABELS}.gz"), labels)
    # Already in the cache: no second request.
    cnnlab.data.fetch("mnist", wanted, mirrors=[server.url + "good/"], progress=False)
    assert server.requests == [f"/good/{LABELS}.gz"]


def test_404_on_first_mirror_then_success_on_second(server: Routes, isolated: Path) -> None:
    files = serve_mini(server, "second")
    mirrors = [server.url + "first/", server.url + "second"]  # a missing "/" is added
    folder = cnnlab.data.fetch("mini", files, mirrors=mirrors, dest=isolated / "d", progress=False)
    assert server.requests == ["/first/mini.gz", "/second/mini.gz"]
    assert gzip.decompress((folder / "mini.gz").read_bytes()) == b"mini content"
    assert files_in(folder) == ["mini.gz"]


def test_corrupted_bytes_are_refused_and_leave_nothing(server: Routes, isolated: Path) -> None:
    packed = bytearray(gzip.compress(bytes(range(256)) * 64))
    packed[len(packed) // 2] ^= 0xFF
    server.routes["/bad/mini.gz"] = bytes(packed)
    dest = isolated / "d"
    with pytest.raises(CnnlabError) as info:
        download.fetch(
            "mini",
            {"mini": sha256(bytes(range(256)) * 64)},
            mirrors=[server.url + "bad/"],
            dest=dest,
            progress=False,
        )
    message = str(info.value)
    assert f"{server.url}bad/ (" in message
    assert "gzip" in message or "checksum mismatch" in message
    assert files_in(dest) == []


def test_wrong_content_fails_the_checksum_then_next_mirror_wins(
    server: Routes, isolated: Path
) -> None:
    files = serve_mini(server, "good")
    serve_mini(server, "evil", b"other content")
    dest = isolated / "d"
    with pytest.raises(CnnlabError, match=r"evil/ \(checksum mismatch"):
        download.fetch("mini", files, mirrors=[server.url + "evil/"], dest=dest, progress=False)
    assert files_in(dest) == []
    mirrors = [server.url + "evil/", server.url + "good/"]
    download.fetch("mini", files, mirrors=mirrors, dest=dest, progress=False)
    assert files_in(dest) == ["mini.gz"]


def test_stalled_server_times_out_cleanly(server: Routes, isolated: Path) -> None:
    server.routes["/slow/mini.gz"] = Routes.STALL
    dest = isolated / "d"
    with pytest.raises(CnnlabError) as info:
        download.fetch(
            "mini",
            {"mini": "0" * 64},
            mirrors=[server.url + "slow/"],
            timeout=0.5,
            dest=dest,
            progress=False,
        )
    assert f"{server.url}slow/ (timed out after 0.5 s)" in str(info.value)
    assert files_in(dest) == []


def test_connection_closed_early(server: Routes, isolated: Path) -> None:
    server.routes["/short/mini.gz"] = Routes.SHORT
    dest = isolated / "d"
    with pytest.raises(CnnlabError, match=r"connection closed after 4 of 100000 bytes"):
        download.fetch(
            "mini", {"mini": "0" * 64}, mirrors=[server.url + "short/"], dest=dest, progress=False
        )
    assert files_in(dest) == []


def test_offline_error_names_mirrors_and_the_three_ways(isolated: Path) -> None:
    mirrors = [dead_url() + "a/", dead_url() + "b/"]
    with pytest.raises(CnnlabError) as info:
        cnnlab.data.load("mnist", "test", progress=False, mirrors=mirrors, timeout=2)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("mnist: could not download t10k-images-idx3-ubyte.gz; tried ")
    for mirror in mirrors:
        assert f"{mirror} (Connection refused)" in message
    cache = isolated / "cache" / "cnnlab" / "mnist"
    assert "--data-dir DIR" in message
    assert "$CNNLAB_DATA=DIR" in message
    assert f"copy them into {cache}" in message
    assert files_in(cache) == []


def test_mirrors_from_environment(
    server: Routes, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = serve_mini(server, "env")
    monkeypatch.setenv("CNNLAB_MIRRORS", f"{server.url}nothing/, {server.url}env/")
    assert download.default_mirrors("mnist") == (f"{server.url}nothing/", f"{server.url}env/")
    download.fetch("mini", files, dest=isolated / "d", progress=False)
    assert server.requests == ["/nothing/mini.gz", "/env/mini.gz"]
    monkeypatch.delenv("CNNLAB_MIRRORS")
    assert download.default_mirrors("mnist") == download.MIRRORS["mnist"]
    with pytest.raises(CnnlabError, match="no download mirrors known for 'mini'"):
        download.default_mirrors("mini")


def test_multi_member_gzip_is_hashed_whole(server: Routes, isolated: Path) -> None:
    first, second = bytes(range(256)) * 1000, b"tail" * 50_000
    server.routes["/m/mini.gz"] = gzip.compress(first) + gzip.compress(second)
    files = {"mini": sha256(first + second)}
    download.fetch("mini", files, mirrors=[server.url + "m/"], dest=isolated / "d", progress=False)
    assert files_in(isolated / "d") == ["mini.gz"]


def test_not_gzip_at_all(server: Routes, isolated: Path) -> None:
    server.routes["/html/mini.gz"] = b"<html>moved</html>"
    with pytest.raises(CnnlabError, match=r"html/ \(not valid gzip data"):
        download.fetch(
            "mini",
            {"mini": "0" * 64},
            mirrors=[server.url + "html/"],
            dest=isolated / "d",
            progress=False,
        )


def test_progress_bar_goes_to_stderr(
    server: Routes, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = serve_mini(server, "p")
    download.fetch("mini", files, mirrors=[server.url + "p/"], dest=isolated / "d")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("mini.gz 100%|")


@pytest.mark.slow
def test_load_downloads_mnist_end_to_end(
    server: Routes, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bundled sample's training split, served as if it were MNIST's.
    sample = cnnlab.data.load("mnist-sample", "train")
    checksums = {}
    for array, name in zip(sample, datasets.SPLIT_FILES["train"], strict=True):
        server.routes[f"/mnist/{name}.gz"], checksums[name] = idx_gz(array, isolated / "m", name)
    monkeypatch.setitem(download.SHA256, "mnist", checksums)
    images, labels = cnnlab.data.load("mnist", progress=False, mirrors=[server.url + "mnist/"])
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, sample[1])
    cache = isolated / "cache" / "cnnlab" / "mnist"
    assert files_in(cache) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    # Now it comes from the cache, with the network gone.
    _, again = cnnlab.data.load("mnist", progress=False, mirrors=[dead_url()])
    np.testing.assert_array_equal(labels, again)
    assert len(server.requests) == 2


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_pinned_checksums_are_those_of_the_real_files(name: str) -> None:
    for filename, digest in download.SHA256[name].items():
        real = SHARED / "data" / name / f"{filename}.gz"
        assert sha256(gzip.decompress(real.read_bytes())) == digest, filename


def test_cifar10_archive_downloads_verified_by_its_sha256(
    server: Routes, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifar_files import archive, write_batches

    from cnnlab.data import cifar

    monkeypatch.setattr(cifar, "SYSTEM_DIRS", (isolated / "system",))
    body = archive(write_batches(isolated / "scratch", per_file=3))
    server.routes[f"/bad/{cifar.ARCHIVE}"] = body[:-1] + b"!"
    server.routes[f"/good/{cifar.ARCHIVE}"] = body
    monkeypatch.setattr(cifar, "ARCHIVE_SHA256", sha256(body))
    data = cifar.load(mirrors=[server.url + "bad/", server.url + "good/"], progress=False)
    assert data.x_test.shape == (3, 3, 32, 32)
    cache = isolated / "cache" / "cnnlab" / "cifar10"
    assert files_in(cache) == [cifar.FOLDER, cifar.ARCHIVE]
    # The second time it comes from the cache.
    cifar.load(mirrors=[dead_url()], progress=False)
    assert server.requests == [f"/bad/{cifar.ARCHIVE}", f"/good/{cifar.ARCHIVE}"]
