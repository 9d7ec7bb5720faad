"""chaos-py's actions, natively: `python3 -m unittest` in this directory (with the SDK on
PYTHONPATH, as `make test` runs it). The same cases as the Rust chaos plugin's tests."""

import os
import time
import unittest

from burrow_plugin import Level, Message, Record, commit, fail, retry, testing

import plugin
from plugin import ACTION_HEADER, Trap, process


def act(action):
    return testing.run(process, Message("in", "payload", headers=[(ACTION_HEADER, action)]))


class ChaosTest(unittest.TestCase):
    def setUp(self):
        testing.reset()

    def fail_reason(self, action):
        outcome = act(action)
        self.assertEqual(outcome.kind, "fail", f"`{action}`: expected fail, got {outcome!r}")
        return outcome.reason

    def test_no_header_commits(self):
        self.assertEqual(testing.run(process, Message("in", "v")), commit())

    def test_commit_commits(self):
        self.assertEqual(act("commit"), commit())

    def test_fail_fails(self):
        self.assertEqual(act("fail"), fail("chaos: asked to fail"))

    def test_retry_retries_without_a_hint(self):
        self.assertEqual(act("retry"), retry())

    def test_retry_after_hints_its_delay(self):
        self.assertEqual(act("retry-after:250"), retry(0.25))

    def test_retry_then_commit_retries_n_attempts_then_commits(self):
        def msg(attempt):
            return Message(
                "in", "v", headers=[(ACTION_HEADER, "retry-then-commit:2")], attempt=attempt
            )

        outcomes = [testing.run(process, msg(attempt)) for attempt in (1, 2, 3)]
        self.assertEqual(outcomes, [retry(), retry(), commit()])

    def test_trap_raises_a_base_exception_the_sdk_does_not_catch(self):
        with self.assertRaises(Trap) as raised:
            act("trap")
        self.assertNotIsInstance(raised.exception, Exception)
        self.assertEqual(str(raised.exception), "chaos: asked to trap")

    def test_leak_keeps_the_memory_and_commits(self):
        before = sum(len(block) for block in plugin._leaked)
        self.assertEqual(act("leak:64"), commit())
        self.assertEqual(sum(len(block) for block in plugin._leaked) - before, 64 * 1024)

    def test_count_reports_the_messages_seen_this_one_included(self):
        first = int(self.fail_reason("count").removeprefix("count "))
        self.assertEqual(act("commit"), commit())
        self.assertEqual(self.fail_reason("count"), f"count {first + 2}")

    def test_sleep_busy_waits_then_commits(self):
        start = time.monotonic()
        self.assertEqual(act("sleep:20"), commit())
        self.assertGreaterEqual(time.monotonic() - start, 0.02)

    def test_block_sleeps_then_commits(self):
        start = time.monotonic()
        self.assertEqual(act("block:20"), commit())
        self.assertGreaterEqual(time.monotonic() - start, 0.02)

    def test_block_with_a_bad_number_fails_naming_the_action(self):
        self.assertEqual(
            self.fail_reason("block:forever"),
            "chaos: `block:forever`: bad number `forever`: invalid digit found in string",
        )

    def test_emit_sends_the_value_to_the_topic_and_commits(self):
        self.assertEqual(act("emit:out"), commit())
        self.assertEqual(testing.take_emitted(), [Record("out", "payload")])

    def test_log_logs_at_the_level_and_commits(self):
        self.assertEqual(act("log:warn:careful: colons kept"), commit())
        self.assertEqual(testing.take_logs(), [(Level.WARN, "careful: colons kept")])

    def test_log_with_an_unknown_level_fails(self):
        self.assertEqual(
            self.fail_reason("log:loud:x"), "chaos: `log:loud:x`: unknown log level `loud`"
        )

    def test_log_without_a_level_fails(self):
        self.assertEqual(
            self.fail_reason("log:quiet"), "chaos: `log:quiet`: expected log:LEVEL:TEXT"
        )

    def test_print_commits(self):
        self.assertEqual(act("print:hello from chaos-py"), commit())

    def test_read_file_reports_success_with_the_size(self):
        path = os.path.abspath(__file__)
        size = os.path.getsize(path)
        self.assertEqual(
            self.fail_reason(f"read-file:{path}"), f"read-file {path}: ok, {size} bytes"
        )

    def test_read_file_reports_the_io_error_as_rust_does(self):
        self.assertEqual(
            self.fail_reason("read-file:/no/such/file"),
            "read-file /no/such/file: error: No such file or directory (os error 2)",
        )

    def test_env_reports_set_and_unset(self):
        self.assertTrue(self.fail_reason("env:PATH").startswith("env PATH: set to "))
        self.assertEqual(
            self.fail_reason("env:BURROW_CHAOS_NEVER_SET"), "env BURROW_CHAOS_NEVER_SET: unset"
        )

    def test_config_reports_the_tenant_setting(self):
        testing.set_config("colour", "blue")
        self.assertEqual(self.fail_reason("config:colour"), "config colour = blue")
        self.assertEqual(self.fail_reason("config:size"), "config size = <none>")

    def test_unknown_actions_fail_naming_the_action(self):
        self.assertEqual(self.fail_reason("explode"), "chaos: unknown action `explode`")
        self.assertEqual(self.fail_reason("retry:5"), "chaos: unknown action `retry:5`")

    def test_malformed_numbers_fail_naming_the_action_as_rust_does(self):
        self.assertEqual(
            self.fail_reason("retry-after:soon"),
            "chaos: `retry-after:soon`: bad number `soon`: invalid digit found in string",
        )
        self.assertEqual(
            self.fail_reason("retry-after:"),
            "chaos: `retry-after:`: bad number ``: cannot parse integer from empty string",
        )
        self.assertEqual(
            self.fail_reason("retry-then-commit:4294967296"),
            "chaos: `retry-then-commit:4294967296`: bad number `4294967296`: "
            "number too large to fit in target type",
        )
        self.assertEqual(act("retry-after:+7"), retry(0.007))

    def test_a_non_utf8_action_fails(self):
        msg = Message("in", "v", headers=[(ACTION_HEADER, b"\xff")])
        outcome = testing.run(process, msg)
        self.assertEqual(outcome.kind, "fail")
        self.assertTrue(outcome.reason.startswith("chaos: burrow-action is not UTF-8"), outcome)


if __name__ == "__main__":
    unittest.main()
