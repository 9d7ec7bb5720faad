"""{{name}}: a Burrow plugin. `process` runs once per message (and again on each retry); what
it returns decides the message's offset: None commits, `fail(reason)` (or any exception) fails
it for good, `retry()` tries it again later."""
from burrow_plugin import Message, config, emit, fail


def process(msg: Message):
    text = msg.text()  # not UTF-8: raises, and the message fails with the reason
    if not text:
        return fail("empty value")
    # Emits are produced only if the message commits, before its offset is marked done.
    topic = config("output-topic")
    if topic:
        emit(topic, text.upper(), key=msg.key, headers=msg.headers)
