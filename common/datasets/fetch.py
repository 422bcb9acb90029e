"""Every download at once, into one folder, for a classroom or a machine that will be offline.

``python -m common.datasets fetch DIR [--weights]`` writes, checked against the
published checksums::

    DIR/datasets/mnist.npz
    DIR/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    DIR/datasets/cifar-10-python.tar.gz
    DIR/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5          (--weights)
    DIR/models/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5      (--weights)

That is the layout of a Keras home (``~/.keras``), so the folder can be used as
``--data-dir DIR`` or ``LAB_DATA_DIR=DIR``, copied into ``~/.keras`` (or used as
``KERAS_HOME=DIR``; then keras.applications finds the weights too), or served
(``python -m http.server -d DIR``) as a ``LAB_DATA_MIRROR``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from common.datasets import downloads, sources
from common.errors import UserError


def fetch_all(folder: str | os.PathLike, weights: bool = False) -> list[dict]:
    """Download (or check, when already there) every dataset file, and the weights with ``weights``.

    Returns one ``{"path", "bytes", "status"}`` per file, ``status`` being
    ``"downloaded"`` or ``"already there, checksum matches"``.

    Raises
    ------
    UserError
        Some file could not be downloaded or checked; the message lists each one
        and why. The files that did arrive are kept (each one is complete and checked).
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file: fetch needs a folder (new or existing) to download into")
    keys = sources.DATASET_KEYS + (sources.WEIGHT_KEYS if weights else [])
    results, failures = [], []
    for key in keys:
        remote = sources.REMOTE_FILES[key]
        target = folder / remote.path
        if target.is_file() and _matches(target, remote):
            status = "already there, checksum matches"
        else:
            try:
                downloads.fetch(remote, target)
            except downloads.DownloadError as error:
                failures.append(f"{remote.path}: {error}")
                continue
            status = "downloaded"
        results.append({"path": target, "bytes": target.stat().st_size, "status": status})
        print(f"{status:>32}  {remote.path}", flush=True)
    if failures:
        kept = "The others are complete and checked; run" if results else "Run"
        if os.environ.get("LAB_OFFLINE") == "1":
            advice = "LAB_OFFLINE=1 is set, which refuses downloads: unset it, then run the same command again."
        elif os.environ.get("LAB_DATA_MIRROR"):
            advice = (f"Every file came from the mirror LAB_DATA_MIRROR={os.environ['LAB_DATA_MIRROR']}: check that "
                      "it serves good copies under the same names (or unset it), then run the same command again.")
        else:
            advice = f"{kept} the same command again to retry."
        raise UserError(f"fetch could not get {len(failures)} of {len(keys)} files into {folder}:\n  "
                        + "\n  ".join(failures) + f"\n{advice}")
    return results


def _matches(path: Path, remote: sources.RemoteFile) -> bool:
    digest = hashlib.md5() if remote.md5 else hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == (remote.md5 or remote.sha256)
