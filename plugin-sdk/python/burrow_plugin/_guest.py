"""The module componentize-py builds into a component: the `processor` world's exports, over
the author's `process` (module `plugin`, the plugin directory's `plugin.py`).

componentize-py (0.25) serves a world's own exports from the app module's class `WitWorld`,
which implements the protocol of that name in the bindings it generates, package `wit_world`
(with the host imports in `wit_world.imports`). Only ever imported inside wasm, first at build
time, where a `plugin.py` without `process` fails the build.
"""

import sys

import wit_world
from wit_world.imports import types

import plugin

from . import _frame, _run
from .outcome import delay_millis

_process = getattr(plugin, "process", None)
if not callable(_process):
    raise TypeError(f"{plugin.__file__} must define `def process(msg):` (see burrow_plugin)")

_COMMIT = types.Outcome_Commit()


def _lower(outcome):
    if outcome.kind == "commit":
        return _COMMIT
    if outcome.kind == "retry":
        delay = outcome.delay
        return types.Outcome_Retry(None if delay is None else delay_millis(delay))
    return types.Outcome_Fail(outcome.reason)


def _one(msg):
    try:
        return _lower(_run.run(_process, msg))
    finally:
        # The host reads a message's output when the message is done. componentize-py's stdout
        # is write-through today; flushing keeps that true whatever the author (or a later
        # componentize-py) does to sys.stdout, for the cost of two cheap calls.
        sys.stdout.flush()
        sys.stderr.flush()


class WitWorld(wit_world.WitWorld):
    def process(self, frame):
        return _run.each(_frame.messages(frame), _one)
