"""TFRecord framing and tf.train.Example encoding without TensorFlow, checked against TensorFlow's own."""

import os

import pytest

from tfrecord_tools import record_io


def test_crc32c_known_value():
    assert record_io.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def test_serialize_example_matches_tensorflow_byte_for_byte():
    tf = pytest.importorskip("tensorflow")
    # No key is a prefix of another: for such keys the protobuf implementations
    # disagree on the "deterministic" order (upb puts "big" before "b"); ours never has them.
    features = {"b": b"\x00\xffbytes", "a": 7, "c": "naïve", "large": 2**40, "neg": -3}
    ours = record_io.serialize_example(features)
    theirs = tf.train.Example(
        features=tf.train.Features(
            feature={
                "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\x00\xffbytes"])),
                "a": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
                "c": tf.train.Feature(bytes_list=tf.train.BytesList(value=["naïve".encode()])),
                "large": tf.train.Feature(int64_list=tf.train.Int64List(value=[2**40])),
                "neg": tf.train.Feature(int64_list=tf.train.Int64List(value=[-3])),
            }
        )
    ).SerializeToString(deterministic=True)
    assert ours == theirs
    parsed = record_io.parse_example_bytes(theirs)
    assert parsed == {"a": [7], "b": [b"\x00\xffbytes"], "large": [2**40], "c": ["naïve".encode()], "neg": [-3]}


def test_tensorflow_reads_our_framing_and_we_read_tensorflows(tmp_path):
    tf = pytest.importorskip("tensorflow")
    payloads = [b"", b"x", os.urandom(1000), os.urandom(70000)]
    ours = tmp_path / "ours.tfrecord"
    ours.write_bytes(b"".join(record_io.frame_record(payload) for payload in payloads))
    assert [record.numpy() for record in tf.data.TFRecordDataset(str(ours))] == payloads
    theirs = tmp_path / "theirs.tfrecord"
    with tf.io.TFRecordWriter(str(theirs)) as writer:
        for payload in payloads:
            writer.write(payload)
    assert theirs.read_bytes() == ours.read_bytes()


def test_iter_records_names_the_bad_record():
    data = bytearray(b"".join(record_io.frame_record(bytes([index]) * 50) for index in range(3)))
    data[66 + 20] ^= 0xFF  # inside the data of record 1 (each record is 50 + 16 bytes)
    with pytest.raises(record_io.RecordError, match="record 1: data checksum") as caught:
        list(record_io.iter_records(bytes(data)))
    assert caught.value.index == 1 and caught.value.offset == 66
    with pytest.raises(record_io.RecordError, match="record 2: file ends inside"):
        list(record_io.iter_records(b"".join(record_io.frame_record(b"abc") for _ in range(3))[:-3]))

