"""The host imports outside wasm: what `burrow_plugin.host` calls natively, and the state
`burrow_plugin.testing` sets and reads."""

import logging as _logging

_LOGGER = _logging.getLogger("burrow_plugin")
# A library's logger stays quiet unless the application configures logging.
_LOGGER.addHandler(_logging.NullHandler())
_LOGGING_LEVELS = {
    "trace": 5,
    "debug": _logging.DEBUG,
    "info": _logging.INFO,
    "warn": _logging.WARNING,
    "error": _logging.ERROR,
}


class State:
    """One test process's host (unittest runs tests one at a time)."""

    def __init__(self):
        # Served by `burrow_plugin.config`.
        self.config = {}
        # Appended to by `emit` and `forward`.
        self.emitted = []
        # Appended to by `burrow_plugin.log`.
        self.logs = []


state = State()


def log(level, text):
    state.logs.append((level, text))
    # Also to Python's logging, where a test wants to see them (`assertLogs`, or logging
    # configured to print).
    _LOGGER.log(_LOGGING_LEVELS[level.value], "%s", text)


def emit(record):
    state.emitted.append(record)


def config(key):
    return state.config.get(key)
