"""The Python SDK natively: `python3 -m unittest discover -s tests` in plugin-sdk/python."""

import datetime
import pathlib
import unittest

from burrow_plugin import (
    Fail,
    Level,
    Message,
    Record,
    Retry,
    commit,
    config,
    emit,
    fail,
    forward,
    log,
    retry,
    testing,
)
from burrow_plugin.outcome import delay_millis


class RunTest(unittest.TestCase):
    """How `process`'s return value or exception becomes the outcome the host sees."""

    def setUp(self):
        testing.reset()

    def run_on(self, process):
        return testing.run(process, Message("in", "v"))

    def test_returning_none_commits(self):
        self.assertEqual(self.run_on(lambda msg: None), commit())

    def test_a_returned_outcome_is_used(self):
        self.assertEqual(self.run_on(lambda msg: retry(1.5)), retry(1.5))
        self.assertEqual(self.run_on(lambda msg: fail("no")), fail("no"))

    def test_raising_fail_fails_with_its_reason(self):
        def process(msg):
            raise Fail("bad input")

        self.assertEqual(self.run_on(process), fail("bad input"))

    def test_raising_retry_retries_and_logs_its_reason(self):
        def plain(msg):
            raise Retry()

        def hinted(msg):
            raise Retry(0.5, reason="database busy")

        self.assertEqual(self.run_on(plain), retry())
        self.assertEqual(testing.take_logs(), [])
        self.assertEqual(self.run_on(hinted), retry(0.5))
        self.assertEqual(testing.take_logs(), [(Level.WARN, "retrying: database busy")])

    def test_any_other_exception_fails_naming_type_text_and_place(self):
        def process(msg):
            return {"a": 1}["missing"]

        reason = self.run_on(process).reason
        self.assertRegex(reason, r"^KeyError: 'missing' \(at test_sdk\.py:\d+ in process\)$")

    def test_the_place_is_the_last_frame_and_non_builtin_types_are_qualified(self):
        reason = self.run_on(lambda msg: msg.json()).reason
        self.assertTrue(
            reason.startswith("json.decoder.JSONDecodeError: Expecting value: line 1 column 1"),
            reason,
        )
        self.assertRegex(reason, r"\(at decoder\.py:\d+ in raw_decode\)$")

    def test_explicit_causes_are_chained_like_rust_sources(self):
        def process(msg):
            try:
                int("x")
            except ValueError as err:
                raise RuntimeError("loading rules") from err

        reason = self.run_on(process).reason
        self.assertTrue(
            reason.startswith(
                "RuntimeError: loading rules: "
                "ValueError: invalid literal for int() with base 10: 'x' (at "
            ),
            reason,
        )

    def test_a_long_exception_text_is_bounded_and_keeps_the_place(self):
        def process(msg):
            raise ValueError("x" * 100_000)

        reason = self.run_on(process).reason
        self.assertLess(len(reason), 1200)
        self.assertIn("x…", reason)
        self.assertRegex(reason, r"\(at test_sdk\.py:\d+ in process\)$")

    def test_an_exception_without_text_is_named(self):
        def process(msg):
            raise ValueError

        self.assertRegex(self.run_on(process).reason, r"^ValueError \(at ")

    def test_returning_something_else_fails_naming_its_type(self):
        reason = self.run_on(lambda msg: True).reason
        self.assertTrue(reason.startswith("TypeError: process returned bool"), reason)

    def test_a_bad_retry_delay_fails_the_message(self):
        reason = self.run_on(lambda msg: retry(-1)).reason
        self.assertTrue(reason.startswith("ValueError: a retry delay must be"), reason)

    def test_a_base_exception_is_not_caught(self):
        def process(msg):
            raise SystemExit(3)

        with self.assertRaises(SystemExit):
            self.run_on(process)

    def test_a_batch_gives_each_message_what_it_would_get_alone(self):
        def process(msg):
            text = msg.text()
            if text == "fail":
                raise Fail("asked")
            emit("out", text.upper())
            log.info(text)
            return None

        messages = [Message("in", v, offset=i) for i, v in enumerate(["a", "fail", "b"])]
        self.assertEqual(
            testing.run_batch(process, messages), [commit(), fail("asked"), commit()]
        )
        self.assertEqual(testing.take_emitted(), [Record("out", "A"), Record("out", "B")])
        self.assertEqual(testing.take_logs(), [(Level.INFO, "a"), (Level.INFO, "b")])


class OutcomeTest(unittest.TestCase):
    def test_delay_millis_rounds_up_from_nanoseconds_and_saturates(self):
        self.assertEqual(delay_millis(0), 0)
        self.assertEqual(delay_millis(0.000001), 1)
        self.assertEqual(delay_millis(0.25), 250)
        self.assertEqual(delay_millis(0.07), 70)  # 0.07 * 1000 is 70.00000000000001
        self.assertEqual(delay_millis(1e30), 2**64 - 1)
        self.assertEqual(delay_millis(float("inf")), 2**64 - 1)

    def test_a_delay_may_be_a_timedelta(self):
        self.assertEqual(retry(datetime.timedelta(milliseconds=1500)), retry(1.5))

    def test_negative_nan_and_non_numeric_delays_are_rejected(self):
        for bad in (-0.5, float("nan")):
            with self.assertRaises(ValueError):
                retry(bad)
        with self.assertRaises(TypeError):
            Retry("soon")

    def test_outcomes_print_as_their_constructors(self):
        self.assertEqual(
            [repr(o) for o in (commit(), retry(), retry(2), fail("x"))],
            ["commit()", "retry()", "retry(2)", "fail('x')"],
        )


class MessageTest(unittest.TestCase):
    def test_a_new_message_is_a_first_delivery(self):
        msg = Message("t", "v")
        self.assertEqual((msg.attempt, msg.partition, msg.offset), (1, 0, 0))
        self.assertEqual((msg.key, msg.value, msg.headers, msg.timestamp), (None, b"v", [], None))

    def test_header_returns_the_last_value_of_a_repeated_name(self):
        msg = Message("t", "v", headers=[("a", "1"), ("b", b"x"), ("a", b"2")])
        self.assertEqual(msg.header("a"), b"2")
        self.assertIsNone(msg.header("missing"))

    def test_header_str_tells_absent_from_not_utf8(self):
        msg = Message("t", "v", headers=[("bin", b"\xff\xfe")])
        self.assertIsNone(msg.header_str("absent"))
        with self.assertRaises(UnicodeDecodeError):
            msg.header_str("bin")

    def test_value_and_key_as_text(self):
        msg = Message("t", "héllo", key="k")
        self.assertEqual((msg.text(), msg.value_str(), msg.key_str()), ("héllo", "héllo", "k"))
        self.assertIsNone(Message("t", "v").key_str())
        with self.assertRaises(UnicodeDecodeError):
            Message("t", b"\xc3").text()

    def test_json_parses_the_value(self):
        self.assertEqual(Message("t", '{"id": 7}').json(), {"id": 7})

    def test_values_must_be_bytes_or_str(self):
        with self.assertRaises(TypeError):
            Message("t", 7)


class HostTest(unittest.TestCase):
    def setUp(self):
        testing.reset()

    def test_emit_encodes_text_and_keeps_key_and_headers(self):
        emit("out", "v", key="k", headers=[("h", "1")])
        self.assertEqual(
            testing.take_emitted(), [Record("out", b"v", key=b"k", headers=[("h", b"1")])]
        )
        self.assertEqual(testing.take_emitted(), [])

    def test_forward_keeps_key_value_and_headers(self):
        msg = Message("in", "v", key="k", headers=[("h", "1")])
        forward("out", msg)
        self.assertEqual(testing.take_emitted(), [Record("out", "v", "k", [("h", "1")])])

    def test_config_serves_what_the_test_set(self):
        testing.set_config("colour", "blue")
        self.assertEqual(config("colour"), "blue")
        self.assertIsNone(config("size"))
        testing.remove_config("colour")
        self.assertIsNone(config("colour"))
        testing.set_config("colour", "red")
        testing.reset()
        self.assertIsNone(config("colour"))

    def test_log_levels_by_function_enum_or_name(self):
        log.trace("t")
        log.debug("d")
        log.info("i")
        log.warn("w")
        log.error("e")
        log.log(Level.INFO, "by enum")
        log.log("warn", "by name")
        self.assertEqual(
            testing.take_logs(),
            [
                (Level.TRACE, "t"),
                (Level.DEBUG, "d"),
                (Level.INFO, "i"),
                (Level.WARN, "w"),
                (Level.ERROR, "e"),
                (Level.INFO, "by enum"),
                (Level.WARN, "by name"),
            ],
        )
        with self.assertRaises(ValueError):
            log.log("loud", "x")


if __name__ == "__main__":
    unittest.main()


class FrameTest(unittest.TestCase):
    """The batch frame the host sends, read by the SDK: the golden frame the Rust writer makes
    (`frame/tests/golden.frame`, checked by `burrow-frame`'s tests) reads as the messages it
    was made of."""

    GOLDEN = pathlib.Path(__file__).resolve().parents[3] / "frame" / "tests" / "golden.frame"

    def test_the_golden_frame_reads_as_its_messages(self):
        from burrow_plugin import _frame

        messages = _frame.messages(self.GOLDEN.read_bytes())
        self.assertEqual(
            messages,
            [
                Message(
                    "orders",
                    b'{"id":1}',
                    key=b"k1",
                    headers=[("trace", b"abc"), ("trace", b"def"), ("empty", b"")],
                    partition=3,
                    offset=42,
                    timestamp=1_700_000_000_123,
                    attempt=1,
                ),
                Message("orders", b"", partition=3, offset=43, attempt=2),
                Message(
                    "payments-é",
                    bytes([0, 159, 146, 150, 255]),
                    key=b"",
                    headers=[("bin", bytes([0xFF, 0x00]))],
                    partition=-1,
                    offset=2**63 - 1,
                    timestamp=-5,
                    attempt=2**32 - 1,
                ),
            ],
        )
        self.assertEqual(messages[0].header_str("trace"), "def")
        self.assertEqual(messages[0].json(), {"id": 1})

    def test_a_message_read_from_a_frame_can_be_changed(self):
        from burrow_plugin import _frame

        msg = _frame.messages(self.GOLDEN.read_bytes())[0]
        msg.value = b"changed"
        self.assertEqual(msg.value, b"changed")
        self.assertEqual(msg.key, b"k1")

    def test_a_frame_whose_index_does_not_fit_is_refused(self):
        from burrow_plugin import _frame

        with self.assertRaises(ValueError):
            _frame.messages((1000).to_bytes(4, "little") + bytes(10))
