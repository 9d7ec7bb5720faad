"""Outcomes: what the host does with a message once `process` returns.

`commit()`, `retry(delay=None)` and `fail(reason)` make the three outcomes; `process` may also
return None (commit), or raise `Fail(reason)` or `Retry(delay=None)`. Delays are seconds (an
int, a float or a `datetime.timedelta`); the contract carries milliseconds, so the SDK rounds
up: a short non-zero hint never becomes "retry at once".
"""

import datetime as _datetime
import math as _math

# The contract's delay hint is a u64 of milliseconds; longer delays saturate.
_MAX_MILLIS = 2**64 - 1


def _seconds(delay):
    """`delay` as seconds (a float), or None; raises ValueError for a negative or NaN delay."""
    if delay is None:
        return None
    if isinstance(delay, _datetime.timedelta):
        delay = delay.total_seconds()
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        raise TypeError(f"a retry delay is seconds (int, float or timedelta), not {type(delay).__name__}")
    if _math.isnan(delay) or delay < 0:
        raise ValueError(f"a retry delay must be zero or more seconds, not {delay}")
    return delay


def delay_millis(seconds):
    """Milliseconds for the contract's `retry(option<u64>)`: rounded up from whole
    nanoseconds (as the Rust SDK's `Duration` does, so 0.07 s is 70 ms, not 71), saturated
    rather than wrapped for absurd delays."""
    if _math.isinf(seconds):
        return _MAX_MILLIS
    nanos = round(seconds * 1_000_000_000)
    return min(-(-nanos // 1_000_000), _MAX_MILLIS)


class Outcome:
    """The plugin's verdict on one message: `kind` is "commit", "retry" or "fail"; `delay` is
    a retry's hint in seconds (None: the host's backoff); `reason` is a failure's text.

    Make them with `commit()`, `retry()` and `fail()`; outcomes compare equal by value.
    """

    __slots__ = ("kind", "delay", "reason")

    def __init__(self, kind, delay=None, reason=None):
        self.kind = kind
        self.delay = delay
        self.reason = reason

    def __eq__(self, other):
        if not isinstance(other, Outcome):
            return NotImplemented
        return (self.kind, self.delay, self.reason) == (other.kind, other.delay, other.reason)

    def __hash__(self):
        return hash((self.kind, self.delay, self.reason))

    def __repr__(self):
        if self.kind == "retry":
            return "retry()" if self.delay is None else f"retry({self.delay!r})"
        if self.kind == "fail":
            return f"fail({self.reason!r})"
        return "commit()"


_COMMIT = Outcome("commit")


def commit():
    """Done: the host produces what was emitted, then marks the offset done."""
    return _COMMIT


def retry(delay=None):
    """Try again later: after the host's own backoff, or after `delay` seconds (the host caps
    it). Emitted records are discarded."""
    return Outcome("retry", delay=_seconds(delay))


def fail(reason):
    """Fail permanently with `reason`; the tenant's failure policy (dead-letter, skip, halt)
    takes over. Emitted records are discarded."""
    return Outcome("fail", reason=str(reason))


class Fail(Exception):
    """Raise to fail the message permanently with `reason` (what `return fail(reason)` does)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = str(reason)


class Retry(Exception):
    """Raise to retry the message, after the host's backoff or `delay` seconds (what `return
    retry(delay)` does). A `reason`, if given, is logged at warn first: a retry carries no
    text across the boundary, and no failure should go unexplained."""

    def __init__(self, delay=None, reason=None):
        self.delay = _seconds(delay)
        self.reason = None if reason is None else str(reason)
        super().__init__(*(() if reason is None else (self.reason,)))
