"""Small files in the real formats of MNIST and CIFAR-10, written independently of the code under test."""

import contextlib
import gzip
import hashlib
import http.server
import pickle
import re
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


def unboxed(output: str) -> str:
    """Printed output with banner boxes taken apart and all whitespace as single spaces,
    so a test can look for a sentence whatever column the banner wrapped it at."""
    lines = [line.strip().strip("|").strip() for line in output.splitlines()]
    return " ".join(" ".join(line for line in lines if not re.fullmatch(r"\+-*\+", line)).split())


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


# ---------------------------------------------------------------------------
# Images, image folders and TFRecords for the tfrecord_tools tests (tests/tfrecord_tools/).
# Real files in real formats, made here under a test's tmp_path; no test needs real data.

import io
import json
import os
import struct
import time
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


# --- Arithmetic-coded JPEGs (SOF9), which Pillow cannot write: a small encoder after ITU-T T.81 Annex D and
# F.1.4, step for step as libjpeg's jcarith.c (default conditioning: L=0, U=1, Kx=5; one table for all).

# T.81 Table D.2: (Qe, next state after the less probable symbol, after the more probable one, switch the
# more probable symbol); state 113 is the fixed 0.5 estimate that libjpeg uses for the sign of AC values.
_QE_TABLE = [
    (0x5a1d, 1, 1, 1), (0x2586, 14, 2, 0), (0x1114, 16, 3, 0), (0x080b, 18, 4, 0), (0x03d8, 20, 5, 0),
    (0x01da, 23, 6, 0), (0x00e5, 25, 7, 0), (0x006f, 28, 8, 0), (0x0036, 30, 9, 0), (0x001a, 33, 10, 0),
    (0x000d, 35, 11, 0), (0x0006, 9, 12, 0), (0x0003, 10, 13, 0), (0x0001, 12, 13, 0), (0x5a7f, 15, 15, 1),
    (0x3f25, 36, 16, 0), (0x2cf2, 38, 17, 0), (0x207c, 39, 18, 0), (0x17b9, 40, 19, 0), (0x1182, 42, 20, 0),
    (0x0cef, 43, 21, 0), (0x09a1, 45, 22, 0), (0x072f, 46, 23, 0), (0x055c, 48, 24, 0), (0x0406, 49, 25, 0),
    (0x0303, 51, 26, 0), (0x0240, 52, 27, 0), (0x01b1, 54, 28, 0), (0x0144, 56, 29, 0), (0x00f5, 57, 30, 0),
    (0x00b7, 59, 31, 0), (0x008a, 60, 32, 0), (0x0068, 62, 33, 0), (0x004e, 63, 34, 0), (0x003b, 32, 35, 0),
    (0x002c, 33, 9, 0), (0x5ae1, 37, 37, 1), (0x484c, 64, 38, 0), (0x3a0d, 65, 39, 0), (0x2ef1, 67, 40, 0),
    (0x261f, 68, 41, 0), (0x1f33, 69, 42, 0), (0x19a8, 70, 43, 0), (0x1518, 72, 44, 0), (0x1177, 73, 45, 0),
    (0x0e74, 74, 46, 0), (0x0bfb, 75, 47, 0), (0x09f8, 77, 48, 0), (0x0861, 78, 49, 0), (0x0706, 79, 50, 0),
    (0x05cd, 48, 51, 0), (0x04de, 50, 52, 0), (0x040f, 50, 53, 0), (0x0363, 51, 54, 0), (0x02d4, 52, 55, 0),
    (0x025c, 53, 56, 0), (0x01f8, 54, 57, 0), (0x01a4, 55, 58, 0), (0x0160, 56, 59, 0), (0x0125, 57, 60, 0),
    (0x00f6, 58, 61, 0), (0x00cb, 59, 62, 0), (0x00ab, 61, 63, 0), (0x008f, 61, 32, 0), (0x5b12, 65, 65, 1),
    (0x4d04, 80, 66, 0), (0x412c, 81, 67, 0), (0x37d8, 82, 68, 0), (0x2fe8, 83, 69, 0), (0x293c, 84, 70, 0),
    (0x2379, 86, 71, 0), (0x1edf, 87, 72, 0), (0x1aa9, 87, 73, 0), (0x174e, 72, 74, 0), (0x1424, 72, 75, 0),
    (0x119c, 74, 76, 0), (0x0f6b, 74, 77, 0), (0x0d51, 75, 78, 0), (0x0bb6, 77, 79, 0), (0x0a40, 77, 48, 0),
    (0x5832, 80, 81, 1), (0x4d1c, 88, 82, 0), (0x438e, 89, 83, 0), (0x3bdd, 90, 84, 0), (0x34ee, 91, 85, 0),
    (0x2eae, 92, 86, 0), (0x299a, 93, 87, 0), (0x2516, 86, 71, 0), (0x5570, 88, 89, 1), (0x4ca9, 95, 90, 0),
    (0x44d9, 96, 91, 0), (0x3e22, 97, 92, 0), (0x3824, 99, 93, 0), (0x32b4, 99, 94, 0), (0x2e17, 93, 86, 0),
    (0x56a8, 95, 96, 1), (0x4f46, 101, 97, 0), (0x47e5, 102, 98, 0), (0x41cf, 103, 99, 0), (0x3c3d, 104, 100, 0),
    (0x375e, 99, 93, 0), (0x5231, 105, 102, 0), (0x4c0f, 106, 103, 0), (0x4639, 107, 104, 0), (0x415e, 103, 99, 0),
    (0x5627, 105, 106, 1), (0x50e7, 108, 107, 0), (0x4b85, 109, 103, 0), (0x5597, 110, 109, 0), (0x504f, 111, 107, 0),
    (0x5a10, 110, 111, 1), (0x5522, 112, 109, 0), (0x59eb, 112, 111, 1),
    (0x5a1d, 113, 113, 0),  # 113: the fixed 0.5 estimate of the AC sign (T.851)
]

_ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7,
          14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46,
          53, 60, 61, 54, 47, 55, 62, 63]




class _ArithmeticCoder:
    """The QM coder's registers (T.81 D.1: C, A, the stacked 0xFF bytes, CT) and its output."""

    def __init__(self):
        self.low, self.interval, self.stacked_ff, self.zeros, self.bits, self.pending = 0, 0x10000, 0, 0, 11, -1
        self.out = bytearray()

    def _zeros_out(self):
        self.out += b"\x00" * self.zeros
        self.zeros = 0

    def _carry_out(self):
        """A carry reached the pending byte: it goes out plus one, the stacked FF bytes become zeros."""
        if self.pending >= 0:
            self._zeros_out()
            self.out.append(self.pending + 1)
            if self.pending + 1 == 0xFF:
                self.out.append(0)
        self.zeros += self.stacked_ff
        self.stacked_ff = 0

    def _no_carry_out(self):
        """No carry can reach the pending byte and the stacked FF bytes any more: they go out."""
        if self.pending == 0:
            self.zeros += 1
        elif self.pending > 0:
            self._zeros_out()
            self.out.append(self.pending)
        if self.stacked_ff:
            self._zeros_out()
            self.out += b"\xff\x00" * self.stacked_ff
            self.stacked_ff = 0

    def encode(self, statistics, index, bit):
        state = statistics[index]
        qe, after_lps, after_mps, switch = _QE_TABLE[state & 0x7F]
        self.interval -= qe
        if bit != state >> 7:
            if self.interval >= qe:
                self.low += self.interval
                self.interval = qe
            statistics[index] = ((state & 0x80) ^ (0x80 * switch)) | after_lps
        else:
            if self.interval >= 0x8000:
                return
            if self.interval < qe:
                self.low += self.interval
                self.interval = qe
            statistics[index] = (state & 0x80) | after_mps
        while self.interval < 0x8000:
            self.interval <<= 1
            self.low <<= 1
            self.bits -= 1
            if self.bits == 0:
                byte = self.low >> 19
                if byte > 0xFF:
                    self._carry_out()
                    self.pending = byte & 0xFF
                elif byte == 0xFF:
                    self.stacked_ff += 1
                else:
                    self._no_carry_out()
                    self.pending = byte
                self.low &= 0x7FFFF
                self.bits += 8

    def finish(self):
        top = (self.interval - 1 + self.low) & 0xFFFF0000
        self.low = (top + 0x8000 if top < self.low else top) << self.bits
        if self.low & 0xF8000000:
            self._carry_out()
        else:
            self._no_carry_out()
        if self.low & 0x7FFF800:
            self._zeros_out()
            for shift, rest in ((19, 0x7FFF800), (11, 0x7F800)):
                if self.low & rest:
                    byte = (self.low >> shift) & 0xFF
                    self.out += bytes([byte, 0]) if byte == 0xFF else bytes([byte])
        return bytes(self.out)


def _arithmetic_scan(blocks_by_unit, components):
    """The entropy-coded data of one interleaved scan; ``blocks_by_unit`` yields one zigzag block per component."""
    coder = _ArithmeticCoder()
    dc_stats, ac_stats, sign_stats = bytearray(64), bytearray(256), bytearray([113])
    last_dc, dc_context = [0] * components, [0] * components
    for unit in blocks_by_unit:
        for component, block in enumerate(unit):
            index = dc_context[component]
            value = block[0] - last_dc[component]
            if value == 0:
                coder.encode(dc_stats, index, 0)
                dc_context[component] = 0
            else:
                last_dc[component] = block[0]
                coder.encode(dc_stats, index, 1)
                coder.encode(dc_stats, index + 1, int(value < 0))
                index += 3 if value < 0 else 2
                dc_context[component] = 8 if value < 0 else 4
                value = abs(value) - 1
                top = 0
                if value:
                    coder.encode(dc_stats, index, 1)
                    top, rest, index = 1, value >> 1, 20
                    while rest:
                        coder.encode(dc_stats, index, 1)
                        top, rest, index = top << 1, rest >> 1, index + 1
                coder.encode(dc_stats, index, 0)
                if top > 1:
                    dc_context[component] += 8  # a large difference
                index += 14
                top >>= 1
                while top:
                    coder.encode(dc_stats, index, int(bool(top & value)))
                    top >>= 1
            end = max((position for position in range(1, 64) if block[position]), default=0)
            position = 1
            while position <= end:
                index = 3 * (position - 1)
                coder.encode(ac_stats, index, 0)  # not the end of the block yet
                while block[position] == 0:
                    coder.encode(ac_stats, index + 1, 0)
                    index += 3
                    position += 1
                coder.encode(ac_stats, index + 1, 1)
                value = block[position]
                coder.encode(sign_stats, 0, int(value < 0))
                index += 2
                value = abs(value) - 1
                top = 0
                if value:
                    coder.encode(ac_stats, index, 1)
                    top, rest = 1, value >> 1
                    if rest:
                        coder.encode(ac_stats, index, 1)
                        top, rest, index = 2, rest >> 1, (189 if position <= 5 else 217)
                        while rest:
                            coder.encode(ac_stats, index, 1)
                            top, rest, index = top << 1, rest >> 1, index + 1
                coder.encode(ac_stats, index, 0)
                index += 14
                top >>= 1
                while top:
                    coder.encode(ac_stats, index, int(bool(top & value)))
                    top >>= 1
                position += 1
            if position <= 63:
                coder.encode(ac_stats, 3 * (position - 1), 1)  # the end of the block
    return coder.finish()


def arithmetic_jpeg(pixels, quality=90):
    """An arithmetic-coded JPEG (SOF9) of ``pixels`` ((H, W) or (H, W, 3) uint8), no chroma subsampling.

    The same bytes every time; djpeg, libjpeg-turbo (simplejpeg) and TensorFlow decode
    them, Pillow only while the entropy data fits in its first 64 KiB read.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim == 3:
        red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        planes = [0.299 * red + 0.587 * green + 0.114 * blue,
                  -0.168736 * red - 0.331264 * green + 0.5 * blue + 128,
                  0.5 * red - 0.418688 * green - 0.081312 * blue + 128]
    else:
        planes = [pixels]
    height, width = planes[0].shape
    base = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                     92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8)
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality  # libjpeg's quality scaling
    table = np.clip((base * scale + 50) // 100, 1, 255).astype(np.int64)
    frequency = np.arange(8)
    dct = np.sqrt(np.where(frequency[:, None] == 0, 1 / 8, 2 / 8)) * np.cos(
        (2 * frequency[None, :] + 1) * frequency[:, None] * np.pi / 16)
    rows, columns = -(-height // 8), -(-width // 8)
    blocks = []
    for plane in planes:
        padded = np.pad(plane, ((0, rows * 8 - height), (0, columns * 8 - width)), mode="edge") - 128
        transformed = dct @ padded.reshape(rows, 8, columns, 8).transpose(0, 2, 1, 3) @ dct.T
        blocks.append(np.rint(transformed / table).astype(np.int64).reshape(rows * columns, 64)[:, _ZIGZAG].tolist())
    count = len(planes)
    scan = _arithmetic_scan(zip(*blocks, strict=True), count)

    def segment(marker, payload):
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    frame = struct.pack(">BHHB", 8, height, width, count) + b"".join(bytes([index + 1, 0x11, 0])
                                                                       for index in range(count))
    scan_header = bytes([count]) + b"".join(bytes([index + 1, 0]) for index in range(count)) + b"\x00\x3f\x00"
    return (b"\xff\xd8" + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
            + segment(0xDB, b"\x00" + bytes(int(value) for value in table.reshape(64)[_ZIGZAG]))
            + segment(0xC9, frame) + segment(0xDA, scan_header) + scan + b"\xff\xd9")


def wait_until(condition, process, seconds=60):
    """Poll ``condition()`` until it holds; fail with ``process``'s output if it ends first or time runs out."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)


def start_slow_write(source, out, folder, seconds_per_record, *options, **popen_options):
    """``python -m tfrecord_tools write SOURCE OUT *options --no-progress``, each record slowed down.

    Runs in a subprocess with :func:`slow_writes_environment` (its files in ``folder``);
    returned once a shard is being written (its temporary file exists in OUT).
    """
    command = [sys.executable, "-m", "tfrecord_tools", "write", str(source), str(out), *options, "--no-progress"]
    process = subprocess.Popen(command, env=slow_writes_environment(folder, seconds_per_record), cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_options)
    wait_until(lambda: os.path.isdir(out) and any(name.startswith(".incomplete-") and ".tfrecord-" in name
                                                  for name in os.listdir(out)), process)
    return process
