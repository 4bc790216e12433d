//! Names people give things (calibration sets; rubric titles and ids): the one rule
//! for what a name may hold and the one normal form names are stored and compared
//! in. Pure: no IO. Must not know about stores, transports or metrics.
//!
//! The rule: NFC-normalised, then trimmed of white space; 1 to `MAX_NAME_CHARS`
//! characters; no control characters (Unicode Cc), no format characters (Cf, which
//! holds the zero-width and bidirectional-override characters that make two names look
//! alike or text render out of order), no line or paragraph separators (Zl, Zp), no
//! private-use characters (Co), and no `/` or `\`, so a name never reads as a path
//! (`../../etc/passwd` is refused) wherever it is later shown, logged or written.
//! Uniqueness is checked on the normal form, so `set-of-a ` and `set-of-a` are one
//! name, and `set-of-a\u{200b}` is refused rather than stored beside it.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The longest name, in characters (Unicode scalar values, after normalisation).
pub const MAX_NAME_CHARS: usize = 128;

/// Checks a name and returns its normal form (NFC, trimmed), or a message (for the
/// caller's field) that says what is wrong and how to fix it.
pub fn name(raw: &str) -> Result<String, String> {
    checked(raw, MAX_NAME_CHARS, true)
}

/// A display title (a rubric's `title`): the same rule with its own length limit and
/// `/` allowed ("Triage / safety"), since a title is shown, never used to find things.
pub fn title(raw: &str, max_chars: usize) -> Result<String, String> {
    checked(raw, max_chars, false)
}

fn checked(raw: &str, max_chars: usize, no_paths: bool) -> Result<String, String> {
    let normal = normal_form(raw);
    if normal.is_empty() {
        return Err("must not be empty (or only white space); give a name".to_owned());
    }
    let chars = normal.chars().count();
    if chars > max_chars {
        return Err(format!(
            "is {chars} characters long; at most {max_chars} are allowed: shorten it"
        ));
    }
    if let Some(c) = normal.chars().find(|c| refused(*c, no_paths).is_some()) {
        let why = refused(c, no_paths).unwrap_or("not allowed");
        return Err(format!(
            "holds U+{:04X} ({why}); names may hold letters, digits, spaces and punctuation other than `/` and `\\`: remove it",
            u32::from(c)
        ));
    }
    Ok(normal)
}

/// The form a name is compared in: NFC, trimmed. Total (never refuses), so names
/// stored before the rule existed can be compared with new ones.
pub fn normal_form(raw: &str) -> String {
    let nfc: String = raw.nfc().collect();
    nfc.trim().to_owned()
}

/// Why a character may not appear in a name, or None when it may.
fn refused(c: char, no_paths: bool) -> Option<&'static str> {
    if no_paths && matches!(c, '/' | '\\') {
        return Some("a path separator");
    }
    match c.general_category() {
        GeneralCategory::Control => Some("a control character"),
        GeneralCategory::Format => Some("an invisible format character"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("a line break")
        }
        GeneralCategory::PrivateUse => Some("a private-use character"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(raw: &str, expected: Result<&str, &str>) {
        let got = name(raw);
        match (&got, expected) {
            (Ok(n), Ok(want)) => assert_eq!(n, want, "raw: {raw:?}"),
            (Err(e), Err(fragment)) => {
                assert!(e.contains(fragment), "raw: {raw:?}: {e} lacks {fragment:?}");
            }
            _ => panic!("raw: {raw:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn names_table() {
        let long = "a".repeat(129);
        let longest = "é".repeat(128);
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("set-of-a", Ok("set-of-a")),
            // Trimmed before anything else: these are the same name.
            ("set-of-a ", Ok("set-of-a")),
            ("\t set-of-a\n", Ok("set-of-a")),
            // Inner spaces and ordinary punctuation are fine.
            (
                "Triage (2024): nurses' set #2",
                Ok("Triage (2024): nurses' set #2"),
            ),
            ("分诊 集", Ok("分诊 集")),
            // NFC: a decomposed é becomes the composed one.
            ("cafe\u{301}", Ok("caf\u{e9}")),
            // Zero-width and other format characters.
            (
                "set-of-a\u{200b}",
                Err("U+200B (an invisible format character)"),
            ),
            ("set\u{200d}of", Err("U+200D")),
            ("\u{feff}set", Err("U+FEFF")),
            ("set\u{202e}gnp.exe", Err("U+202E")),
            ("set\u{00ad}name", Err("U+00AD")),
            // Control characters (inner ones: outer white space is trimmed).
            ("set\u{0}a", Err("U+0000 (a control character)")),
            ("set\u{1b}[31ma", Err("U+001B")),
            ("a\nb", Err("U+000A")),
            ("a\u{2028}b", Err("a line break")),
            ("a\u{e000}b", Err("a private-use character")),
            // Paths.
            ("../../etc/passwd", Err("U+002F (a path separator)")),
            ("a\\b", Err("U+005C")),
            ("..", Ok("..")),
            // Empty and too long.
            ("", Err("must not be empty")),
            ("   ", Err("must not be empty")),
            (
                long.as_str(),
                Err("is 129 characters long; at most 128 are allowed"),
            ),
        ];
        for (raw, expected) in cases {
            check(raw, *expected);
        }
        // 128 two-byte characters are within the limit: it counts characters.
        check(&longest, Ok(&longest));
    }

    #[test]
    fn titles_allow_slashes_but_not_invisible_characters() {
        assert_eq!(
            title(" Triage / safety ", 500),
            Ok("Triage / safety".to_owned())
        );
        assert!(title("a\u{200b}b", 500).is_err());
        assert!(title(&"x".repeat(501), 500).is_err());
    }

    #[test]
    fn the_normal_form_never_refuses() {
        assert_eq!(normal_form(" cafe\u{301} "), "caf\u{e9}");
        assert_eq!(normal_form("a\u{200b}"), "a\u{200b}");
    }
}
