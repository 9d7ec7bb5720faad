"""The plain data a plugin reads and writes: `Message` in, `Record` out.

Ordinary Python classes with no tie to WebAssembly, so a plugin's unit tests build them
natively. Headers are lists of `(name, value)` pairs, values raw bytes: Kafka does not promise
they are UTF-8. Where a test passes `str` for a value, key or header value, it is encoded as
UTF-8, as the Rust SDK's `impl Into<Vec<u8>>` does.
"""

import json as _json


def _to_bytes(what, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


def _to_headers(headers):
    return [(str(name), _to_bytes(f"header {name!r}", value)) for name, value in headers]


class Message:
    """One Kafka message, as the host consumed it.

    `topic`, `partition`, `offset`; `key` (bytes, or None if the producer set none); `value`
    (bytes, empty for a tombstone); `headers` (a list of `(name, bytes)` in the producer's
    order, names may repeat); `timestamp` (milliseconds since the Unix epoch, or None);
    `attempt` (1 on first delivery, +1 for every retry of this message).

    For tests, `Message("in", "payload")` is a first delivery at partition 0, offset 0, with no
    key, headers or timestamp; keyword arguments set the rest.
    """

    __slots__ = ("topic", "partition", "offset", "key", "value", "headers", "timestamp", "attempt")

    def __init__(
        self,
        topic,
        value=b"",
        *,
        key=None,
        headers=(),
        partition=0,
        offset=0,
        timestamp=None,
        attempt=1,
    ):
        self.topic = str(topic)
        self.partition = int(partition)
        self.offset = int(offset)
        self.key = None if key is None else _to_bytes("key", key)
        self.value = _to_bytes("value", value)
        self.headers = _to_headers(headers)
        self.timestamp = None if timestamp is None else int(timestamp)
        self.attempt = int(attempt)

    def header(self, name):
        """The value (bytes) of the last header called `name`, or None.

        The last one wins, as with the Java client's `lastHeader`: a producer that appends a
        header to override an earlier one gets what it meant.
        """
        for header_name, value in reversed(self.headers):
            if header_name == name:
                return value
        return None

    def header_str(self, name):
        """`header(name)` as text: None if absent; raises UnicodeDecodeError if not UTF-8."""
        value = self.header(name)
        return None if value is None else value.decode()

    def text(self):
        """The value as text; raises UnicodeDecodeError (which fails the message) if it is
        not UTF-8."""
        return self.value.decode()

    value_str = text

    def key_str(self):
        """The key as text: None if there is no key; raises UnicodeDecodeError if not UTF-8."""
        return None if self.key is None else self.key.decode()

    def json(self):
        """The value parsed as JSON; raises (which fails the message) if it is not JSON."""
        return _json.loads(self.value)

    def __eq__(self, other):
        if not isinstance(other, Message):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in Message.__slots__)

    def __repr__(self):
        return (
            f"Message(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"key={self.key!r}, value={self.value!r}, headers={self.headers!r}, "
            f"timestamp={self.timestamp!r}, attempt={self.attempt})"
        )


class Record:
    """A record for the host to produce if, and only if, the current message commits.

    Plugins make them with `emit` or `forward`; tests compare what `testing.take_emitted()`
    returns against them.
    """

    __slots__ = ("topic", "value", "key", "headers")

    def __init__(self, topic, value=b"", key=None, headers=()):
        self.topic = str(topic)
        self.value = _to_bytes("value", value)
        self.key = None if key is None else _to_bytes("key", key)
        self.headers = _to_headers(headers)

    def __eq__(self, other):
        if not isinstance(other, Record):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    def __repr__(self):
        return (
            f"Record(topic={self.topic!r}, value={self.value!r}, key={self.key!r}, "
            f"headers={self.headers!r})"
        )
