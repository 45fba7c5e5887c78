//! Checks for the client text the API stores or searches by. PostgreSQL's
//! `text` holds any UTF-8 except U+0000, and refuses a whole statement that
//! carries one; so every such text is checked here, before it can reach a
//! statement (or a command a worker would store), and is refused as a 422
//! naming its field like any other invalid field.

use crate::error::FieldError;

const NUL: &str = "must not contain the NUL character (U+0000)";

/// `None` if PostgreSQL can store `value`, else why not, for `field`.
pub fn storable(field: impl Into<String>, value: &str) -> Option<FieldError> {
    value.contains('\0').then(|| FieldError::new(field, NUL))
}

/// A required text: 1 to `max` characters, not only whitespace, storable.
pub fn text(field: impl Into<String>, value: &str, max: usize) -> Option<FieldError> {
    if value.trim().is_empty() || value.chars().count() > max {
        Some(FieldError::new(
            field,
            format!("must be 1 to {max} characters"),
        ))
    } else {
        storable(field, value)
    }
}

#[cfg(test)]
mod tests {
    use super::{storable, text};

    #[test]
    fn text_postgresql_can_store_passes() {
        assert!(storable("email", "ada@example.com").is_none());
        assert!(
            storable("email", "").is_none(),
            "emptiness is not its concern"
        );
        assert!(text("name", "Ada Lovelace", 200).is_none());
        assert!(text("name", "Zoë 🎫 \u{1}\u{7f}", 200).is_none());
        assert!(text("row", &"A".repeat(20), 20).is_none());
    }

    #[test]
    fn a_nul_anywhere_is_refused_naming_the_field() {
        for value in ["\0", "Ada\0", "\0Ada", "A\0da", "\u{0000}\u{0000}"] {
            let refused = storable("email", value).expect("refused");
            assert_eq!(refused.field, "email");
            assert!(refused.message.contains("NUL"), "{}", refused.message);
            let refused = text("sections[1].rows[0].row", value, 20).expect("refused");
            assert_eq!(refused.field, "sections[1].rows[0].row");
            assert!(refused.message.contains("NUL"), "{}", refused.message);
        }
    }

    #[test]
    fn blank_or_too_long_text_is_refused_with_its_bounds() {
        for value in ["", "   ", &"x".repeat(201)] {
            let refused = text("name", value, 200).expect("refused");
            assert_eq!(
                (refused.field.as_str(), refused.message.as_str()),
                ("name", "must be 1 to 200 characters")
            );
        }
        assert!(
            text("name", &"é".repeat(200), 200).is_none(),
            "counts characters, not bytes"
        );
    }
}
