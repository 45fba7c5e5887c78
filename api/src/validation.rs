//! Checks for the client text the API stores or searches by. PostgreSQL's
//! `text` holds any UTF-8 except U+0000, and refuses a whole statement that
//! carries one; so every such text is checked here, before it can reach a
//! statement (or a command a worker would store), and is refused as a 422
//! naming its field like any other invalid field.
//!
//! The OpenAPI document describes these checks with the schemas built here
//! from the same limits, so what it promises and what is checked agree.

use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

use crate::error::FieldError;

/// Characters of a show's name and venue, and of a customer's name.
pub const NAME_CHARS: usize = 200;
/// Characters of a section's name.
pub const SECTION_CHARS: usize = 100;
/// Characters of a row's label.
pub const ROW_CHARS: usize = 20;
/// Characters of a show's description.
pub const DESCRIPTION_CHARS: usize = 5000;
/// Characters of a show's category, and of each tag.
pub const CATEGORY_CHARS: usize = 50;
pub const TAG_CHARS: usize = 50;
/// Tags of a show.
pub const MAX_TAGS: usize = 20;
/// Characters of a venue's address.
pub const ADDRESS_CHARS: usize = 500;
/// Characters of a payment token.
pub const TOKEN_CHARS: usize = 255;

const NUL: &str = "must not contain the NUL character (U+0000)";

/// What `str::trim` strips (Unicode `White_Space`), as ranges, for the
/// document's pattern of a text that is not only whitespace.
const WHITESPACE: [(char, char); 10] = [
    ('\t', '\r'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];

/// `None` if PostgreSQL can store `value`, else why not, for `field`.
pub fn storable(field: impl Into<String>, value: &str) -> Option<FieldError> {
    value.contains('\0').then(|| FieldError::new(field, NUL))
}

/// A required text: 1 to `max` characters, not only whitespace, storable.
/// `value` as given: the document's limits count what the client sends.
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

/// The schema of what [`text`] accepts with at most `MAX` characters.
pub fn text_schema<const MAX: usize>() -> Object {
    text_of_type(MAX, Type::String)
}

/// [`text_schema`] for an optional field: null or absent is not given.
pub fn optional_text_schema<const MAX: usize>() -> Object {
    text_of_type(MAX, SchemaType::from_iter([Type::String, Type::Null]))
}

fn text_of_type(max: usize, schema_type: impl Into<SchemaType>) -> Object {
    ObjectBuilder::new()
        .schema_type(schema_type)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(text_pattern()))
        .build()
}

/// No NUL anywhere, and at least one character that is not whitespace.
fn text_pattern() -> String {
    let escape = |c: char| format!("\\u{:04X}", u32::from(c));
    let blank: String = WHITESPACE
        .iter()
        .map(|&(from, to)| {
            if from == to {
                escape(from)
            } else {
                format!("{}-{}", escape(from), escape(to))
            }
        })
        .collect();
    format!("^[^\\u0000]*[^\\u0000{blank}][^\\u0000]*$")
}

#[cfg(test)]
mod tests {
    use super::{storable, text, text_pattern, WHITESPACE};

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

    #[test]
    fn the_documents_whitespace_is_what_trim_strips() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let listed = WHITESPACE
                .iter()
                .any(|&(from, to)| (from..=to).contains(&c));
            assert_eq!(listed, c.is_whitespace(), "{c:?}");
        }
        assert_eq!(
            text_pattern(),
            "^[^\\u0000]*[^\\u0000\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000][^\\u0000]*$"
        );
    }
}
