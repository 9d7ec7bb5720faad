"""B14's peer: B4's job, "keep JSON objects and forward them to an output topic", written as a
user of Quix Streams writes it (https://quix.io/docs/quix-streams/): one Application, a
StreamingDataFrame that filters and sends to a topic, default settings otherwise.

Run by `make bench` with BROKERS, GROUP, INPUT, OUTPUT and STATE_DIR (where Quix Streams keeps
its local state; this job has none) in the environment; it runs until stopped. The bench counts
what reaches OUTPUT.
"""

import os

from quixstreams import Application


def main() -> None:
    app = Application(
        broker_address=os.environ["BROKERS"],
        consumer_group=os.environ["GROUP"],
        auto_offset_reset="earliest",
        state_dir=os.environ["STATE_DIR"],
    )
    source = app.topic(os.environ["INPUT"], value_deserializer="json")
    sink = app.topic(os.environ["OUTPUT"], value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.filter(lambda value: isinstance(value, dict))
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
