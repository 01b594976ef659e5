//! Turning what a cashier typed into canonical values, or a validation error
//! that names the field. Each function is the single definition of its rule:
//! the store, the CSV import and (later) the server all call these.

use email_address::{EmailAddress, Options};
use phonenumber::{country, Mode};
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// Longest name kept, in characters.
pub const NAME_MAX: usize = 100;
/// Longest phone number accepted as typed, in characters.
pub const PHONE_MAX: usize = 32;
/// Longest email address (RFC 5321 path limit).
pub const EMAIL_MAX: usize = 254;
/// Longest address field, in characters.
pub const ADDRESS_FIELD_MAX: usize = 200;
/// Longest notes, in characters.
pub const NOTES_MAX: usize = 4_000;
/// Longest tag, in characters, and most tags per customer.
pub const TAG_MAX: usize = 40;
/// Most tags one customer carries.
pub const TAGS_MAX: usize = 50;

/// A phone number as typed and in canonical E.164 form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPhone {
    /// As typed, trimmed.
    pub raw: String,
    /// E.164, e.g. `+919876543210`.
    pub e164: String,
}

/// NFC, trimmed, inner whitespace collapsed to single spaces, control
/// characters refused.
fn clean(field: &str, value: &str, max: usize) -> Result<String> {
    if value.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(Error::invalid(field, "contains control characters"));
    }
    let text = value
        .nfc()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if text.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("longer than {max} characters"),
        ));
    }
    Ok(text)
}

/// A person's name: 1 to [`NAME_MAX`] characters after cleaning.
pub fn name(value: &str) -> Result<String> {
    let visible: String = value.chars().filter(|c| !is_invisible(*c)).collect();
    let text = clean("name", &visible, NAME_MAX)?;
    if !text.chars().any(char::is_alphanumeric) {
        return Err(Error::invalid("name", "is empty"));
    }
    Ok(text)
}

/// Invisible format characters that carry nothing in a name: zero-width
/// space, word joiner, BOM, soft hyphen, bidi marks and overrides. (ZWJ and
/// ZWNJ stay: Indic and Persian spellings need them.)
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{180E}' | '\u{200B}' | '\u{200E}' | '\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}')
}

/// The ASCII digit of a Unicode decimal digit of the common scripts
/// (Arabic-Indic, Devanagari to Malayalam, Thai, full-width, ...).
fn ascii_digit(c: char) -> char {
    const ZEROS: [u32; 18] = [
        0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
        0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0xFF10,
    ];
    let n = c as u32;
    ZEROS
        .iter()
        .find(|&&z| (z..z + 10).contains(&n))
        .and_then(|&z| char::from_digit(n - z, 10))
        .unwrap_or(c)
}

/// The key names sort by: folded to lower-case ASCII as search folds them,
/// so `asha` sits beside `Asha` and `Élodie` beside `Elodie`, not after
/// `Zoya` (schema v12 re-keys names stored before).
pub fn name_key(name: &str) -> String {
    crate::search::query::fold(name)
}

/// A bounded free-text field (address parts, notes); may be empty.
pub fn text(field: &str, value: &str, max: usize) -> Result<String> {
    clean(field, value, max)
}

/// A phone number in any common format, read in `region` when it has no
/// country code. Invalid numbers (wrong length for the country, ...) fail.
pub fn phone(value: &str, region: country::Id) -> Result<CanonicalPhone> {
    let raw = value.trim();
    if raw.chars().any(char::is_alphabetic) {
        // The parser reads letters as keypad digits: "4321O" would be 43216.
        return Err(Error::invalid("phone", "contains letters"));
    }
    if raw.is_empty() {
        return Err(Error::invalid("phone", "is empty"));
    }
    if raw.chars().count() > PHONE_MAX {
        return Err(Error::invalid(
            "phone",
            format!("longer than {PHONE_MAX} characters"),
        ));
    }
    let digits: String = raw.chars().map(ascii_digit).collect();
    let parsed = phonenumber::parse(Some(region), &digits)
        .ok()
        .filter(|p| p.is_valid())
        .or_else(|| as_national(&digits, region))
        .ok_or_else(|| Error::invalid("phone", "is not a valid phone number for its country"))?;
    Ok(CanonicalPhone {
        raw: raw.to_owned(),
        e164: parsed.format().mode(Mode::E164).to_string(),
    })
}

/// Reads `raw` as a national number of `region` when the parser took its
/// leading digits for a country code: in India "91234 56789" is a mobile
/// number, not +91 followed by an invalid "234 56789".
fn as_national(raw: &str, region: country::Id) -> Option<phonenumber::PhoneNumber> {
    if raw.starts_with('+') || raw.starts_with("00") {
        return None;
    }
    let code = phonenumber::metadata::DATABASE
        .by_id(region.as_ref())?
        .country_code();
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    phonenumber::parse(None, format!("+{code}{digits}"))
        .ok()
        .filter(|p| p.is_valid())
}

/// An email address, trimmed; canonical form lower-cased. Requires a dotted
/// domain and refuses display text and IP literals: a till wants mailboxes.
pub fn email(value: &str) -> Result<(String, String)> {
    let raw = value.trim();
    if raw.is_empty() {
        return Err(Error::invalid("email", "is empty"));
    }
    if raw.len() > EMAIL_MAX {
        return Err(Error::invalid(
            "email",
            format!("longer than {EMAIL_MAX} bytes"),
        ));
    }
    let options = Options::default()
        .with_required_tld()
        .without_domain_literal()
        .without_display_text();
    EmailAddress::parse_with_options(raw, options)
        .map_err(|_| Error::invalid("email", "is not an email address"))?;
    Ok((raw.to_owned(), raw.to_lowercase()))
}

/// Tags: cleaned, lower-cased, de-duplicated and sorted, so tags compare as sets.
pub fn tags<S: AsRef<str>>(values: &[S]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let tag = clean("tags", value.as_ref(), TAG_MAX)?.to_lowercase();
        if tag.chars().count() > TAG_MAX {
            return Err(Error::invalid(
                "tags",
                format!("longer than {TAG_MAX} characters"),
            ));
        }
        if tag.is_empty() {
            return Err(Error::invalid("tags", "contains an empty tag"));
        }
        out.push(tag);
    }
    out.sort();
    out.dedup();
    if out.len() > TAGS_MAX {
        return Err(Error::invalid("tags", format!("more than {TAGS_MAX} tags")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: Error) -> String {
        match err {
            Error::Validation { field, .. } => field,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn phones_in_any_format_share_one_canonical_form() {
        for typed in [
            "98765 43210",
            "+91 98765 43210",
            "(0)98765-43210",
            "098765-43210",
            "+919876543210",
            "0091 98765 43210",
        ] {
            let p = phone(typed, country::Id::IN).expect(typed);
            assert_eq!(p.e164, "+919876543210", "{typed}");
            assert_eq!(p.raw, typed.trim());
        }
        // National numbers that begin with the country code's digits.
        for (typed, e164) in [
            ("91234 56789", "+919123456789"),
            ("91765-43210", "+919176543210"),
        ] {
            assert_eq!(
                phone(typed, country::Id::IN).expect(typed).e164,
                e164,
                "{typed}"
            );
        }
        let us = phone("(415) 555-2671", country::Id::US).expect("us");
        assert_eq!(us.e164, "+14155552671");
    }

    #[test]
    fn malformed_phones_name_the_field() {
        for bad in [
            "",
            "  ",
            "12",
            "hello",
            "98765",
            "+91 12345 678901234567890123456789",
        ] {
            assert_eq!(
                field_of(phone(bad, country::Id::IN).expect_err(bad)),
                "phone",
                "{bad}"
            );
        }
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        let (raw, canonical) = email("  Asha.Rao@Example.COM ").expect("email");
        assert_eq!(raw, "Asha.Rao@Example.COM");
        assert_eq!(canonical, "asha.rao@example.com");
        for bad in [
            "",
            "asha",
            "asha@",
            "@example.com",
            "asha@localhost",
            "a b@example.com",
            "Asha <a@b.com>",
        ] {
            assert_eq!(field_of(email(bad).expect_err(bad)), "email", "{bad}");
        }
    }

    #[test]
    fn names_are_cleaned_and_bounded() {
        assert_eq!(name("  Asha \t  Rao \n").expect("name"), "Asha Rao");
        // NFC: a decomposed é becomes one character.
        assert_eq!(name("Jose\u{301}").expect("nfc"), "Jos\u{e9}");
        assert_eq!(
            name(&"x".repeat(NAME_MAX)).expect("max").chars().count(),
            NAME_MAX
        );
        for bad in [
            "".to_string(),
            "   ".to_string(),
            "x".repeat(NAME_MAX + 1),
            "a\u{0}b".to_string(),
        ] {
            assert_eq!(field_of(name(&bad).expect_err("bad name")), "name");
        }
    }

    #[test]
    fn tags_are_a_sorted_set() {
        assert_eq!(
            tags(&["VIP", "wholesale", " vip "]).expect("tags"),
            vec!["vip", "wholesale"]
        );
        assert!(tags(&[""]).is_err());
        let many: Vec<String> = (0..=TAGS_MAX).map(|i| format!("t{i}")).collect();
        assert!(tags(&many).is_err());
    }
}
