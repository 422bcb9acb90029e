"""Small files in the real formats of MNIST and CIFAR-10, written independently of the code under test."""

import contextlib
import gzip
import hashlib
import http.server
import pickle
import shutil
import tarfile
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


# ---------------------------------------------------------------------------
# Images, image folders and TFRecords for the tfrecord_tools tests (tests/tfrecord_tools/).
# Real files in real formats, made here under a test's tmp_path; no test needs real data.

import io
import json
import os
import struct
import subprocess
import sys
import zlib

from PIL import Image

import tfrecord_tools
from tfrecord_tools import record_io
from tfrecord_tools.sidecar import SHARD_NAME_PATTERN


def image_bytes(format="JPEG", size=(16, 12), mode="RGB", seed=0, **save_options):
    """Bytes of a noise image: distinct per seed, so hashes differ."""
    rng = np.random.default_rng(seed)
    width, height = size
    if mode in ("RGB", "RGBA", "CMYK"):
        pixels = rng.integers(0, 256, (height, width, len(mode)), dtype=np.uint8)
    elif mode == "I;16":
        pixels = rng.integers(0, 65536, (height, width), dtype=np.uint16)
    else:
        pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)
    image = Image.fromarray(pixels) if mode == "I;16" else Image.fromarray(pixels, mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format=format, **save_options)
    return buffer.getvalue()


def write_file(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_class_folder(root, classes=("cat", "dog", "fox"), per_class=5, size=(16, 12)):
    """``root/<class>/<i>.jpg`` with distinct noise JPEGs; returns root."""
    for class_index, name in enumerate(classes):
        for index in range(per_class):
            write_file(root / name / f"{index:03d}.jpg", image_bytes(size=size, seed=100 * class_index + index))
    return root


def read_records(path):
    """Parsed Examples of one shard, via our own reader (CRCs checked)."""
    data = Path(path).read_bytes()
    return [record_io.parse_example_bytes(record) for _, _, record in record_io.iter_records(data)]


def all_records(out):
    records = []
    for name in sorted(os.listdir(out)):
        if SHARD_NAME_PATTERN.match(name):
            records.extend((name, record) for record in read_records(Path(out) / name))
    return records


def by_filename(out):
    return {record["image/filename"][0].decode(): record for _, record in all_records(out)}


def write_records(src, out, **options):
    """``tfrecord_tools.write_dataset`` in this process (``workers=1``) unless ``workers`` is given."""
    options.setdefault("workers", 1)
    return tfrecord_tools.write_dataset(src, out, **options)


def rejected_lines(out):
    lines = (Path(out) / "rejected.jsonl").read_text().splitlines()
    return {item["path"]: item for item in map(json.loads, lines)}


def png_header_only(width, height):
    """A PNG whose header declares ``width x height``: enough to test the pixel limit."""

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(
        b"IEND", b""
    )


def flip_byte(path, offset):
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0x01
    Path(path).write_bytes(bytes(data))


def jpeg_without_end_marker():
    """A JPEG whose last two bytes (FF D9) are cut off; Pillow decodes it, tf.io.decode_jpeg does not."""
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()[:-2]


def photo_bytes(size=(256, 192), seed=0, quality=90):
    """A smooth, photo-like JPEG (its entropy data is long enough to damage in the middle)."""
    rng = np.random.default_rng(seed)
    width, height = size
    coarse = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def pillow_decodes(data):
    try:
        Image.open(io.BytesIO(data)).load()
        return True
    except Exception:
        return False


def make_split_folder(root, splits=("train", "test"), classes=("cat", "dog"), per_class=3):
    for split_index, split in enumerate(splits):
        for class_index, name in enumerate(classes):
            for index in range(per_class):
                write_file(root / split / name / f"{index}.jpg",
                           image_bytes(seed=1000 * split_index + 100 * class_index + index))
    return root


def rotated_jpeg(size=(16, 12), orientation=6):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    pixels = np.random.default_rng(3).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def run_tool(*arguments, **options):
    return subprocess.run(
        [sys.executable, "-m", "tfrecord_tools", *map(str, arguments)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, **options,
    )


def slow_writes_environment(folder, seconds_per_record):
    """Environment for a ``python -m tfrecord_tools write`` subprocess whose every record takes this long.

    Writes a ``sitecustomize.py`` into ``folder`` and puts ``folder`` on PYTHONPATH:
    Python imports it at the start of every process, the command's and each spawned
    worker's, and it slows down storing each record, so that a test can stop a write
    half-way (SIGKILL, Ctrl-C, SIGTERM, a second write) without a hook in the tool.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import time\n"
        "from tfrecord_tools import write\n"
        "_store = write._stored_bytes\n"
        "def _slowly(*arguments, **keywords):\n"
        f"    time.sleep({float(seconds_per_record)!r})\n"
        "    return _store(*arguments, **keywords)\n"
        "write._stored_bytes = _slowly\n"
    )
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO_ROOT)])}
