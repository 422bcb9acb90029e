"""Small files in the real formats of MNIST and CIFAR-10, written independently of the code under test."""

import contextlib
import gzip
import hashlib
import http.server
import pickle
import shutil
import subprocess
import sys
import tarfile
import textwrap
import threading
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

IDX_FILE_NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
CIFAR10_BATCH_NAMES = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_idx(path, array, gzipped=True):
    """An IDX file: magic 0x0800 + ndim, big-endian sizes, then the uint8 data."""
    array = np.asarray(array, dtype=np.uint8)
    header = (0x800 + array.ndim).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    payload = header + array.tobytes()
    if gzipped:
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def small_mnist(rng, train=30, test=10):
    return (rng.integers(0, 256, (train, 28, 28), dtype=np.uint8), np.arange(train) % 10,
            rng.integers(0, 256, (test, 28, 28), dtype=np.uint8), np.arange(test) % 10)


def write_idx_folder(folder, arrays, gzipped=True):
    folder.mkdir(parents=True, exist_ok=True)
    names = IDX_FILE_NAMES
    for name, array in zip(names, (arrays[0], arrays[1], arrays[2], arrays[3]), strict=True):
        write_idx(folder / (name if gzipped else name.removesuffix(".gz")), array, gzipped)


def cifar_batch(rng, count, first_label=0):
    """A batch dict exactly as in cifar-10-python.tar.gz: bytes keys, N x 3072 uint8, label list."""
    return {
        b"batch_label": b"a test batch",
        b"labels": [int((first_label + index) % 10) for index in range(count)],
        b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        b"filenames": [f"img_{index}.png".encode() for index in range(count)],
    }


def write_cifar_archive(path, rng, per_batch=20, truncate_to=None):
    """A miniature cifar-10-python.tar.gz in the real layout. Returns the batches written."""
    folder = path.parent / "build" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in CIFAR10_BATCH_NAMES:
        batches[name] = cifar_batch(rng, per_batch, first_label=len(batches))
        with open(folder / name, "wb") as handle:
            pickle.dump(batches[name], handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR10_CLASSES], b"num_vis": 3072}, handle)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    if truncate_to is not None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * truncate_to)])
    return batches


def expected_images(rows):
    return np.asarray(rows).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def write_mnist_npz(path, arrays):
    """``mnist.npz`` as Keras ships it: x_train, y_train, x_test, y_test."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez(handle, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])


def write_fetch_folder(folder, rng):
    """A miniature of what ``python -m common.datasets fetch DIR --weights`` downloads, in its layout.

    Returns ``{relative path: md5}`` of every file written.
    """
    write_mnist_npz(folder / "datasets" / "mnist.npz", small_mnist(rng))
    write_idx_folder(folder / "datasets" / "fashion-mnist", small_mnist(rng))
    (folder / "datasets").mkdir(parents=True, exist_ok=True)
    write_cifar_archive(folder / "datasets" / "cifar-10-python.tar.gz", rng)
    shutil.rmtree(folder / "datasets" / "build")
    (folder / "models").mkdir()
    for name in ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"):
        (folder / "models" / name).write_bytes(b"\x89HDF\r\n\x1a\n" + rng.bytes(3000))  # an HDF5 signature
    return {path.relative_to(folder).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@contextlib.contextmanager
def serve_folder(folder, on_request=None):
    """Serve ``folder`` over HTTP on 127.0.0.1 at a free port, in a thread; yields the base URL.

    ``on_request(path)``, when given, runs in the server thread after the headers of
    a response went out and before its body does (to look at the client's side mid-transfer).
    """
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def end_headers(self):
            super().end_headers()
            if on_request is not None:
                self.wfile.flush()
                on_request(self.path)

        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def start_run_script(tmp_path, name, body, **popen):
    """Start a script that makes a common.run.Run into tmp_path/out, then runs ``body``; stdout and stderr are pipes."""
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(f"""
        import argparse, sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from common import cli
        from common.interrupts import interruptible
        from common.run import Run
        cli.install_error_handler()
        run = Run(argparse.Namespace(out={str(tmp_path / 'out')!r}, fresh=False), {name!r}, chief=True,
                  code="one version of the script")
    """) + textwrap.dedent(body))
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


# --- Student solutions of the assignment, written as a student might -------------------------


def student_solution(replacements: dict[int, str]) -> str:
    """The reference ``assignment_wildlife.py`` with the fenced code of each TODO ``n`` replaced by ``replacements[n]``.

    The code is written without indentation; it is indented like the block it replaces.
    """
    import textwrap as _textwrap

    from course.handout import fences

    text = (REPO_ROOT / "assignment_wildlife.py").read_text(encoding="utf-8")
    lines = text.splitlines()
    output, position = [], 0
    for begin, end, title in fences(text):
        number = int(title.split()[1].rstrip(":")) if title else None
        output += lines[position:begin + 1]
        if number in replacements:
            indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
            output += _textwrap.indent(_textwrap.dedent(replacements[number]).strip("\n"), indent).splitlines()
        else:
            output += lines[begin + 1:end]
        position = end
    output += lines[position:]
    return "\n".join(output) + "\n"
