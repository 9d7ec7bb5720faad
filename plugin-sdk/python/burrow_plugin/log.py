"""Structured logging to the host: `log.info("text")` and friends, or `log.log(level, text)`.

The host adds tenant, topic, partition and offset to every line. In native tests the lines are
kept for `testing.take_logs()` and also go to Python's `logging` (logger "burrow_plugin").
"""

import enum as _enum

from . import host as _host


class Level(_enum.Enum):
    """How severe a log line is."""

    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


def log(level, text):
    """Writes `text` at `level` (a `Level` or its name, e.g. "warn")."""
    if not isinstance(level, Level):
        level = Level(str(level).lower())
    _host.log(level, str(text))


def trace(text):
    """Very verbose detail."""
    _host.log(Level.TRACE, str(text))


def debug(text):
    """Detail useful when debugging."""
    _host.log(Level.DEBUG, str(text))


def info(text):
    """Normal operation."""
    _host.log(Level.INFO, str(text))


def warn(text):
    """Something unexpected that the plugin handled."""
    _host.log(Level.WARN, str(text))


def error(text):
    """Something went wrong."""
    _host.log(Level.ERROR, str(text))
