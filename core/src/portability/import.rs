//! Importing customers from a CSV file.
//!
//! The file has a header row naming its columns, any of [`IMPORT_COLUMNS`]
//! in any order (case and surrounding spaces ignored); `name` is required
//! and an unknown or repeated column refuses the whole file before anything
//! is read further. `tags` are separated by `;`, `birthday` is `YYYY-MM-DD`,
//! `stage` is a lifecycle stage (`new` when empty).
//!
//! Each row goes through the same rules as a cashier creating a customer
//! (`customers::apply`, then `customers::put`, which also refuses a phone or
//! email held by a live customer, including one imported from an earlier
//! line). A rejected row writes nothing and is reported by its line in the
//! file (the header is line 1), the column at fault and a reason that never
//! repeats the value. Rows made only of empty fields are skipped.
//!
//! Every good row lands in one write transaction: the import is all of the
//! good rows or, on a storage failure, nothing. Each row runs inside its own
//! savepoint, so a row failing halfway (its customer number drawn, say)
//! rolls back alone and numbers stay gapless. The till's other writes wait
//! meanwhile: 100,000 rows take about 30 s (release build, test
//! `import_and_erase_at_scale`), so large imports belong to quiet hours.
//!
//! Malformed CSV is a rejected row, not a failed import: a row with an
//! unbalanced quote is reported with field `csv` and reading resumes on the
//! next line, so one stray quote cannot swallow the rest of the file into a
//! single field. A row with more or fewer fields than the header is
//! rejected the same way.

use std::collections::HashMap;
use std::io::Read;

use chrono::NaiveDate;
use csv::{ByteRecord, ReaderBuilder};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::customers::{self, Address, NewCustomer};
use crate::error::{Error, Result};
use crate::store::{Store, Writer};

/// The columns an import file may have.
pub const IMPORT_COLUMNS: [&str; 13] = [
    "name",
    "phone",
    "email",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postal_code",
    "country",
    "stage",
    "tags",
    "notes",
    "birthday",
];
/// Most data rows one file may hold.
pub const IMPORT_MAX_ROWS: u64 = 100_000;
/// Largest file accepted, in bytes: [`IMPORT_MAX_ROWS`] rows of 670 bytes on
/// average, far above a typical customer row (90 to 150 bytes). The file is
/// held in memory while it is read.
pub const IMPORT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The positions of the columns in [`IMPORT_COLUMNS`].
const NAME: usize = 0;
const PHONE: usize = 1;
const EMAIL: usize = 2;
const LINE1: usize = 3;
const LINE2: usize = 4;
const CITY: usize = 5;
const REGION: usize = 6;
const POSTAL_CODE: usize = 7;
const COUNTRY: usize = 8;
const STAGE: usize = 9;
const TAGS: usize = 10;
const NOTES: usize = 11;
const BIRTHDAY: usize = 12;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Customers created.
    pub imported: u64,
    /// Rows refused, by line.
    pub rejected: Vec<RejectedRow>,
}

/// A row of the file that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    /// 1-based line in the file where the row starts; the header is line 1.
    pub line: u64,
    /// The column at fault, or `csv` when the row could not be read as CSV.
    pub field: String,
    /// Why; never repeats the value.
    pub reason: String,
}

impl RejectedRow {
    fn new(line: u64, field: &str, reason: impl Into<String>) -> Self {
        RejectedRow {
            line,
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

impl Store {
    /// Imports customers from CSV (see the module docs for the format).
    /// Refuses the whole file with [`Error::Validation`] when its header is
    /// wrong or it is too large; otherwise imports every good row in one
    /// transaction and reports the others.
    pub fn import_customers_csv<R: Read>(&self, reader: R) -> Result<ImportReport> {
        let mut data = Vec::new();
        reader.take(IMPORT_MAX_BYTES + 1).read_to_end(&mut data)?;
        if data.len() as u64 > IMPORT_MAX_BYTES {
            return Err(Error::invalid(
                "file",
                format!("larger than {} MiB", IMPORT_MAX_BYTES >> 20),
            ));
        }
        let (rows, mut rejected) = parse(&data)?;
        let mut imported = 0;
        if !rows.is_empty() {
            let region = self.settings.region;
            let (count, refused) = self.write(|w| {
                let mut count = 0u64;
                let mut refused = Vec::new();
                // The line each imported customer came from, to tell a
                // duplicate within the file from one already in the store.
                let mut line_of: HashMap<Uuid, u64> = HashMap::new();
                for (line, new) in rows {
                    let created = in_savepoint(w, |w| {
                        let customer = customers::apply(customers::blank(w)?, new.into(), region)?;
                        customers::put(w, None, None, &customer, "import")?;
                        Ok(customer.id)
                    });
                    match created {
                        Ok(id) => {
                            count += 1;
                            line_of.insert(id, line);
                        }
                        Err(e) => refused.push(rejection(line, e, &line_of)?),
                    }
                }
                Ok((count, refused))
            })?;
            imported = count;
            rejected.extend(refused);
        }
        rejected.sort_by_key(|r| r.line);
        Ok(ImportReport { imported, rejected })
    }
}

/// Runs `f` inside a savepoint: kept when it succeeds, rolled back when it fails.
///
/// Plain `SAVEPOINT` statements rather than `Transaction::savepoint`: that
/// savepoint would hold the transaction borrowed, and `f` needs the whole
/// [`Writer`] (its clock and settings) to record the change.
fn in_savepoint<T>(w: &mut Writer<'_>, f: impl FnOnce(&mut Writer<'_>) -> Result<T>) -> Result<T> {
    let run = |w: &Writer<'_>, sql: &str| -> Result<()> {
        w.tx.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    run(w, "SAVEPOINT import_row")?;
    match f(w) {
        Ok(value) => {
            run(w, "RELEASE import_row")?;
            Ok(value)
        }
        Err(e) => {
            let rolled_back =
                run(w, "ROLLBACK TO import_row").and_then(|()| run(w, "RELEASE import_row"));
            match (rolled_back, e) {
                (Ok(()), e) => Err(e),
                // SQLite may have rolled the whole transaction back already:
                // the storage error that did it is the one to report.
                (Err(_), e @ (Error::Storage(_) | Error::StorageFull { .. })) => Err(e),
                (Err(rollback), _) => Err(rollback),
            }
        }
    }
}

/// The report line of a row refused with `error`; errors that are not about
/// the row (storage, ...) abort the import.
fn rejection(line: u64, error: Error, line_of: &HashMap<Uuid, u64>) -> Result<RejectedRow> {
    match error {
        Error::Validation { field, reason } => {
            Ok(RejectedRow::new(line, column_of(&field), reason))
        }
        Error::Duplicate { field, existing } => {
            let earlier = existing.parse().ok().and_then(|id| line_of.get(&id));
            let reason = match earlier {
                Some(earlier) => format!("is the same as on line {earlier} of this file"),
                None => format!("already belongs to customer {existing}"),
            };
            Ok(RejectedRow::new(line, field, reason))
        }
        other => Err(other),
    }
}

/// The CSV column of a field named by customer validation.
fn column_of(field: &str) -> &str {
    match field {
        "address.line1" => IMPORT_COLUMNS[LINE1],
        "address.line2" => IMPORT_COLUMNS[LINE2],
        "address.city" => IMPORT_COLUMNS[CITY],
        "address.region" => IMPORT_COLUMNS[REGION],
        "address.postal_code" => IMPORT_COLUMNS[POSTAL_CODE],
        "address.country" => IMPORT_COLUMNS[COUNTRY],
        other => other,
    }
}

/// A row to import and the line it starts on.
type Row = (u64, NewCustomer);

/// Reads the whole file: the rows to import and the rows refused before
/// touching the store.
fn parse(data: &[u8]) -> Result<(Vec<Row>, Vec<RejectedRow>)> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let mut records = Records::new(data);
    let columns = match records.next()? {
        Next::Record(_, header) => header_columns(&header)?,
        Next::Malformed(_) => return Err(Error::invalid("header", "has an unbalanced quote")),
        Next::End => return Err(Error::invalid("header", "is missing: the file is empty")),
    };

    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    let mut seen: u64 = 0;
    loop {
        let (line, record) = match records.next()? {
            Next::End => break,
            Next::Malformed(line) => {
                rejected.push(RejectedRow::new(line, "csv", "has an unbalanced quote"));
                (line, None)
            }
            Next::Record(line, record) => (line, Some(record)),
        };
        seen += 1;
        if seen > IMPORT_MAX_ROWS {
            return Err(Error::invalid(
                "rows",
                format!("the file has more than {IMPORT_MAX_ROWS} rows"),
            ));
        }
        let Some(record) = record else { continue };
        if record.len() != columns.len() {
            rejected.push(RejectedRow::new(
                line,
                "csv",
                format!(
                    "has {} fields; the header has {}",
                    record.len(),
                    columns.len()
                ),
            ));
            continue;
        }
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        match new_customer(&columns, &record) {
            Ok(new) => rows.push((line, new)),
            Err(Error::Validation { field, reason }) => {
                rejected.push(RejectedRow::new(line, &field, reason));
            }
            Err(other) => return Err(other),
        }
    }
    Ok((rows, rejected))
}

/// The position in [`IMPORT_COLUMNS`] of each column of the header.
fn header_columns(header: &ByteRecord) -> Result<Vec<usize>> {
    let names: Vec<String> = header
        .iter()
        .map(|raw| String::from_utf8_lossy(raw).trim().to_ascii_lowercase())
        .collect();
    let known = |name: &String| IMPORT_COLUMNS.iter().position(|c| c == name);
    // A first row naming no column is data (a customer's name, phone, ...),
    // not a header: say so without repeating it.
    if !names.iter().any(|n| known(n).is_some()) {
        return Err(Error::invalid(
            "header",
            format!(
                "is missing: the first row names none of the columns {}",
                IMPORT_COLUMNS.join(", ")
            ),
        ));
    }
    let mut columns = Vec::with_capacity(names.len());
    for name in &names {
        let shown: String = name.chars().take(40).collect();
        let column = known(name).ok_or_else(|| {
            Error::invalid(
                "header",
                format!(
                    "unknown column {shown:?}; the columns are {}",
                    IMPORT_COLUMNS.join(", ")
                ),
            )
        })?;
        if columns.contains(&column) {
            return Err(Error::invalid(
                "header",
                format!("column {shown:?} appears twice"),
            ));
        }
        columns.push(column);
    }
    if !columns.contains(&NAME) {
        return Err(Error::invalid("header", "the \"name\" column is required"));
    }
    Ok(columns)
}

/// The customer a row describes, before the store's validation. Only what
/// CSV itself encodes is checked here: text encoding, the stage and date
/// spellings, the tag separator.
fn new_customer(columns: &[usize], record: &ByteRecord) -> Result<NewCustomer> {
    let mut values: [Option<String>; IMPORT_COLUMNS.len()] = Default::default();
    for (&column, raw) in columns.iter().zip(record.iter()) {
        let text = std::str::from_utf8(raw)
            .map_err(|_| Error::invalid(IMPORT_COLUMNS[column], "is not UTF-8 text"))?;
        values[column] = Some(text.to_owned());
    }
    let mut take = |column: usize| values[column].take().unwrap_or_default();
    let present = |text: String| (!text.trim().is_empty()).then_some(text);

    let stage = present(take(STAGE)).map(|s| s.parse()).transpose()?;
    let birthday = present(take(BIRTHDAY))
        .map(|b| {
            NaiveDate::parse_from_str(b.trim(), "%Y-%m-%d")
                .map_err(|_| Error::invalid("birthday", "is not a date written YYYY-MM-DD"))
        })
        .transpose()?;
    let tags = take(TAGS)
        .split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(NewCustomer {
        name: take(NAME),
        phone: present(take(PHONE)),
        phone_shared: false,
        email: present(take(EMAIL)),
        email_shared: false,
        address: Address {
            line1: take(LINE1),
            line2: take(LINE2),
            city: take(CITY),
            region: take(REGION),
            postal_code: take(POSTAL_CODE),
            country: take(COUNTRY),
        },
        stage,
        tags,
        notes: take(NOTES),
        birthday,
    })
}

/// What [`Records::next`] read.
enum Next {
    /// A record and the line it starts on.
    Record(u64, ByteRecord),
    /// A record with an unbalanced quote, starting on this line.
    Malformed(u64),
    /// The end of the file.
    End,
}

/// The records of a CSV file, resuming on the next line after a malformed one.
///
/// Lines are counted here, not taken from the csv reader: its positions
/// start where the previous record ended, before any blank lines, and it
/// counts a CRLF pair as a line only sometimes.
struct Records<'a> {
    data: &'a [u8],
    /// Where the current reader started in `data`.
    offset: usize,
    /// Lines are counted up to this offset in `data`...
    counted_to: usize,
    /// ... which is on this line.
    line: u64,
    reader: csv::Reader<&'a [u8]>,
}

impl<'a> Records<'a> {
    fn new(data: &'a [u8]) -> Self {
        Records {
            data,
            offset: 0,
            counted_to: 0,
            line: 1,
            reader: Self::reader(data),
        }
    }

    fn reader(data: &'a [u8]) -> csv::Reader<&'a [u8]> {
        ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(data)
    }

    fn next(&mut self) -> Result<Next> {
        let unreadable = || Error::invalid("csv", "the file cannot be read as CSV");
        let mut record = ByteRecord::new();
        let read = self.reader.read_byte_record(&mut record);
        let start = match (&read, record.position()) {
            (Ok(false), _) => return Ok(Next::End),
            (Ok(true), Some(p)) => p.byte(),
            (Err(e), _) => e.position().ok_or_else(unreadable)?.byte(),
            (Ok(true), None) => return Err(unreadable()),
        };
        let end = (self.offset + self.reader.position().byte() as usize).min(self.data.len());
        let mut from = (self.offset + start as usize).min(end);
        // Skip the blank lines the reader stepped over before the record.
        while from < end && matches!(self.data[from], b'\r' | b'\n') {
            from += 1;
        }
        self.line += line_breaks(self.data, self.counted_to, from);
        self.counted_to = from;
        let quotes = self.data[from..end].iter().filter(|&&b| b == b'"').count();
        if read.is_err() || quotes % 2 == 1 {
            // An open quote runs to the end of the file: resume on the line
            // after the one the broken record starts on.
            self.offset = next_line(self.data, from);
            self.reader = Self::reader(&self.data[self.offset..]);
            return Ok(Next::Malformed(self.line));
        }
        Ok(Next::Record(self.line, record))
    }
}

/// Line breaks (LF, CRLF or a lone CR) in `data[from..to]`.
fn line_breaks(data: &[u8], from: usize, to: usize) -> u64 {
    (from..to)
        .filter(|&i| data[i] == b'\n' || (data[i] == b'\r' && data.get(i + 1) != Some(&b'\n')))
        .count() as u64
}

/// The offset just past the line break that ends the line `from` is on.
fn next_line(data: &[u8], from: usize) -> usize {
    match data[from..].iter().position(|&b| b == b'\n' || b == b'\r') {
        None => data.len(),
        Some(i) if data[from + i] == b'\r' && data.get(from + i + 1) == Some(&b'\n') => {
            from + i + 2
        }
        Some(i) => from + i + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(csv: &str) -> Vec<(u64, Option<Vec<String>>)> {
        let mut records = Records::new(csv.as_bytes());
        let mut out = Vec::new();
        loop {
            match records.next().expect("next") {
                Next::End => return out,
                Next::Malformed(line) => out.push((line, None)),
                Next::Record(line, r) => out.push((
                    line,
                    Some(
                        r.iter()
                            .map(|f| String::from_utf8_lossy(f).into_owned())
                            .collect(),
                    ),
                )),
            }
        }
    }

    #[test]
    fn records_carry_the_line_they_start_on() {
        let got = lines_of("name,notes\nA,\"two\nlines\"\n\nB,x\n");
        assert_eq!(
            got,
            vec![
                (1, Some(vec!["name".into(), "notes".into()])),
                (2, Some(vec!["A".into(), "two\nlines".into()])),
                (5, Some(vec!["B".into(), "x".into()])),
            ]
        );
    }

    #[test]
    fn lines_count_blank_lines_and_any_line_ending() {
        let lines = |csv: &str| -> Vec<u64> { lines_of(csv).into_iter().map(|(l, _)| l).collect() };
        assert_eq!(lines("a\n\n\nb\nc\n"), vec![1, 4, 5]);
        assert_eq!(lines("a\r\n\r\nb\r\nc"), vec![1, 3, 4]);
        assert_eq!(lines("a\rb\r\rc\r"), vec![1, 2, 4]);
        assert_eq!(lines("\"x\r\ny\"\r\nb\r\n"), vec![1, 3]);
    }

    #[test]
    fn an_unbalanced_quote_rejects_its_row_and_reading_resumes() {
        let got = lines_of("name,phone\nA,\"123\nB,456\nC,\"7\"\"8\"\n");
        assert_eq!(
            lines_of("a\r\nb,\"c\r\n\r\nd,e\r\n"),
            vec![
                (1, Some(vec!["a".into()])),
                (2, None),
                (4, Some(vec!["d".into(), "e".into()])),
            ]
        );
        assert_eq!(
            got,
            vec![
                (1, Some(vec!["name".into(), "phone".into()])),
                (2, None),
                (3, Some(vec!["B".into(), "456".into()])),
                (4, Some(vec!["C".into(), "7\"8".into()])),
            ]
        );
        // A stray quote inside an unquoted field is malformed too.
        assert_eq!(lines_of("a,b\"c\nd,e\n")[0], (1, None));
        assert_eq!(lines_of("a,b\"c\nd,e\n")[1].0, 2);
    }

    #[test]
    fn headers_are_checked_before_any_row() {
        let header = |h: &str| {
            let mut r = ReaderBuilder::new()
                .has_headers(false)
                .from_reader(h.as_bytes());
            let mut rec = ByteRecord::new();
            r.read_byte_record(&mut rec).expect("read");
            header_columns(&rec)
        };
        assert_eq!(header(" Name ,PHONE").expect("ok"), vec![NAME, PHONE]);
        for (bad, says) in [
            ("name,nmae", "\"nmae\""),
            ("name,phone,phone", "twice"),
            ("phone,email", "required"),
        ] {
            match header(bad) {
                Err(Error::Validation { field, reason }) => {
                    assert_eq!(field, "header");
                    assert!(reason.contains(says), "{bad}: {reason}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn address_fields_are_reported_by_their_column() {
        assert_eq!(column_of("address.line1"), "address_line1");
        assert_eq!(column_of("address.postal_code"), "postal_code");
        assert_eq!(column_of("phone"), "phone");
    }
}
