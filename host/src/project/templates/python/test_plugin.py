"""Unit tests of plugin.py, natively: `python3 -m unittest`. No wasm, no broker."""
import unittest

from burrow_plugin import Message, Record, fail, testing

import plugin


class ProcessTest(unittest.TestCase):
    def setUp(self):
        testing.reset()

    def test_a_text_value_commits_and_is_emitted_in_capitals(self):
        testing.set_config("output-topic", "shouted")
        self.assertIsNone(plugin.process(Message("in", "hello", key="k1")))  # commit
        self.assertEqual(testing.take_emitted(), [Record("shouted", "HELLO", "k1")])

    def test_an_empty_value_fails(self):
        self.assertEqual(plugin.process(Message("in", "")), fail("empty value"))


if __name__ == "__main__":
    unittest.main()
