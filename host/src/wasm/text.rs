//! Text a plugin hands the host — `log` messages, `fail` reasons, lines of stdout and stderr —
//! made safe to log and to store: capped in length and escaped.
//!
//! A plugin is untrusted. Left raw, a 5 MiB fail reason lands in a dead-letter header the
//! producer cannot send, and a log message holding `\n2026-01-01T00:00:00Z INFO ...` forges a
//! host log line in text logs (JSON logs escape it themselves; text logs do not). So every such
//! string goes through [`plugin_text`] before it reaches `tracing` or leaves the WASM layer.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most bytes of plugin text kept (after escaping), per log message, fail reason or output
/// line; the marker saying how much was cut comes on top. Generous for any human-readable
/// message, small enough that a flood cannot bloat logs or dead-letter headers.
pub const MAX_PLUGIN_TEXT: usize = 4096;

/// `text` escaped and capped at [`MAX_PLUGIN_TEXT`] bytes. Borrowed when nothing needed doing,
/// which is the common case.
pub(crate) fn plugin_text(text: &str) -> Cow<'_, str> {
    capped_escaped(text, MAX_PLUGIN_TEXT)
}

/// Escapes what could break a log line, then keeps at most `max` bytes, cut on a character
/// boundary (never inside an escape), followed by `… [N bytes cut]` where N counts bytes of the
/// *original* text that were left out.
///
/// Escaped: backslash (`\\`, so an escape in the output is never ambiguous with one the plugin
/// wrote), control characters (`\n`, `\r`, `\t`, others as `\u{1b}`), the Unicode line and
/// paragraph separators and the bidirectional overrides (which can make a line read as
/// something else in a terminal). Everything else, including non-ASCII letters, is kept as is.
fn capped_escaped(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max && !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max) + 32);
    for (at, c) in text.char_indices() {
        let before = out.len();
        push_escaped(&mut out, c);
        if out.len() > max {
            out.truncate(before);
            let cut = text.len() - at;
            // Writing to a String cannot fail.
            let _ = write!(out, "… [{cut} bytes cut]");
            return Cow::Owned(out);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            let _ = write!(out, "{}", c.escape_unicode());
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        let text = "disk nearly full: 93 % — ça déborde";
        assert!(matches!(plugin_text(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn newlines_and_control_characters_cannot_start_a_new_line() {
        assert_eq!(
            plugin_text("ok\n2026-01-01T00:00:00Z  INFO forged\r\x1b[31m\ttab"),
            "ok\\n2026-01-01T00:00:00Z  INFO forged\\r\\u{1b}[31m\\ttab"
        );
        assert_eq!(plugin_text("a\u{2028}b\u{202e}c"), "a\\u{2028}b\\u{202e}c");
    }

    #[test]
    fn a_backslash_is_escaped_so_escapes_stay_unambiguous() {
        assert_eq!(plugin_text(r"a\nb"), r"a\\nb");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_saying_how_much_was_cut() {
        // 3000 two-byte characters: 6000 bytes; 2048 fit in 4096 bytes.
        let text = "é".repeat(3000);
        let capped = plugin_text(&text);
        assert_eq!(capped, format!("{}… [1904 bytes cut]", "é".repeat(2048)));
    }

    #[test]
    fn an_escape_is_never_split_by_the_cut() {
        let text = format!("{}\n and more", "x".repeat(4095));
        assert_eq!(
            capped_escaped(&text, 4096),
            format!("{}… [10 bytes cut]", "x".repeat(4095))
        );
    }

    #[test]
    fn text_exactly_at_the_cap_is_kept_whole() {
        let text = "x".repeat(MAX_PLUGIN_TEXT);
        assert_eq!(plugin_text(&text), text);
    }
}
