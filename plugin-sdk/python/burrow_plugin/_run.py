"""How `process`'s return value or exception becomes an outcome, for one message or a batch.

Mirrors the Rust SDK's `IntoOutcome` and `__private::run_batch`: None commits; an `Outcome` is
used as is; `Fail` and `Retry` give their outcome; any other `Exception` fails the message
permanently (like `?` in Rust) with its type, text and where it was raised. A `BaseException`
that is not an `Exception` (SystemExit, KeyboardInterrupt) is not caught: the component traps,
which the host counts as a retriable failure and answers with a fresh instance.
"""

import os

from . import host, log
from .outcome import Fail, Outcome, Retry, commit, fail, retry

# An exception's text is plugin data (it may quote a whole message value): keep the reason
# short enough that the host's own cap (4 KiB) never cuts off where it was raised.
MAX_EXCEPTION_TEXT = 1024

# How many `raise ... from` causes a reason follows.
_MAX_CAUSES = 8


def run(process, msg):
    """Calls `process(msg)` and returns the `Outcome` the host will see."""
    try:
        result = process(msg)
    except Fail as err:
        return fail(err.reason)
    except Retry as err:
        if err.reason:
            log.warn(f"retrying: {err.reason}")
        return Outcome("retry", delay=err.delay)
    except Exception as err:  # noqa: BLE001  (every failure becomes an outcome)
        return fail(describe(err))
    if result is None:
        return commit()
    if isinstance(result, Outcome):
        return result
    return fail(
        f"TypeError: process returned {type(result).__name__}, "
        "expected None or an outcome (commit(), retry(), fail())"
    )


def run_batch(process, messages):
    """Runs `process` on each message in order: one outcome per message, each exactly what
    `run` gives for it alone."""
    return each(messages, lambda msg: run(process, msg))


def each(messages, one):
    """`one(msg)` for each message in order, noting before each which message it is, so the
    logs and emits it causes are named to the host as that message's."""
    results = []
    for index, msg in enumerate(messages):
        host.begin(index)
        results.append(one(msg))
    return results


def describe(err):
    """`"Type: text: Cause: text (at file.py:LINE in function)"`: the exception, its explicit
    causes (`raise ... from`), and the last frame of its traceback; the text bounded."""
    parts = [_one(err)]
    cause = err.__cause__
    while cause is not None and len(parts) <= _MAX_CAUSES:
        parts.append(_one(cause))
        cause = cause.__cause__
    text = ": ".join(parts)
    if len(text) > MAX_EXCEPTION_TEXT:
        text = text[:MAX_EXCEPTION_TEXT] + "…"
    where = _last_frame(err.__traceback__)
    return f"{text} (at {where})" if where else text


def _one(err):
    kind = type(err)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    try:
        text = str(err)
    except Exception:  # noqa: BLE001  (a broken __str__ must not hide the failure)
        text = "<unprintable>"
    return f"{name}: {text}" if text else name


def _last_frame(tb):
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} in {code.co_name}"
