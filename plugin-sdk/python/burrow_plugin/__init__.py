"""Write a Burrow plugin in Python: one plain function over a Kafka message.

    from burrow_plugin import Message, commit, retry, fail, emit, config

    def process(msg: Message):
        ...

The host calls `process` once per message (and again on every retry), often for many messages
in one call into the plugin (the contract's `process`, which takes the batch as one frame; the
SDK reads each message from it and calls your `process`). What it returns decides the message's fate:

- None, or `commit()`: done; what it emitted is produced, then the offset is marked done.
- `retry(delay=None)`, or `raise Retry(delay=None)`: try again after the host's backoff, or after
  `delay` seconds (capped by the host).
- `fail(reason)`, or `raise Fail(reason)`: permanent failure; the tenant's policy (dead-letter,
  skip, halt) takes over.
- Any other uncaught `Exception` fails the message permanently, the reason naming the exception
  type, its text and where it was raised, as `?` does in Rust. A `BaseException` that is not an
  `Exception` (e.g. SystemExit) traps the component: the host retries the message on a fresh
  instance.

The plugin is a directory with `plugin.py` defining `process`; `plugin-sdk/python/build.sh`
builds it into a component with componentize-py (`make plugins` builds every one in
`plugins/`). Its unit tests run natively with `python3 -m unittest`, using
`burrow_plugin.testing`; no wasm, no broker.

Build time is import time: componentize-py imports `plugin.py` while building and snapshots the
interpreter, so module-level code runs once, at build time, and every instance starts from its
result. Hence:
- Import at module level everything `process` uses, the standard library included: the
  component has only the modules imported at build time, so an import inside `process` fails
  with ModuleNotFoundError. A few stdlib functions import lazily (`datetime.strptime` needs
  `import _strptime`); call such a function once at module level, or import what it needs.
- Call the host (`config`, `emit`, `log`) only from `process`, never at module level.
- Module-level state lives as long as the instance: the host reuses an instance across
  messages and replaces it after a trap, a timeout or a memory-cap hit.

Layout:
- `message`: the plain data, `Message` in and `Record` out. No wasm here.
- `_frame`: reads the batch frame the host sends into `Message`s, each field sliced out when
  first read.
- `outcome`: `commit`, `retry`, `fail` and the `Outcome` they make; the `Fail` and `Retry`
  exceptions.
- `host`: `emit`, `forward`, `config`: the component's host imports inside wasm, the shims in
  `_shim` elsewhere (the one place that tells the two apart).
- `log`: `log.info(text)` and friends, `log.log(level, text)`, `Level`.
- `_run`: how `process`'s return value or exception becomes an outcome, for one message or a
  batch.
- `testing`: set config and read emitted records and logs in native tests.
- `_guest`: the module componentize-py builds (wasm only): the exports, over the author's
  `plugin.process`.
"""

from . import log
from .host import config, emit, forward
from .log import Level
from .message import Message, Record
from .outcome import Fail, Outcome, Retry, commit, fail, retry

__all__ = [
    "Fail",
    "Level",
    "Message",
    "Outcome",
    "Record",
    "Retry",
    "commit",
    "config",
    "emit",
    "fail",
    "forward",
    "log",
    "retry",
]
