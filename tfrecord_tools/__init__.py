"""Convert a folder of labelled images to decode-checked, sharded TFRecords, verify them, read them back fast.

Public API::

    scan = tfrecord_tools.scan_images("oregon_wildlife")          # decode-check, no writing
    summary = tfrecord_tools.write_dataset("oregon_wildlife", "wildlife_tfrecords", test_fraction=0.2,
                                           val_fraction=0.1, max_side=300)
    report = tfrecord_tools.verify("wildlife_tfrecords")          # raises VerifyError on any problem
    train = tfrecord_tools.load("wildlife_tfrecords", "train", batch_size=64, image_size=(224, 224))
    train.class_names                                              # the label names, in label order
    features = tfrecord_tools.parse_example(serialized)           # one record, for your own pipeline

Command line: ``python -m tfrecord_tools --help`` (``tfrecord-tools`` once installed
with ``pip install .``).

Writing, scanning and verifying never import TensorFlow (their worker processes
start in a fraction of a second); ``load`` and ``parse_example`` import it on
first use. With more than one worker they need the calling script's top-level
code under ``if __name__ == "__main__":``; called from outside such a block they
warn and use one process (see ``tfrecord_tools._pool``), and a script without
one runs ``python -m tfrecord_tools write ...`` as a subprocess instead.
"""

__version__ = "1.1.0"

from .encode import DEFAULT_MAX_PIXELS
from .errors import (
    BadImageError,
    ImageWriteError,
    OutputFolderError,
    SidecarError,
    SourceChangedError,
    SourceFolderError,
    TFRecordToolsError,
    VerifyError,
    WorkerDiedError,
)
from .info import dataset_info, format_info
from .record_io import iter_records, parse_example_bytes, serialize_example
from .scan import ImageFile, Rejected, ScanResult, scan_images
from .sheet import contact_sheet
from .sidecar import FEATURES, parse_shard_name, read_sidecar, shard_file_name
from .sniff import SUPPORTED_FORMATS, sniff_format
from .verify import VerifyReport, verify
from .write import format_summary, write_dataset

_TENSORFLOW_API = ("load", "parse_example", "decode_image", "shard_files", "FEATURE_DESCRIPTION")


def __getattr__(name):
    # TensorFlow takes seconds to import: only the reading side needs it.
    if name in _TENSORFLOW_API:
        from . import read

        return getattr(read, name)
    raise AttributeError(f"module 'tfrecord_tools' has no attribute {name!r}")


__all__ = [
    "BadImageError",
    "DEFAULT_MAX_PIXELS",
    "FEATURES",
    "FEATURE_DESCRIPTION",
    "ImageFile",
    "ImageWriteError",
    "OutputFolderError",
    "Rejected",
    "SUPPORTED_FORMATS",
    "ScanResult",
    "SidecarError",
    "SourceChangedError",
    "SourceFolderError",
    "TFRecordToolsError",
    "VerifyError",
    "VerifyReport",
    "WorkerDiedError",
    "contact_sheet",
    "dataset_info",
    "decode_image",
    "format_info",
    "format_summary",
    "iter_records",
    "load",
    "parse_example",
    "parse_example_bytes",
    "parse_shard_name",
    "read_sidecar",
    "scan_images",
    "serialize_example",
    "shard_file_name",
    "shard_files",
    "sniff_format",
    "verify",
    "write_dataset",
]
