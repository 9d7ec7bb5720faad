"""Commits a message whose value is a JSON object and forwards it (key and headers kept) to the
topic named by the `output-topic` setting; without that setting it only commits. Anything else
fails, with a reason saying what was wrong. The Python twin of plugins/json-validate: the same
work, to compare the two languages' cost per message (`cargo bench -p burrow --bench wasm`)."""
import json

from burrow_plugin import Message, fail, forward, config

_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number",
          bool: "a boolean", type(None): "null"}


def process(msg: Message):
    try:
        text = msg.value.decode()
    except UnicodeDecodeError as e:
        return fail(f"value is not UTF-8: {e}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return fail(f"value is not valid JSON: {e}")
    if not isinstance(value, dict):
        return fail(f"expected a JSON object, found {_KINDS[type(value)]}")
    # Read per message, not cached: the setting belongs to the tenant, not to the instance.
    topic = config("output-topic")
    if topic:
        forward(topic, msg)
