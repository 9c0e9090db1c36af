//! Free text that Switchboard stores: subjects, bodies, reasons, notes,
//! display names, dispositions. Every such field is checked at the edge with
//! one rule, so nothing a backend refuses (PostgreSQL `text` rejects U+0000)
//! or a terminal misprints (escape sequences, other control characters)
//! ever gets past the API and poisons a consumer downstream.

use crate::error::Error;

/// Whether line breaks and tabs belong in a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// One line: a subject, a reason, a name. No control character at all.
    Line,
    /// Paragraphs: a body, notes. Tab, line feed and carriage return are
    /// allowed; every other control character is not.
    Paragraphs,
}

/// A field's rule: its kind and its longest length in bytes (UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    pub kind: TextKind,
    pub max_bytes: usize,
}

impl TextRule {
    pub const fn line(max_bytes: usize) -> TextRule {
        TextRule { kind: TextKind::Line, max_bytes }
    }

    pub const fn paragraphs(max_bytes: usize) -> TextRule {
        TextRule { kind: TextKind::Paragraphs, max_bytes }
    }

    /// Why `value` breaks the rule, if it does. Empty text is allowed;
    /// fields that require a value check that themselves.
    pub fn problem(self, value: &str) -> Option<String> {
        if value.len() > self.max_bytes {
            return Some(format!("must be at most {} bytes, got {}", self.max_bytes, value.len()));
        }
        let (index, character) = value.chars().enumerate().find(|(_, character)| !self.allows(*character))?;
        Some(format!(
            "must not contain control, line-separator, byte-order or direction-override characters (found U+{:04X} at \
             character {index})",
            u32::from(character)
        ))
    }

    /// Checks `value`, naming `field` in the error.
    pub fn check(self, field: &str, value: &str) -> Result<(), Error> {
        match self.problem(value) {
            Some(problem) => Err(Error::invalid_field(field, problem)),
            None => Ok(()),
        }
    }

    /// Whether the rule lets `character` stand in a field.
    pub fn allows(self, character: char) -> bool {
        if is_forbidden_anywhere(character) {
            return false;
        }
        // U+2028/U+2029 break lines as `\n` does (in JavaScript among
        // others), so a line refuses them and paragraphs keep them.
        let breaks_a_line = matches!(character, '\u{2028}' | '\u{2029}');
        match self.kind {
            TextKind::Line => !character.is_control() && !breaks_a_line,
            TextKind::Paragraphs => !character.is_control() || matches!(character, '\t' | '\n' | '\r') || breaks_a_line,
        }
    }
}

/// Characters no stored text may hold whatever its kind: the Unicode
/// noncharacters U+FFFE/U+FFFF, the byte order mark U+FEFF (invisible
/// inside text: a leftover of a file, or a way to make two equal-looking
/// values differ) and the bidirectional overrides that make a log line or
/// a desktop show something other than what is stored. (Other invisible
/// format characters stay: emoji sequences need U+200D, Persian U+200C.)
fn is_forbidden_anywhere(character: char) -> bool {
    matches!(
        character,
        '\u{FFFE}' | '\u{FFFF}' | '\u{FEFF}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Text from a source that cannot be refused (an event already on the bus,
/// written by an older release): control characters other than the
/// paragraph ones become U+FFFD, so a store never fails on it.
pub fn make_safe(value: &str) -> String {
    value
        .chars()
        .map(|character| if TextRule::paragraphs(usize::MAX).allows(character) { character } else { '\u{FFFD}' })
        .collect()
}

/// A name a caller chooses for a skill: 1-64 of `[a-z0-9_.-]`, starting
/// with a letter or digit. No path separators, no `..`, no spaces, so a
/// skill name is safe as a key and a label anywhere.
pub fn check_skill_name(field: &str, value: &str) -> Result<(), Error> {
    let problem = if value.is_empty() {
        Some("is required")
    } else if value.len() > 64 {
        Some("must be at most 64 characters")
    } else if !value.starts_with(|first: char| first.is_ascii_lowercase() || first.is_ascii_digit()) {
        Some("must start with a lowercase letter or a digit")
    } else if !value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')) {
        Some("may contain only a-z, 0-9, '_', '-' and '.'")
    } else if value.contains("..") {
        Some("must not contain '..'")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::invalid_field(field, problem)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_refuse_every_control_character() {
        let rule = TextRule::line(100);
        for bad in [
            "a\0b",
            "tab\there",
            "new\nline",
            "\u{1b}[31mred",
            "\u{85}next",
            "x\u{202E}y",
            "\u{FFFF}",
            "a\u{2028}b",
            "\u{FEFF}bom",
        ] {
            let error = rule.check("contact.subject", bad).expect_err(bad);
            assert_eq!(error.field_violations[0].field, "contact.subject");
        }
        assert!(rule.check("contact.subject", "Где мой заказ? 🙂").is_ok());
        assert!(rule.check("contact.subject", "").is_ok());
    }

    #[test]
    fn paragraphs_allow_line_breaks_and_tabs_only() {
        let rule = TextRule::paragraphs(100);
        assert!(rule.check("notes", "line one\r\n\tline two\u{2029}three").is_ok());
        assert!(rule.check("notes", "zero\u{FEFF}width").is_err());
        assert!(rule.check("notes", "bell\u{7}").is_err());
        assert!(rule.check("notes", "nul\0").is_err());
    }

    #[test]
    fn length_is_counted_in_bytes() {
        let rule = TextRule::line(4);
        assert!(rule.check("f", "abcd").is_ok());
        let error = rule.check("f", "ééé").expect_err("6 bytes");
        assert!(error.message.contains("at most 4 bytes"), "{}", error.message);
    }

    #[test]
    fn skill_names_are_plain_tokens() {
        for good in ["english", "tier-2", "billing.refunds", "l2_support", "1c"] {
            assert!(check_skill_name("skills[0].name", good).is_ok(), "{good}");
        }
        for bad in ["", "English", "../etc", "a..b", "with space", "nul\0", ".hidden", &"a".repeat(65)] {
            let error = check_skill_name("skills[0].name", bad).expect_err(bad);
            assert_eq!(error.field_violations[0].field, "skills[0].name", "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn accepted_text_holds_no_nul_and_safe_text_is_accepted(value in any::<String>()) {
            if TextRule::paragraphs(usize::MAX).check("f", &value).is_ok() {
                prop_assert!(!value.contains('\0'));
            }
            let safe = make_safe(&value);
            prop_assert!(TextRule::paragraphs(usize::MAX).check("f", &safe).is_ok());
            prop_assert_eq!(safe.chars().count(), value.chars().count());
        }
    }
}
