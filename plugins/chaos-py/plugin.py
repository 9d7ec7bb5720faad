"""A test plugin, the Python twin of `plugins/chaos`: the `burrow-action` header on each message
says which fault to inject, so tests can make the host face every outcome, trap and limit on
demand, from a Python plugin.

| `burrow-action`          | does                                                          |
|--------------------------|---------------------------------------------------------------|
| absent, `commit`         | commits                                                       |
| `fail`                   | fails: `chaos: asked to fail`                                 |
| `retry`                  | retries, no delay hint                                        |
| `retry-after:MS`         | retries, hinting MS milliseconds                              |
| `retry-then-commit:N`    | retries while `attempt` <= N, then commits                    |
| `trap`                   | raises a BaseException the SDK does not catch (a trap)        |
| `loop`                   | never returns (the host's deadline must stop it)              |
| `oom`                    | allocates and touches memory until allocation fails, then traps |
| `leak:KIB`               | allocates KIB KiB and keeps it for the instance's life, then commits |
| `count`                  | fails, reporting `count N`: the messages this instance has seen, this one included |
| `sleep:MS`               | busy-waits MS milliseconds, then commits                      |
| `block:MS`               | sleeps MS ms in a host call (WASI clock poll), then commits   |
| `emit:TOPIC`             | emits the message value to TOPIC, then commits                |
| `emit-copies:N:TOPIC`    | emits the message value to TOPIC N times, then commits        |
| `log:LEVEL:TEXT`         | logs TEXT at LEVEL (trace…error), then commits                |
| `print:TEXT`             | writes TEXT to stdout and to stderr, then commits             |
| `read-file:PATH`         | fails, reporting `read-file PATH: ok, N bytes` or `: error: E` |
| `env:NAME`               | fails, reporting `env NAME: unset` or `env NAME: set to V`    |
| `config:KEY`             | fails, reporting `config KEY = VALUE` or `config KEY = <none>` |

`sleep` runs Python code (an epoch check can stop it); `block` is `time.sleep`, one WASI `poll`
on a monotonic-clock pollable, so the guest sits inside the host until it returns.

The probes (`read-file`, `env`, `config`) fail on purpose: a `fail` reason is the one string a
test can read back from the host. A header that is not UTF-8, an unknown action or a malformed
argument fails, naming it, with the same text as the Rust plugin.
"""

import os
import sys
import time

from burrow_plugin import Level, Message, commit, config, emit, fail, log, retry

ACTION_HEADER = "burrow-action"

# Messages this instance has seen: instance state, gone with the instance. (0 in the build's
# snapshot, so 0 in every fresh instance.)
seen = 0

# What `leak` keeps: linear memory never shrinks, as with a garbage-collected guest's heap.
_leaked = []


class Trap(BaseException):
    """Not an `Exception`, so the SDK does not turn it into a `fail`: the component traps, as
    a panic does in Rust."""


class BadAction(Exception):
    """An action that does not parse; the text says what was wrong."""


def process(msg: Message):
    global seen
    seen += 1
    try:
        action = msg.header_str(ACTION_HEADER)
    except UnicodeDecodeError as err:
        return fail(f"chaos: {ACTION_HEADER} is not UTF-8: {err}")
    try:
        run = parse("commit" if action is None else action)
    except BadAction as err:
        return fail(f"chaos: {err}")
    return run(msg)


def parse(text):
    """The action `name` or `name:argument` as a function of the message."""
    name, colon, arg = text.partition(":")
    if not colon:
        arg = None
    match (name, arg):
        case ("commit", None):
            return lambda msg: commit()
        case ("fail", None):
            return lambda msg: fail("chaos: asked to fail")
        case ("retry", None):
            return lambda msg: retry()
        case ("retry-after", str(ms)):
            seconds = number(text, ms, 64) / 1000
            return lambda msg: retry(seconds)
        case ("retry-then-commit", str(n)):
            attempts = number(text, n, 32)
            return lambda msg: retry() if msg.attempt <= attempts else commit()
        case ("trap", None):
            return trap
        case ("loop", None):
            return spin_forever
        case ("oom", None):
            return exhaust_memory
        case ("leak", str(kib)):
            size = number(text, kib, 32) * 1024
            return lambda msg: leak(size)
        case ("count", None):
            return lambda msg: fail(f"count {seen}")
        case ("sleep", str(ms)):
            seconds = number(text, ms, 64) / 1000
            return lambda msg: busy_wait(seconds)
        case ("block", str(ms)):
            seconds = number(text, ms, 64) / 1000
            return lambda msg: block(seconds)
        case ("emit", str(topic)):
            return lambda msg: emit(topic, msg.value)
        case ("emit-copies", str(rest)):
            n, colon, topic = rest.partition(":")
            if not colon:
                raise BadAction(f"`{text}`: expected emit-copies:N:TOPIC")
            copies = number(text, n, 32)

            def emit_copies(msg: Message) -> None:
                for _ in range(copies):
                    emit(topic, msg.value)

            return emit_copies
        case ("log", str(rest)):
            level_name, colon, message = rest.partition(":")
            if not colon:
                raise BadAction(f"`{text}`: expected log:LEVEL:TEXT")
            level = level_named(text, level_name)
            return lambda msg: log.log(level, message)
        case ("print", str(message)):
            return lambda msg: print_both(message)
        case ("read-file", str(path)):
            return lambda msg: fail(read_file(path))
        case ("env", str(var)):
            return lambda msg: fail(env(var))
        case ("config", str(key)):
            return lambda msg: fail(config_probe(key))
    raise BadAction(f"unknown action `{text}`")


def number(action, text, bits):
    """An unsigned integer of `bits` bits, with Rust's `parse` error texts (the Rust plugin's
    reasons, word for word)."""
    digits = text[1:] if text.startswith("+") else text
    if not text:
        problem = "cannot parse integer from empty string"
    elif not digits or any(c not in "0123456789" for c in digits):
        problem = "invalid digit found in string"
    elif int(digits) >= 1 << bits:
        problem = "number too large to fit in target type"
    else:
        return int(digits)
    raise BadAction(f"`{action}`: bad number `{text}`: {problem}")


def level_named(action, name):
    try:
        return Level(name)
    except ValueError:
        raise BadAction(f"`{action}`: unknown log level `{name}`") from None


def trap(msg):
    raise Trap("chaos: asked to trap")


def spin_forever(msg):
    spins = 0
    while True:
        spins += 1


def exhaust_memory(msg):
    """Allocates 1 MiB blocks, writing every byte so the pages are really used, until
    allocation fails; then traps, as Rust's allocation-failure abort does."""
    block = 1 << 20
    hoard = []
    try:
        while True:
            hoard.append(bytearray(b"\xa5") * block)
    except MemoryError:
        hoard.clear()
        raise Trap("chaos: out of memory") from None


def leak(size):
    """Keeps `size` bytes of touched memory for as long as the instance lives."""
    _leaked.append(bytearray(b"\x5a") * size)
    return commit()


def busy_wait(seconds):
    """Burns CPU for `seconds` (the point is to hold the instance, not to yield)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return commit()


def block(seconds):
    # Not a loop: one WASI `poll` on a monotonic-clock pollable, where the guest sits inside
    # the host and no epoch check can reach it.
    time.sleep(seconds)
    return commit()


def print_both(text):
    print(text)
    print(text, file=sys.stderr)
    return commit()


def read_file(path):
    try:
        with open(path, "rb") as file:
            size = len(file.read())
    except OSError as err:
        # Rust's `io::Error` text, so both plugins report alike.
        detail = f"{err.strerror} (os error {err.errno})" if err.errno else str(err)
        return f"read-file {path}: error: {detail}"
    return f"read-file {path}: ok, {size} bytes"


def env(name):
    value = os.environ.get(name)
    return f"env {name}: unset" if value is None else f"env {name}: set to {value}"


def config_probe(key):
    value = config(key)
    return f"config {key} = <none>" if value is None else f"config {key} = {value}"
