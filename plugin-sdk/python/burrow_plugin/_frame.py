"""Reads the batch frame the host sends (the contract's `process(frame)`), in place.

The layout is `wit/plugin.wit`'s, and the Rust crate `burrow-frame` is its reference: both
readers are tested against the same golden frame (`frame/tests/golden.frame`). Each message is
a `Message` whose scalars are read at once and whose topic, key, value and headers are sliced
out of the frame when first read: a plugin that looks only at the value pays only for it.
"""

import struct

from .message import Message

_COUNT = struct.Struct("<I")
# offset, timestamp, partition, attempt, flags, then four (start, len) pairs: topic, key,
# value, headers (start of the header table, count).
_ENTRY = struct.Struct("<qqiII8I")
_HEADER = struct.Struct("<4I")
_HAS_KEY = 1
_HAS_TIMESTAMP = 2


def messages(frame):
    """The frame's messages, in order: a list of `Message`s reading `frame` (bytes)."""
    (count,) = _COUNT.unpack_from(frame, 0)
    if _COUNT.size + count * _ENTRY.size > len(frame):
        raise ValueError(f"burrow_plugin: a batch frame of {count} messages does not fit its {len(frame)} bytes")
    topics = {}
    return [_read(frame, _COUNT.size + i * _ENTRY.size, topics) for i in range(count)]


def _read(frame, at, topics):
    (offset, timestamp, partition, attempt, flags,
     topic_start, topic_len, key_start, key_len, value_start, value_len,
     headers_start, headers_count) = _ENTRY.unpack_from(frame, at)
    msg = _FrameMessage.__new__(_FrameMessage)
    _set_partition(msg, partition)
    _set_offset(msg, offset)
    _set_timestamp(msg, timestamp if flags & _HAS_TIMESTAMP else None)
    _set_attempt(msg, attempt)
    span = (topic_start, topic_len)
    topic = topics.get(span)
    if topic is None:
        topic = topics[span] = _bytes(frame, topic_start, topic_len).decode()
    _set_topic(msg, topic)
    msg._frame = frame
    msg._key = (key_start, key_len) if flags & _HAS_KEY else None
    msg._value = (value_start, value_len)
    msg._headers = (headers_start, headers_count)
    return msg


def _bytes(frame, start, length):
    end = start + length
    if end > len(frame):
        raise ValueError("burrow_plugin: a span lies outside the batch frame")
    return frame[start:end]


def _lazy(name, read):
    """A property over `Message`'s slot `name`: `read(msg)` fills it on first access; setting
    it works as on any `Message`."""
    slot = getattr(Message, name)

    def get(self):
        try:
            return slot.__get__(self, Message)
        except AttributeError:
            value = read(self)
            slot.__set__(self, value)
            return value

    def set_(self, value):
        slot.__set__(self, value)

    return property(get, set_)


def _read_key(msg):
    return None if msg._key is None else _bytes(msg._frame, *msg._key)


def _read_value(msg):
    return _bytes(msg._frame, *msg._value)


def _read_headers(msg):
    frame = msg._frame
    start, count = msg._headers
    headers = []
    for i in range(count):
        name_start, name_len, value_start, value_len = _HEADER.unpack_from(frame, start + i * _HEADER.size)
        headers.append((_bytes(frame, name_start, name_len).decode(), _bytes(frame, value_start, value_len)))
    return headers


class _FrameMessage(Message):
    """A `Message` read from a batch frame (see the module docs)."""

    __slots__ = ("_frame", "_key", "_value", "_headers")

    key = _lazy("key", _read_key)
    value = _lazy("value", _read_value)
    headers = _lazy("headers", _read_headers)


_set_topic = Message.topic.__set__
_set_partition = Message.partition.__set__
_set_offset = Message.offset.__set__
_set_timestamp = Message.timestamp.__set__
_set_attempt = Message.attempt.__set__
