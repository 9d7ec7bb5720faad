"""Native stand-ins for the host, for a plugin's unit tests (`python3 -m unittest`, no wasm).

Set config with `set_config`, call the plugin's `process`, then read what it emitted and logged
with `take_emitted()` and `take_logs()`. Call `reset()` first (e.g. in `setUp`) so one test does
not see another's config, records or logs. `run(process, msg)` and `run_batch(process, msgs)`
call `process` exactly as the component does, turning its return value or exception into the
outcome the host would see.
"""

from . import _shim
from ._run import run, run_batch  # noqa: F401  (part of this module's API)


def reset():
    """Forgets the config, emitted records and logs."""
    _shim.state = _shim.State()


def set_config(key, value):
    """Sets the plugin setting `key` that `burrow_plugin.config(key)` returns."""
    _shim.state.config[str(key)] = str(value)


def remove_config(key):
    """Unsets the plugin setting `key`."""
    _shim.state.config.pop(str(key), None)


def take_emitted():
    """The records (`burrow_plugin.Record`) emitted since the last call, oldest first."""
    taken, _shim.state.emitted = _shim.state.emitted, []
    return taken


def take_logs():
    """The log lines written since the last call, oldest first, as `(Level, text)` pairs."""
    taken, _shim.state.logs = _shim.state.logs, []
    return taken
