//! What a cashier typed, made safe, and the one judge of whether (and how)
//! a customer matches it.
//!
//! User text never reaches a query parser: it is capped ([`QUERY_MAX_CHARS`],
//! [`TERMS_MAX`], [`TERM_MAX_BYTES`]), folded (lower case, accents and
//! scripts transliterated to ASCII by `deunicode`, so `José` is `jose` and
//! `王伟` is `wang wei`) and split into alphanumeric terms by this module.
//! Every index is written with the same folding, and every candidate any
//! index returns is judged again here against the row read from SQLite, so
//! the `matched` explanation and the rank never depend on which index found
//! the customer.

use std::cmp::Ordering;

use rphonetic::DoubleMetaphone;

/// Characters of a query looked at; the rest is ignored.
pub(crate) const QUERY_MAX_CHARS: usize = 128;
/// Terms of a query looked at; the rest are ignored.
pub(crate) const TERMS_MAX: usize = 8;
/// Longest term kept, in bytes of folded ASCII; longer terms are cut.
pub(crate) const TERM_MAX_BYTES: usize = 32;
/// Fewest digits that make a phone fragment ("any 4 or more consecutive digits").
pub(crate) const PHONE_FRAGMENT_MIN: usize = 4;
/// Longest stretch of notes a customer's notes are matched on, in bytes.
const NOTES_MAX_BYTES: usize = 1_000;

/// Which field of a customer a query matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchField {
    /// The name.
    Name,
    /// The phone number (as typed or canonical).
    Phone,
    /// The customer number.
    Number,
    /// The email address.
    Email,
    /// The notes.
    Notes,
}

/// How a query term matched, best first: results rank in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchKind {
    /// The whole word, number or address.
    Exact,
    /// The start of a word or number (search as you type).
    Prefix,
    /// A stretch inside a phone or customer number (digit fragments).
    Partial,
    /// Within 1 edit (words of 4+ letters) or 2 (8+), a transposition counting as one.
    Fuzzy,
    /// Sounds alike (Double Metaphone).
    Phonetic,
}

impl MatchKind {
    /// The weight of one term matched this way; gaps of 10x keep an exact
    /// term above any number of weaker ones in queries of up to 8 terms.
    fn weight(self) -> u32 {
        match self {
            MatchKind::Exact => 100_000,
            MatchKind::Prefix => 10_000,
            MatchKind::Partial => 1_000,
            MatchKind::Fuzzy => 100,
            MatchKind::Phonetic => 10,
        }
    }
}

/// One reason a customer was returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Match {
    /// The field that matched.
    pub field: MatchField,
    /// How it matched.
    pub kind: MatchKind,
}

/// A term of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Term {
    /// Letters (and maybe digits), folded: matched against names, emails,
    /// notes and customer numbers.
    Word {
        text: String,
        /// Double Metaphone codes, lower case; empty for terms with digits.
        phonetic: Vec<String>,
    },
    /// Only digits: matched against phones and customer numbers. `variants`
    /// holds the digits with leading zeros (trunk or international prefix)
    /// dropped, when that leaves at least [`PHONE_FRAGMENT_MIN`] digits.
    Digits { text: String, variants: Vec<String> },
}

impl Term {
    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        match self {
            Term::Word { text, .. } | Term::Digits { text, .. } => text,
        }
    }
}

/// A query made safe: at most [`TERMS_MAX`] terms of plain ASCII.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Query {
    pub terms: Vec<Term>,
}

/// Lower case ASCII transliteration: `José` -> `jose`.
pub(crate) fn fold(text: &str) -> String {
    deunicode::deunicode(text).to_ascii_lowercase()
}

/// The folded alphanumeric words of `text`, each cut to [`TERM_MAX_BYTES`].
pub(crate) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    // Called on stored values too; folding is per call so the closure owns it.
    let folded = fold(text);
    folded
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w[..w.len().min(TERM_MAX_BYTES)].to_owned())
        .collect::<Vec<_>>()
        .into_iter()
}

/// The digits of `text`, in order.
pub(crate) fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// Double Metaphone codes of a word, lower case, primary first.
pub(crate) fn phonetic(word: &str) -> Vec<String> {
    if word.len() < 2 || !word.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Vec::new();
    }
    let result = DoubleMetaphone::default().double_metaphone(word);
    let mut codes = vec![result.primary().to_ascii_lowercase()];
    let alternate = result.alternate().to_ascii_lowercase();
    if alternate != codes[0] {
        codes.push(alternate);
    }
    codes.retain(|c| !c.is_empty());
    codes
}

/// True for text made only of what people type in phone numbers.
fn looks_like_phone(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_digit() || c.is_whitespace() || "+-().,/".contains(c))
        && digits(text).len() >= PHONE_FRAGMENT_MIN
}

fn digits_term(text: String) -> Term {
    let stripped = text.trim_start_matches('0');
    let variants = if stripped.len() != text.len() && stripped.len() >= PHONE_FRAGMENT_MIN {
        vec![stripped.to_owned()]
    } else {
        Vec::new()
    };
    Term::Digits { text, variants }
}

impl Query {
    /// Parses anything a user can type; never fails, never grows past the caps.
    pub(crate) fn parse(input: &str) -> Query {
        let capped: String = input.chars().take(QUERY_MAX_CHARS).collect();
        if looks_like_phone(&capped) {
            // "98765 432", "+91 98765", "(0)98765-43210": one run of digits.
            let mut all = digits(&capped);
            all.truncate(TERM_MAX_BYTES);
            return Query {
                terms: vec![digits_term(all)],
            };
        }
        let mut terms: Vec<Term> = Vec::new();
        for word in words(&capped) {
            if terms.len() == TERMS_MAX {
                break;
            }
            let term = if word.bytes().all(|b| b.is_ascii_digit()) {
                digits_term(word)
            } else {
                Term::Word {
                    phonetic: phonetic(&word),
                    text: word,
                }
            };
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        Query { terms }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The word terms (what the ranked index and the name fallback look for).
    pub(crate) fn words(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.terms.iter().filter_map(|t| match t {
            Term::Word { text, phonetic } => Some((text.as_str(), phonetic.as_slice())),
            Term::Digits { .. } => None,
        })
    }
}

/// The most edits a word of `len` bytes may be away from a query term.
pub(crate) fn max_edits(len: usize) -> u8 {
    match len {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// Optimal string alignment distance (Levenshtein plus adjacent
/// transpositions as one edit), or `None` when it exceeds `max`.
pub(crate) fn edits_within(a: &str, b: &str, max: u8) -> Option<u8> {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let max = usize::from(max);
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let width = b.len() + 1;
    let mut rows = vec![vec![0usize; width]; a.len() + 1];
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        rows[i][0] = i;
        let mut row_min = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
            row_min = row_min.min(d);
        }
        if row_min > max {
            return None;
        }
    }
    let d = rows[a.len()][b.len()];
    (d <= max).then(|| u8::try_from(d).unwrap_or(u8::MAX))
}

/// How a word term matches one word of a field, if at all.
fn word_kind(term: &str, phonetic_codes: &[String], word: &str, typos: bool) -> Option<MatchKind> {
    if word == term {
        return Some(MatchKind::Exact);
    }
    if word.starts_with(term) {
        return Some(MatchKind::Prefix);
    }
    if !typos {
        return None;
    }
    let allowed = max_edits(term.len());
    if allowed > 0 && edits_within(term, word, allowed).is_some() {
        return Some(MatchKind::Fuzzy);
    }
    if !phonetic_codes.is_empty() {
        let codes = phonetic(word);
        if codes.iter().any(|c| phonetic_codes.contains(c)) {
            return Some(MatchKind::Phonetic);
        }
    }
    None
}

/// The searchable text of a customer, folded once.
#[derive(Debug)]
pub(crate) struct Fields {
    name: Vec<String>,
    email: Vec<String>,
    notes: Vec<String>,
    number: Vec<String>,
    number_tail: String,
    phones: Vec<String>,
}

impl Fields {
    /// The fields from the stored values a search reads: the name, the
    /// canonical email, notes, the customer number and the phone as typed
    /// and canonical (see `search::judge_candidates`, which reads only these
    /// columns rather than whole customer rows).
    pub(crate) fn from_parts(
        name: &str,
        email: Option<&str>,
        notes: &str,
        number: &str,
        phone: Option<(&str, &str)>,
    ) -> Fields {
        let notes_end = notes
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| i >= NOTES_MAX_BYTES)
            .unwrap_or(notes.len());
        Fields {
            name: words(name).collect(),
            email: email.map(|e| words(e).collect()).unwrap_or_default(),
            notes: words(&notes[..notes_end]).collect(),
            number: words(number).collect(),
            number_tail: number_tail(number).to_owned(),
            phones: phone
                .map(|(raw, e164)| vec![digits(e164), digits(raw)])
                .unwrap_or_default(),
        }
    }
}

/// The digits at the end of a customer number: `000042` of `S01-T03-C000042`.
pub(crate) fn number_tail(number: &str) -> &str {
    let start = number
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit())
        .last()
        .map_or(number.len(), |(i, _)| i);
    &number[start..]
}

/// How a query matched one customer: the best match of every term, and the
/// rank score built from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Judgement {
    pub matched: Vec<Match>,
    pub score: u32,
}

/// Judges `customer` against `query`: `None` unless every term matches.
pub(crate) fn judge(query: &Query, fields: &Fields) -> Option<Judgement> {
    let mut matched: Vec<Match> = Vec::new();
    let mut score = 0u32;
    for term in &query.terms {
        let best = match term {
            Term::Word { text, phonetic } => best_word(text, phonetic, fields),
            Term::Digits { text, variants } => best_digits(text, variants, fields),
        }?;
        let weight = match best.field {
            // A note mentioning a name must not outrank the person: notes
            // count a tenth.
            MatchField::Notes => best.kind.weight() / 10,
            _ => best.kind.weight(),
        };
        score = score.saturating_add(weight);
        if !matched.contains(&best) {
            matched.push(best);
        }
    }
    if matched.is_empty() {
        return None;
    }
    matched.sort_by(|a, b| a.kind.cmp(&b.kind).then(a.field.cmp(&b.field)));
    Some(Judgement { matched, score })
}

fn better(a: Option<Match>, b: Match) -> Option<Match> {
    match a {
        Some(a) if a.kind.cmp(&b.kind) != Ordering::Greater => Some(a),
        _ => Some(b),
    }
}

fn best_word(term: &str, codes: &[String], f: &Fields) -> Option<Match> {
    let mut best = None;
    for (field, words, typos) in [
        (MatchField::Name, &f.name, true),
        (MatchField::Email, &f.email, true),
        (MatchField::Number, &f.number, false),
        (MatchField::Notes, &f.notes, false),
    ] {
        for word in words {
            if let Some(kind) = word_kind(term, codes, word, typos) {
                best = better(best, Match { field, kind });
                if kind == MatchKind::Exact && field == MatchField::Name {
                    return best;
                }
            }
        }
    }
    best
}

fn best_digits(term: &str, variants: &[String], f: &Fields) -> Option<Match> {
    let mut best = None;
    for digits in std::iter::once(term).chain(variants.iter().map(String::as_str)) {
        for phone in &f.phones {
            let kind = if phone == digits {
                Some(MatchKind::Exact)
            } else if digits.len() >= PHONE_FRAGMENT_MIN && phone.starts_with(digits) {
                Some(MatchKind::Prefix)
            } else if digits.len() >= PHONE_FRAGMENT_MIN && phone.contains(digits) {
                Some(MatchKind::Partial)
            } else {
                None
            };
            if let Some(kind) = kind {
                best = better(
                    best,
                    Match {
                        field: MatchField::Phone,
                        kind,
                    },
                );
            }
        }
    }
    // Customer numbers: `S01-T03-C000042` is found by `000042`, `42` and `0042`.
    let tail = &f.number_tail;
    if !tail.is_empty() {
        let same_value = tail.trim_start_matches('0') == term.trim_start_matches('0');
        let kind = if tail == term || (same_value && !term.trim_start_matches('0').is_empty()) {
            Some(MatchKind::Exact)
        } else if term.len() >= 3 && f.number.iter().any(|w| w.contains(term)) {
            Some(MatchKind::Partial)
        } else {
            None
        };
        if let Some(kind) = kind {
            best = better(
                best,
                Match {
                    field: MatchField::Number,
                    kind,
                },
            );
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_removes_case_accents_and_scripts() {
        assert_eq!(fold("José MÜLLER"), "jose muller");
        assert_eq!(
            words("Zoë-Anne O'Brien").collect::<Vec<_>>(),
            ["zoe", "anne", "o", "brien"]
        );
        assert_eq!(words("王伟").collect::<Vec<_>>(), ["wang", "wei"]);
    }

    #[test]
    fn phone_like_queries_become_one_run_of_digits() {
        for (typed, want) in [
            ("98765 432", "98765432"),
            ("+91 98765", "9198765"),
            ("(0)98765-43210", "09876543210"),
        ] {
            let q = Query::parse(typed);
            assert_eq!(q.terms.len(), 1, "{typed}");
            assert_eq!(q.terms[0].text(), want, "{typed}");
        }
        let q = Query::parse("(0)98765-43210");
        assert!(
            matches!(&q.terms[0], Term::Digits { variants, .. } if variants == &["9876543210"])
        );
        // Three digits are not a phone fragment: they stay a term.
        assert!(matches!(&Query::parse("042").terms[0], Term::Digits { .. }));
    }

    #[test]
    fn caps_hold_for_any_input() {
        let long = "word ".repeat(10_000);
        let q = Query::parse(&long);
        // 128 characters: "word" once (duplicates collapse) and a cut-off "wo".
        assert_eq!(q.terms.len(), 2);
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(Query::parse(&many).terms.len(), TERMS_MAX);
        let huge = "x".repeat(1_000);
        assert!(Query::parse(&huge).terms[0].text().len() <= TERM_MAX_BYTES);
        assert!(Query::parse("").is_empty());
        assert!(Query::parse("  !!! ").is_empty());
    }

    #[test]
    fn transpositions_count_as_one_edit() {
        assert_eq!(edits_within("jhon", "john", 1), Some(1));
        assert_eq!(edits_within("smiht", "smith", 1), Some(1));
        assert_eq!(edits_within("catherine", "kathryn", 2), None);
        assert_eq!(edits_within("abcdefgh", "abdcefhg", 2), Some(2));
        assert_eq!(edits_within("abc", "xyz", 2), None);
        assert_eq!(max_edits(3), 0);
        assert_eq!(max_edits(4), 1);
        assert_eq!(max_edits(8), 2);
    }

    #[test]
    fn phonetic_codes_join_spellings() {
        let codes = |w: &str| phonetic(w);
        let shared = |a: &str, b: &str| codes(a).iter().any(|c| codes(b).contains(c));
        assert!(shared("jon", "john"));
        assert!(shared("catherine", "kathryn"));
        assert!(!shared("john", "mary"));
        assert!(codes("a1").is_empty());
    }
}
