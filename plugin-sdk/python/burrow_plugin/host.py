"""What the host offers a plugin: `emit`, `forward` and `config` (and the raw `log` behind
`burrow_plugin.log`).

Inside the component (`sys.platform == "wasi"`) these call the `burrow:plugin/host` imports
through the bindings componentize-py generates at build time (package `wit_world`). Everywhere
else, that is in a plugin's native unit tests, they are served by `_shim`, which
`burrow_plugin.testing` sets and inspects. This is the one place that tells the two apart.
"""

import sys

from .message import Record

# Which message of the batch in progress the plugin is on: `log` and `emit` name it to the
# host. Set by `_run.each` before each message.
_current = 0


def begin(index):
    global _current
    _current = index


if sys.platform == "wasi":
    from wit_world.imports import host as _wit
    from wit_world.imports import types as _types

    def log(level, text):
        _wit.log(_current, _wit.Level[level.name], text)

    def _emit(record):
        headers = [_types.Header(name, value) for name, value in record.headers]
        _wit.emit(_current, _types.OutputRecord(record.topic, record.key, record.value, headers))

    _config = _wit.config
else:
    from . import _shim

    log = _shim.log
    _emit = _shim.emit
    _config = _shim.config


def emit(topic, value, key=None, headers=None):
    """Asks the host to produce a record to `topic` if, and only if, the current message
    commits. `value` and `key` are bytes (or str, encoded as UTF-8); `headers` a list of
    `(name, bytes)`. Records are discarded on retry or fail; the host only produces to output
    topics the tenant allows."""
    _emit(Record(topic, value, key, () if headers is None else headers))


def forward(topic, msg):
    """Emits a copy of `msg`'s key, value and headers to `topic`: forwarding a message."""
    _emit(Record(topic, msg.value, msg.key, msg.headers))


def config(key):
    """The plugin's setting `key` (a str) for the tenant it runs for, or None if the tenant
    set none. One built plugin serves many tenants; this is how each configures it."""
    return _config(str(key))
