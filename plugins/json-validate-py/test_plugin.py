"""Native unit tests: `python3 -m unittest` in this directory (with the SDK on PYTHONPATH)."""
import unittest

from burrow_plugin import Message, Record, fail, testing

import plugin


class JsonValidateTest(unittest.TestCase):
    def setUp(self):
        testing.reset()

    def test_an_object_is_forwarded_with_key_and_headers(self):
        testing.set_config("output-topic", "valid")
        msg = Message("in", '{"a": [1, {"b": null}]}', key="k", headers=[("h", "1")])
        self.assertIsNone(plugin.process(msg))
        self.assertEqual(testing.take_emitted(), [Record("valid", msg.value, "k", [("h", "1")])])

    def test_without_output_topic_an_object_commits_and_emits_nothing(self):
        self.assertIsNone(plugin.process(Message("in", "{}")))
        self.assertEqual(testing.take_emitted(), [])

    def test_non_objects_fail_naming_what_was_found(self):
        for value, found in [("[1, 2]", "an array"), ('"s"', "a string"), ("-1.5e3", "a number"),
                             ("true", "a boolean"), ("null", "null")]:
            self.assertEqual(plugin.process(Message("in", value)),
                             fail(f"expected a JSON object, found {found}"))

    def test_invalid_json_and_non_utf8_fail(self):
        self.assertTrue(plugin.process(Message("in", "{")).reason.startswith("value is not valid JSON"))
        self.assertTrue(plugin.process(Message("in", b"{\xff}")).reason.startswith("value is not UTF-8"))


if __name__ == "__main__":
    unittest.main()
