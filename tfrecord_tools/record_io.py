"""TFRecord framing and ``tf.train.Example`` encoding without TensorFlow.

Worker processes write shards with this module so that they never import
TensorFlow (about 5 s and 500 MB per process). The format is small and stable:

* a TFRecord file is a sequence of records, each framed as
  ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``
  (little-endian), see ``tensorflow/core/lib/io/record_writer.cc``;
* an Example is a protobuf message ``Example{features: Features{feature: map<string,
  Feature>}}`` where a ``Feature`` holds a ``BytesList`` (field 1) or a packed
  ``Int64List`` (field 3).

:func:`serialize_example` writes map entries sorted by key, which is what
``Example.SerializeToString(deterministic=True)`` produces, so the bytes are the
same on every run and the tests can compare them against TensorFlow's own.
"""

import struct
import warnings

try:  # C implementation (SSE4.2 / ARM CRC instructions): about 0.2 us per KB.
    import google_crc32c

    def crc32c(data):
        """CRC-32C (Castagnoli) of ``data`` as an unsigned 32-bit int."""
        return google_crc32c.value(data)

    CRC32C_IMPLEMENTATION = "google-crc32c"
except ImportError:  # pragma: no cover - exercised only where the wheel is missing
    _CRC_TABLE = []
    for _byte in range(256):
        _crc = _byte
        for _ in range(8):
            _crc = (_crc >> 1) ^ 0x82F63B78 if _crc & 1 else _crc >> 1
        _CRC_TABLE.append(_crc)
    _warned_slow_crc = False

    def crc32c(data):
        """CRC-32C in pure Python: correct but ~700x slower than google-crc32c."""
        global _warned_slow_crc
        if not _warned_slow_crc:
            warnings.warn(
                "google-crc32c is not installed; TFRecord checksums use a slow pure-Python "
                "CRC-32C. Install it with: pip install google-crc32c",
                stacklevel=2,
            )
            _warned_slow_crc = True
        crc = 0xFFFFFFFF
        for byte in data:
            crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF

    CRC32C_IMPLEMENTATION = "pure-python"


_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data):
    """The CRC that TFRecord stores: rotated right by 15 bits plus a constant.

    Masking keeps a CRC of data that itself contains CRCs from being trivially
    zero (see ``tensorflow/core/lib/hash/crc32c.h``).
    """
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data):
    """Return ``data`` wrapped in TFRecord framing (length, CRCs): ``len(data) + 16`` bytes."""
    length = struct.pack("<Q", len(data))
    return b"".join(
        (length, struct.pack("<I", masked_crc32c(length)), data, struct.pack("<I", masked_crc32c(data)))
    )


class RecordError(ValueError):
    """A record's framing or checksum is wrong; ``offset`` is where it starts.

    ``str(error)`` is ``"record 3: data checksum does not match"``; ``problem`` is
    the part after the record number, for messages that name the record themselves.
    """

    def __init__(self, problem, index, offset):
        super().__init__(f"record {index}: {problem}")
        self.problem = problem
        self.index = index
        self.offset = offset


def iter_records(buffer, check_crc=True):
    """Yield each record's payload from the bytes of a whole TFRecord file.

    Parameters
    ----------
    buffer : bytes
        The file's content.
    check_crc : bool
        Check both CRCs of every record (what ``verify`` does).

    Yields
    ------
    (index, offset, payload) : (int, int, bytes)
        Record number from 0, byte offset of its framing, and the data.

    Raises
    ------
    RecordError
        At the first record that is truncated or whose CRC does not match.
    """
    view = memoryview(buffer)
    offset = 0
    index = 0
    total = len(buffer)
    while offset < total:
        if total - offset < 12:
            raise RecordError("file ends inside the record header", index, offset)
        length_bytes = bytes(view[offset : offset + 8])
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", view[offset + 8 : offset + 12])
        if check_crc and length_crc != masked_crc32c(length_bytes):
            raise RecordError("length checksum does not match", index, offset)
        end = offset + 12 + length + 4
        if end > total:
            raise RecordError(f"file ends inside the record ({length} bytes announced)", index, offset)
        payload = bytes(view[offset + 12 : offset + 12 + length])
        (data_crc,) = struct.unpack("<I", view[end - 4 : end])
        if check_crc and data_crc != masked_crc32c(payload):
            raise RecordError("data checksum does not match", index, offset)
        yield index, offset, payload
        offset = end
        index += 1


def iter_file_records(handle, check_crc=True, digest=None):
    """Like :func:`iter_records`, reading an open binary file one record at a time.

    Memory holds one record, not the whole shard. Every byte read is fed to
    ``digest`` (a ``hashlib`` object) when given; after a :class:`RecordError`
    the caller can feed it the rest of the file with :func:`hash_rest`.
    """
    import os

    size = os.fstat(handle.fileno()).st_size
    offset = 0
    index = 0
    while True:
        header = handle.read(12)
        if digest is not None:
            digest.update(header)
        if not header:
            return
        if len(header) < 12:
            raise RecordError("file ends inside the record header", index, offset)
        length_bytes = header[:8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", header[8:12])
        if check_crc and length_crc != masked_crc32c(length_bytes):
            raise RecordError("length checksum does not match", index, offset)
        if offset + 12 + length + 4 > size:  # checked before reading: a damaged length is no allocation
            raise RecordError(f"file ends inside the record ({length} bytes announced)", index, offset)
        body = handle.read(length + 4)
        if digest is not None:
            digest.update(body)
        if len(body) < length + 4:
            raise RecordError(f"file ends inside the record ({length} bytes announced)", index, offset)
        payload = body[:length]
        (data_crc,) = struct.unpack("<I", body[length:])
        if check_crc and data_crc != masked_crc32c(payload):
            raise RecordError("data checksum does not match", index, offset)
        yield index, offset, payload
        offset += 12 + length + 4
        index += 1


def hash_rest(handle, digest):
    """Feed the rest of an open file to ``digest``, 1 MiB at a time; returns the bytes read."""
    total = 0
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
        total += len(block)
    return total


# --- tf.train.Example: the few protobuf wire-format pieces it needs ---------------


_SMALL_VARINTS = [bytes((value,)) for value in range(128)]


def _varint(value):
    """Protobuf base-128 varint of an int (negative ints use 10 bytes, as int64 does)."""
    if 0 <= value < 128:
        return _SMALL_VARINTS[value]
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


# Tags are (field_number << 3) | wire_type 2 (length-delimited).
_TAG_1 = b"\x0a"
_TAG_2 = b"\x12"
_TAG_3 = b"\x1a"

_key_fields = {}  # feature name -> its encoded map-entry key field + value tag, built once
_small_entries = {}  # (feature name, int or short bytes) -> the whole encoded map entry


def _key_field(name):
    field = _key_fields.get(name)
    if field is None:
        encoded = name.encode("utf-8")
        field = _key_fields[name] = _TAG_1 + _varint(len(encoded)) + encoded + _TAG_2
    return field


def _feature(name, value):
    """Feature message bytes: BytesList (field 1) or packed Int64List (field 3)."""
    values = value if isinstance(value, list | tuple) else (value,)
    if all(isinstance(item, bytes | str) for item in values):
        items = b"".join(
            _TAG_1 + _varint(len(item)) + item
            for item in (item.encode("utf-8") if isinstance(item, str) else item for item in values)
        )
        return _TAG_1 + _varint(len(items)) + items
    if all(isinstance(item, int) for item in values):
        packed = b"".join(_varint(int(item)) for item in values)
        inner = _TAG_1 + _varint(len(packed)) + packed
        return _TAG_3 + _varint(len(inner)) + inner
    raise TypeError(f"feature {name!r}: expected bytes, str or int values, got {value!r:.80}")


def _append_entry(parts, name, value):
    """Append one map entry's pieces to ``parts``, copying a bytes value only once (in the final join)."""
    small = type(value) is int or (type(value) is bytes and len(value) <= 32)
    if small:
        # Heights, labels, class names, b"jpeg": the same few values over and over.
        cached = _small_entries.get((name, value))
        if cached is not None:
            parts.append(cached)
            return
    key = _key_field(name)
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, bytes) and not small:
        value_length = _varint(len(value))
        list_length = _varint(1 + len(value_length) + len(value))  # BytesList{value: value}
        feature_size = 1 + len(list_length) + 1 + len(value_length) + len(value)
        feature_length = _varint(feature_size)
        entry_size = len(key) + len(feature_length) + feature_size
        parts += (_TAG_1, _varint(entry_size), key, feature_length, _TAG_1, list_length, _TAG_1, value_length, value)
        return
    feature = _feature(name, value)  # ints, short bytes and lists
    entry = key + _varint(len(feature)) + feature
    entry = _TAG_1 + _varint(len(entry)) + entry
    if small and len(_small_entries) < 100_000:
        _small_entries[(name, value)] = entry
    parts.append(entry)


def serialize_example(features):
    """Serialise a ``tf.train.Example`` from plain Python values.

    Parameters
    ----------
    features : dict[str, bytes | str | int | list]
        Feature name to value: ``bytes``/``str`` (UTF-8) become a BytesList, ``int``
        an Int64List; a list holds several values of one of these kinds.

    Returns
    -------
    bytes
        Map entries in plain byte order of their keys. That is what
        ``example.SerializeToString(deterministic=True)`` gives whenever no key is
        a prefix of another (true of our features); for prefix keys the protobuf
        runtimes disagree among themselves (upb puts ``"big"`` before ``"b"``).
    """
    parts = []
    for name in sorted(features):
        _append_entry(parts, name, features[name])
    body_size = sum(map(len, parts))
    return b"".join((_TAG_1, _varint(body_size), *parts))


def _read_varint(data, position):
    result = 0
    shift = 0
    while True:
        if position >= len(data):
            raise ValueError("protobuf varint runs past the end of the message")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _iter_fields(data):
    """Yield ``(field_number, wire_type, value)``; value is bytes or int."""
    position = 0
    while position < len(data):
        key, position = _read_varint(data, position)
        field_number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _read_varint(data, position)
        elif wire_type == 2:
            length, position = _read_varint(data, position)
            if position + length > len(data):
                raise ValueError("protobuf field runs past the end of the message")
            value = data[position : position + length]
            position += length
        elif wire_type == 1:
            value, position = data[position : position + 8], position + 8
        elif wire_type == 5:
            value, position = data[position : position + 4], position + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield field_number, wire_type, value


def parse_example_bytes(serialized):
    """Parse a serialised ``tf.train.Example`` into ``{name: list of bytes or ints}``.

    The inverse of :func:`serialize_example` for bytes and int64 features (float
    features come back as ``None``). Used by ``verify`` and ``info`` in processes
    that do not import TensorFlow.

    Raises
    ------
    ValueError
        If the bytes are not a well-formed Example.
    """
    parsed = {}
    for field, _, features_message in _iter_fields(serialized):
        if field != 1:
            continue
        for entry_field, _, entry in _iter_fields(features_message):
            if entry_field != 1:
                continue
            name, feature = None, b""
            for key_field, _, key_value in _iter_fields(entry):
                if key_field == 1:
                    name = key_value.decode("utf-8")
                elif key_field == 2:
                    feature = key_value
            if name is None:
                raise ValueError("Example map entry without a feature name")
            values = None
            for kind, _, list_message in _iter_fields(feature):
                if kind == 1:
                    values = [item for number, _, item in _iter_fields(list_message) if number == 1]
                elif kind == 3:
                    values = []
                    for number, wire_type, item in _iter_fields(list_message):
                        if number != 1:
                            continue
                        if wire_type == 0:
                            values.append(item)
                        else:
                            position = 0
                            while position < len(item):
                                value, position = _read_varint(item, position)
                                values.append(value - (1 << 64) if value >= 1 << 63 else value)
            parsed[name] = values
    return parsed
