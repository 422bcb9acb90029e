"""Downloads: a progress bar, a checksum, a temporary name and a rename, an optional mirror.

``LAB_OFFLINE=1`` refuses every download except from ``file:`` URLs and this
machine (127.0.0.1, localhost), as if there were no network; the tests set it.
``LAB_DATA_MIRROR=http://host/path/`` sends every download to that server instead,
under the same relative path (``datasets/mnist.npz``, see
:data:`~common.datasets.sources.REMOTE_FILES`), which is the layout of a folder
made by ``python -m common.datasets fetch``: serve that folder and point the
classroom at it.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from common import console
from common.datasets import sources
from common.datasets.sources import RemoteFile
from common.files import atomic_path

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class DownloadError(Exception):
    """A download failed (offline, timeout, HTTP error, checksum mismatch)."""


def mirror() -> str | None:
    """The classroom mirror from ``LAB_DATA_MIRROR`` (with a trailing slash), or None."""
    base = os.environ.get("LAB_DATA_MIRROR", "").strip()
    if not base:
        return None
    return base if base.endswith("/") else base + "/"


def url_of(remote: RemoteFile) -> str:
    """Where ``remote`` is downloaded from: the mirror when one is set, else the official URL."""
    base = mirror()
    return base + remote.path if base else remote.url


def fetch(remote: RemoteFile, destination: str | os.PathLike,
          timeout: float = sources.DOWNLOAD_TIMEOUT_SECONDS) -> Path:
    """Download ``remote`` (from the mirror, if set) to ``destination`` and check its checksum."""
    return download(url_of(remote), destination, md5=remote.md5, sha256=remote.sha256, timeout=timeout)


def download(url: str, destination: str | os.PathLike, *, md5: str | None = None,
             sha256: str | None = None, timeout: float = sources.DOWNLOAD_TIMEOUT_SECONDS) -> Path:
    """Download ``url`` to ``destination`` with a progress bar, checking its hash.

    The bytes go to a temporary file beside ``destination``, which is renamed only
    after the whole file arrived and its checksum matched. On any failure the
    temporary file is deleted, and so is every folder this call created on the way
    to ``destination`` that is still empty: a later run never trusts a partial
    download, and a failed one leaves no trace.

    Raises
    ------
    DownloadError
        Offline (``LAB_OFFLINE=1`` or no network), timeout, HTTP error, or a
        checksum mismatch.
    """
    destination = Path(destination)
    if os.environ.get("LAB_OFFLINE") == "1" and not _is_local(url):
        raise DownloadError(f"offline (LAB_OFFLINE=1): did not try {url}")
    created = _missing_folders(destination.parent)
    try:
        return _download(url, destination, md5, sha256, timeout)
    except BaseException:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty (an earlier file of the same dataset arrived) or gone
                break
        raise


def _download(url, destination: Path, md5, sha256, timeout) -> Path:
    expected = {name: value for name, value in (("md5", md5), ("sha256", sha256)) if value}
    digests = {name: hashlib.new(name) for name in expected}
    try:
        with atomic_path(destination) as temporary:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (fixed URLs or the mirror)
            except (urllib.error.URLError, OSError, ValueError) as error:
                raise DownloadError(f"could not download {url}: {reason(error)}") from None
            total = int(response.headers.get("Content-Length") or 0) or None
            with response, open(temporary, "wb") as handle, console.progress(
                total=total, unit="B", unit_scale=True, desc=f"download {destination.name}") as progress:
                while True:
                    try:
                        chunk = response.read(1 << 20)
                    except (OSError, TimeoutError) as error:
                        raise DownloadError(f"download of {url} broke off: {reason(error)}") from None
                    if not chunk:
                        break
                    handle.write(chunk)
                    for digest in digests.values():
                        digest.update(chunk)
                    progress.update(len(chunk))
            if total is not None and temporary.stat().st_size != total:
                raise DownloadError(f"download of {url} is incomplete: {temporary.stat().st_size} of {total} bytes")
            for name, value in expected.items():
                if digests[name].hexdigest() != value:
                    raise DownloadError(
                        f"{url} arrived corrupt: {name} {digests[name].hexdigest()} but expected {value}; "
                        f"nothing was kept. {_advice_for_a_corrupt_file(url)}"
                    )
    except OSError as error:  # e.g. the cache folder is read-only or the disk is full
        raise DownloadError(f"could not write {destination}: {reason(error)}") from None
    return destination


def _advice_for_a_corrupt_file(url: str) -> str:
    """What helps when ``url`` gave the wrong bytes: a mirror or a local file gives the same bytes again."""
    base = mirror()
    if base and url.startswith(base):
        return (f"The mirror LAB_DATA_MIRROR={base} serves a damaged {url[len(base):]}, and will again: replace "
                "that file on the mirror with a good copy (python -m common.datasets fetch FOLDER, run on the "
                "served folder, downloads a damaged file again), or unset LAB_DATA_MIRROR to download from the "
                "official site")
    if _is_local(url):
        return f"The file at {url} is damaged: replace it with a good copy"
    return "A download can be damaged on the way: run again to retry"


def reason(error: BaseException) -> str:
    """The human part of an exception (``URLError.reason``, else its text, else its type)."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    cause = getattr(error, "reason", None)
    return str(cause if cause is not None else error) or type(error).__name__


def _is_local(url: str) -> bool:
    parsed = urllib.parse.urlparse(url)
    return parsed.scheme == "file" or (parsed.hostname or "") in LOCAL_HOSTS


def _missing_folders(folder: Path) -> list[Path]:
    """The folders from ``folder`` up that do not exist yet, deepest first."""
    missing = []
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing
