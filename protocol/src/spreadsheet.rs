//! Records as spreadsheet rows: CSV the way Excel writes and reads it
//! (issue 16). This module owns the file format of `yui export --format csv`,
//! the CSV downloads and `yui import`: the columns (the record id, the
//! schema's fields under their Japanese or English labels, then the town
//! and times), how each kind of field reads in one cell, formula safety,
//! and, going the other way, decoding a file (UTF-8 with or without a BOM,
//! Shift_JIS/CP932, UTF-16 with a BOM), mapping its header to fields and
//! turning each row's cells back into the JSON `protocol::validate` checks.
//! Pure functions over bytes and strings: the node reads the records and
//! writes them.
//!
//! One cell per field, readable in Excel and parsed back exactly:
//!
//! | kind | cell |
//! | --- | --- |
//! | text, string, e-mail, phone | as is (a long text keeps its line breaks) |
//! | choice (enum) | its label in the export's language; import takes the label in either language or the API value |
//! | whole number, number | plain digits, `.` for decimals, no grouping (`30000`, `20.5`); import also takes `30,000` and full-width digits |
//! | date | `YYYY-MM-DD`; import also takes `2025/4/1` (what Excel writes back), `2025-4-1` and `2025年4月1日` |
//! | reference | the record id, then a space and the record's name for people (ignored by import) |
//! | references, tags | one per line within the cell (Alt+Enter in Excel) |
//! | list of objects (skills, metrics) | one object per line: `label=value; label=value`, a `;` or `\` in a value written `\;` or `\\` |
//!
//! Formula safety (OWASP CSV injection): a text cell that begins with `=`,
//! `+`, `-`, `@`, a tab or a carriage return, after any number of `'`, gets
//! one more `'` in front, so Excel shows it as text; import takes one
//! leading `'` off such a cell, so an export round-trips exactly. Numbers
//! are written plain (a negative number is a number, not a formula).
//!
//! Row numbers are Excel's: the header is row 1, the first record row 2.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use crate::collection::Collection;
use crate::record::{RecordId, RecordView};
use crate::schema::{EnumOption, FieldDef, FieldKind};
use crate::validate::number_json;

/// The byte order mark Excel needs to read a CSV file as UTF-8.
pub const BOM: &str = "\u{feff}";

/// The language of a CSV file's header and choice labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Ja,
    En,
}

impl Lang {
    /// `ja` or `en` (a query value).
    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn pick<'a>(self, ja: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }
}

/// The columns a record export has besides the fields: (name, ja, en).
/// Only `id` is read back by import; the others are for people and are
/// ignored when a file comes back.
pub const ID_COLUMN: (&str, &str, &str) = ("id", "ID", "ID");
pub const META_COLUMNS: [(&str, &str, &str); 3] = [
    ("town", "作成した町", "Town"),
    ("created_at", "作成日時（日本時間）", "Created (JST)"),
    ("updated_at", "更新日時（日本時間）", "Updated (JST)"),
];

// ------------------------------------------------------------------ writing

/// One cell of an exported table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text: made formula-safe.
    Text(String),
    /// A number, written plain.
    Number(String),
    Empty,
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    pub fn int(n: i64) -> Cell {
        Cell::Number(n.to_string())
    }

    /// A number as the API shows it: whole numbers without a fraction.
    pub fn number(n: f64) -> Cell {
        Cell::Number(number_text(n))
    }

    pub fn opt_text(s: Option<&str>) -> Cell {
        s.map_or(Cell::Empty, Cell::text)
    }
}

fn number_text(n: f64) -> String {
    match number_json(n) {
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Whether a cell's text would start a formula in a spreadsheet, once any
/// leading `'` are skipped (see the module doc).
fn looks_like_formula(s: &str) -> bool {
    s.trim_start_matches('\'')
        .starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// A text cell as written: formula-safe.
pub fn formula_safe(s: &str) -> String {
    if looks_like_formula(s) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// A CSV file as Excel opens it: UTF-8 with a BOM, CRLF line ends, fields
/// quoted when they hold a comma, a quote or a line break.
pub struct CsvOut {
    out: csv::Writer<Vec<u8>>,
}

impl Default for CsvOut {
    fn default() -> Self {
        CsvOut::new()
    }
}

impl CsvOut {
    pub fn new() -> CsvOut {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(BOM.as_bytes());
        CsvOut {
            out: csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .quote_style(csv::QuoteStyle::Necessary)
                .from_writer(buf),
        }
    }

    pub fn header<'a>(&mut self, labels: impl IntoIterator<Item = &'a str>) {
        self.row(labels.into_iter().map(Cell::text));
    }

    pub fn row(&mut self, cells: impl IntoIterator<Item = Cell>) {
        let cells: Vec<String> = cells
            .into_iter()
            .map(|c| match c {
                Cell::Text(s) => formula_safe(&s),
                Cell::Number(s) => s,
                Cell::Empty => String::new(),
            })
            .collect();
        // Writing to a Vec cannot fail.
        let _ = self.out.write_record(&cells);
    }

    pub fn finish(self) -> String {
        let bytes = self.out.into_inner().unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }
}

/// The header of a collection's export.
pub fn header(collection: Collection, lang: Lang) -> Vec<&'static str> {
    let mut h = vec![lang.pick(ID_COLUMN.1, ID_COLUMN.2)];
    h.extend(collection.fields().iter().map(|f| lang.pick(f.ja, f.en)));
    h.extend(META_COLUMNS.iter().map(|(_, ja, en)| lang.pick(ja, en)));
    h
}

/// A collection's records as CSV. `names` gives the display name of
/// referenced records by id (written after the id, for people).
pub fn records_csv(
    collection: Collection,
    records: &[RecordView],
    names: &HashMap<String, String>,
    lang: Lang,
) -> String {
    let mut out = CsvOut::new();
    out.header(header(collection, lang));
    for r in records {
        out.row(record_row(collection, r, names, lang));
    }
    out.finish()
}

/// One record's cells, in the order of [`header`].
pub fn record_row(
    collection: Collection,
    r: &RecordView,
    names: &HashMap<String, String>,
    lang: Lang,
) -> Vec<Cell> {
    let mut cells = vec![Cell::text(r.id.as_str())];
    for def in collection.fields() {
        cells.push(match r.fields.get(def.name) {
            None | Some(Value::Null) => Cell::Empty,
            Some(v) => field_cell(&def.kind, v, names, lang),
        });
    }
    cells.push(Cell::text(&r.town));
    cells.push(Cell::text(jst(&r.created_at)));
    cells.push(Cell::text(jst(&r.updated_at)));
    cells
}

/// A file of one new record with `fields` (as the API takes them), headed
/// by their labels: what an import takes, as an example.
pub fn example_csv(collection: Collection, fields: &Map<String, Value>, lang: Lang) -> String {
    let defs: Vec<&FieldDef> = collection
        .fields()
        .iter()
        .filter(|f| fields.contains_key(f.name))
        .collect();
    let mut out = CsvOut::new();
    out.header(defs.iter().map(|f| lang.pick(f.ja, f.en)));
    out.row(
        defs.iter()
            .map(|f| field_cell(&f.kind, &fields[f.name], &HashMap::new(), lang)),
    );
    out.finish()
}

/// An RFC 3339 time as Excel reads a date and time: `2025-04-01 09:30:00`
/// in Japan time (the towns' time).
pub fn jst(rfc3339: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .and_then(|t| t.checked_to_offset(time::macros::offset!(+9)))
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| rfc3339.to_owned())
}

fn enum_label(options: &[EnumOption], value: &str, lang: Lang) -> String {
    options
        .iter()
        .find(|o| o.value == value)
        .map_or_else(|| value.to_owned(), |o| lang.pick(o.ja, o.en).to_owned())
}

fn reference_text(id: &str, names: &HashMap<String, String>) -> String {
    match names.get(id) {
        Some(name) if !name.is_empty() => format!("{id} {name}"),
        _ => id.to_owned(),
    }
}

fn escape_item(s: &str) -> String {
    s.replace('\\', "\\\\").replace(';', "\\;")
}

fn field_cell(kind: &FieldKind, v: &Value, names: &HashMap<String, String>, lang: Lang) -> Cell {
    let lines = |items: Vec<String>| Cell::Text(items.join("\n"));
    let strings = || -> Vec<&str> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    match *kind {
        FieldKind::Int { .. } | FieldKind::Number { .. } => match v {
            Value::Number(n) => Cell::Number(n.to_string()),
            other => Cell::text(other.to_string()),
        },
        FieldKind::Enum(options) => Cell::Text(enum_label(options, v.as_str().unwrap_or(""), lang)),
        FieldKind::Ref(_) => Cell::Text(reference_text(v.as_str().unwrap_or(""), names)),
        FieldKind::Refs { .. } => lines(
            strings()
                .into_iter()
                .map(|id| reference_text(id, names))
                .collect(),
        ),
        FieldKind::Tags { .. } => lines(strings().into_iter().map(str::to_owned).collect()),
        FieldKind::Objects { fields, .. } => lines(
            v.as_array()
                .into_iter()
                .flatten()
                .map(|o| {
                    fields
                        .iter()
                        .filter_map(|f| {
                            let value = match o.get(f.name)? {
                                Value::Null => return None,
                                Value::String(s) => escape_item(s),
                                other => other.to_string(),
                            };
                            Some(format!("{}={value}", lang.pick(f.ja, f.en)))
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .collect(),
        ),
        FieldKind::Str { .. }
        | FieldKind::Email
        | FieldKind::Phone
        | FieldKind::Text { .. }
        | FieldKind::Date => match v {
            Value::String(s) => Cell::text(s),
            other => Cell::text(other.to_string()),
        },
    }
}

// ------------------------------------------------------------------ reading

/// One problem with an imported file, where Excel would show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Excel's row number: the header is row 1; 0 for the file as a whole.
    pub row: usize,
    /// The column's heading as the file has it, when the problem is in one.
    pub column: Option<String>,
    /// The field's API name (`skills[0].level` inside a list).
    pub field: Option<String>,
    /// Stable: `unreadable_file`, `empty_file`, `too_many_rows`,
    /// `unknown_column`, `duplicate_column`, `unnamed_column`,
    /// `extra_cells`, `invalid_id`, `duplicate_id`, the field codes of
    /// `protocol::validate`, and the node's own (`record_not_found`,
    /// `record_deleted`, `invalid_reference`, `not_the_owner`,
    /// `personal_data`, `conflict`).
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    pub fn file(code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            row: 0,
            column: None,
            field: None,
            code,
            message: message.into(),
        }
    }
}

/// What a column of an imported file holds.
#[derive(Debug, Clone, Copy)]
pub enum Column {
    Id,
    Field(&'static FieldDef),
    /// `town`, `created_at`, `updated_at`: shown in an export, ignored.
    Ignored,
}

/// One record row of an imported file, its cells turned into the JSON the
/// API takes: a field whose cell is empty is `null`. A cell that could not
/// be read is left out of `fields` and named in `unreadable` (its problem
/// is in [`Parsed::problems`]); the row is still checked for more.
#[derive(Debug, Clone)]
pub struct Row {
    pub row: usize,
    pub id: Option<RecordId>,
    pub fields: Map<String, Value>,
    /// Fields (or `id`) whose cells could not be read.
    pub unreadable: Vec<String>,
}

impl Row {
    /// The fields the row gives a value (an empty cell gives none): what a
    /// new record is made of.
    pub fn given(&self) -> Map<String, Value> {
        self.fields
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// An imported file, read.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// `UTF-8`, `Shift_JIS`, `UTF-16LE`, `UTF-16BE`.
    pub encoding: &'static str,
    /// Each column's heading as written, with what it holds.
    pub columns: Vec<(String, Column)>,
    pub rows: Vec<Row>,
    pub problems: Vec<Problem>,
}

impl Parsed {
    /// The heading of the column of `field` (a top-level field name), as
    /// the file has it.
    pub fn column_of(&self, field: &str) -> Option<String> {
        let top = field.split(['[', '.']).next().unwrap_or(field);
        self.columns
            .iter()
            .find(|(_, c)| matches!(c, Column::Field(d) if d.name == top))
            .map(|(h, _)| h.clone())
    }
}

/// Decodes a file: UTF-8 (a BOM is dropped), UTF-16 with a BOM, or else
/// Shift_JIS as Windows writes it (CP932; encoding_rs's `SHIFT_JIS` is the
/// WHATWG encoding, which is Windows-31J). Japanese Shift_JIS text is
/// practically never valid UTF-8, so trying UTF-8 first is safe.
pub fn decode(bytes: &[u8]) -> Result<(String, &'static str), Problem> {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let body = &bytes[bom..];
        return encoding
            .decode_without_bom_handling_and_without_replacement(body)
            .map(|s| (s.into_owned(), encoding.name()))
            .ok_or_else(|| {
                Problem::file(
                    "unreadable_file",
                    format!(
                        "the file starts with a {} byte order mark but is not {} throughout",
                        encoding.name(),
                        encoding.name()
                    ),
                )
            });
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok((s.to_owned(), "UTF-8"));
    }
    encoding_rs::SHIFT_JIS
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|s| (s.into_owned(), "Shift_JIS"))
        .ok_or_else(|| {
            Problem::file(
                "unreadable_file",
                "the file is neither UTF-8 nor Shift_JIS (CP932) text: save it from Excel as CSV UTF-8 (comma delimited) or CSV (comma delimited)",
            )
        })
}

/// A heading or a key as compared: NFKC, no surrounding white space,
/// lowercase, spaces and `_` alike.
fn key(s: &str) -> String {
    s.nfkc()
        .collect::<String>()
        .trim()
        .to_lowercase()
        .replace([' ', '\u{3000}', '-'], "_")
}

fn field_keys(def: &FieldDef) -> [String; 3] {
    [key(def.name), key(def.ja), key(def.en)]
}

/// What a heading names in `collection`, if anything.
fn column_for(collection: Collection, heading: &str) -> Option<Column> {
    let k = key(heading);
    if [ID_COLUMN.0, ID_COLUMN.1, ID_COLUMN.2]
        .iter()
        .any(|c| key(c) == k)
    {
        return Some(Column::Id);
    }
    if let Some(def) = collection
        .fields()
        .iter()
        .find(|d| field_keys(d).contains(&k))
    {
        return Some(Column::Field(def));
    }
    META_COLUMNS
        .iter()
        .any(|(n, ja, en)| [n, ja, en].iter().any(|c| key(c) == k))
        .then_some(Column::Ignored)
}

/// Reads an imported file for `collection`: its encoding, header and rows,
/// each row's cells as the API's JSON. Problems of the file, the header and
/// the cells (a number that is not one, a choice that is not one of the
/// field's) are all collected; the schema itself is checked by the caller
/// with `protocol::validate`, which knows whether a row creates or updates.
pub fn parse(collection: Collection, bytes: &[u8], max_rows: usize) -> Parsed {
    let mut parsed = Parsed {
        encoding: "UTF-8",
        columns: Vec::new(),
        rows: Vec::new(),
        problems: Vec::new(),
    };
    let text = match decode(bytes) {
        Ok((text, encoding)) => {
            parsed.encoding = encoding;
            text
        }
        Err(p) => {
            parsed.problems.push(p);
            return parsed;
        }
    };
    // Excel's "Unicode text" is tab-separated; everything else, commas.
    let first_line = text.lines().next().unwrap_or("");
    let delimiter = if first_line.contains('\t') && !first_line.contains(',') {
        b'\t'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            parsed.problems.push(Problem::file(
                "unreadable_file",
                format!("the header row: {e}"),
            ));
            return parsed;
        }
        None => {
            parsed.problems.push(Problem::file(
                "empty_file",
                "the file is empty: it needs a header row of column names and a row per record",
            ));
            return parsed;
        }
    };
    read_header(collection, &header, &mut parsed);
    let mut count = 0;
    for (i, record) in records.enumerate() {
        let row = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                parsed.problems.push(Problem {
                    row,
                    column: None,
                    field: None,
                    code: "unreadable_file",
                    message: format!("this row cannot be read as CSV: {e}"),
                });
                break;
            }
        };
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        count += 1;
        if count > max_rows {
            parsed.problems.push(Problem::file(
                "too_many_rows",
                format!(
                    "the file has more than {max_rows} record rows; split it into smaller files"
                ),
            ));
            break;
        }
        let r = read_row(row, &record, &mut parsed);
        parsed.rows.push(r);
    }
    parsed
}

fn read_header(collection: Collection, header: &csv::StringRecord, parsed: &mut Parsed) {
    let known = || {
        let mut names = vec![ID_COLUMN.1.to_owned()];
        names.extend(
            collection
                .fields()
                .iter()
                .map(|f| format!("{} ({})", f.ja, f.en)),
        );
        names.join(", ")
    };
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, heading) in header.iter().enumerate() {
        // Excel saves a BOM inside the first heading when it re-saves a
        // file it read without one; it is never part of a name.
        let heading = heading.trim_start_matches('\u{feff}').trim().to_owned();
        let column = if heading.is_empty() {
            // A column without a heading is ignored while it is empty
            // (Excel leaves trailing commas); `read_row` checks.
            Column::Ignored
        } else if let Some(c) = column_for(collection, &heading) {
            c
        } else {
            parsed.problems.push(Problem {
                row: 1,
                column: Some(heading.clone()),
                field: None,
                code: "unknown_column",
                message: format!(
                    "column {} is not a field of {} / {}; the columns are: {}",
                    i + 1,
                    collection.label_ja(),
                    collection.label_en(),
                    known()
                ),
            });
            Column::Ignored
        };
        let target = match column {
            Column::Id => Some("id".to_owned()),
            Column::Field(d) => Some(d.name.to_owned()),
            Column::Ignored if !heading.is_empty() => Some(key(&heading)),
            Column::Ignored => None,
        };
        if let Some(target) = target {
            if let Some(first) = seen.get(&target) {
                parsed.problems.push(Problem {
                    row: 1,
                    column: Some(heading.clone()),
                    field: None,
                    code: "duplicate_column",
                    message: format!("names the same field as the column {first:?}"),
                });
            } else {
                seen.insert(target, heading.clone());
            }
        }
        parsed.columns.push((heading, column));
    }
}

fn read_row(row: usize, record: &csv::StringRecord, parsed: &mut Parsed) -> Row {
    let mut id = None;
    let mut fields = Map::new();
    let mut unreadable = Vec::new();
    for (i, cell) in record.iter().enumerate() {
        let Some((heading, column)) = parsed.columns.get(i) else {
            if !cell.trim().is_empty() {
                parsed.problems.push(Problem {
                    row,
                    column: None,
                    field: None,
                    code: "extra_cells",
                    message: format!(
                        "cell {} is beyond the last column of the header ({} columns)",
                        i + 1,
                        parsed.columns.len()
                    ),
                });
            }
            continue;
        };
        let problem = |field: Option<&str>, code: &'static str, message: String| Problem {
            row,
            column: Some(heading.clone()),
            field: field.map(str::to_owned),
            code,
            message,
        };
        match *column {
            Column::Ignored => {
                if heading.is_empty() && !cell.trim().is_empty() {
                    parsed.problems.push(problem(
                        None,
                        "unnamed_column",
                        format!("cell {} has a value but its column has no heading", i + 1),
                    ));
                }
            }
            Column::Id => {
                let text = unneutralise(cell).trim().to_lowercase();
                if text.is_empty() {
                    continue;
                }
                match text.parse::<RecordId>() {
                    Ok(parsed_id) => id = Some(parsed_id),
                    Err(_) => {
                        parsed.problems.push(problem(
                            Some("id"),
                            "invalid_id",
                            format!(
                                "{:?} is not a record id (26 letters and digits, as an export writes them); leave it empty to add a new record",
                                text.chars().take(40).collect::<String>()
                            ),
                        ));
                        unreadable.push("id".to_owned());
                    }
                }
            }
            Column::Field(def) => match cell_value(def, cell) {
                Ok(v) => {
                    fields.insert(def.name.to_owned(), v);
                }
                Err((field, code, message)) => {
                    parsed.problems.push(problem(Some(&field), code, message));
                    unreadable.push(def.name.to_owned());
                }
            },
        }
    }
    Row {
        row,
        id,
        fields,
        unreadable,
    }
}

/// Takes off the `'` an export put before a cell that would be a formula.
fn unneutralise(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if looks_like_formula(rest) => rest,
        _ => cell,
    }
}

type CellError = (String, &'static str, String);

/// A cell as the API's JSON for `def`: `null` when empty.
pub fn cell_value(def: &FieldDef, cell: &str) -> Result<Value, CellError> {
    let cell = unneutralise(cell);
    if cell.trim().is_empty() {
        return Ok(Value::Null);
    }
    kind_value(def.name, &def.kind, cell)
}

fn kind_value(name: &str, kind: &FieldKind, cell: &str) -> Result<Value, CellError> {
    let lines = || {
        cell.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
    };
    match *kind {
        FieldKind::Str { .. } | FieldKind::Email | FieldKind::Phone | FieldKind::Text { .. } => {
            Ok(Value::String(cell.to_owned()))
        }
        FieldKind::Date => Ok(Value::String(date_text(cell))),
        FieldKind::Enum(options) => enum_value(name, options, cell),
        FieldKind::Int { .. } => match number(cell) {
            Some(n) if n.fract() == 0.0 && n.abs() < 9e15 => Ok(Value::from(n as i64)),
            _ => Err((
                name.to_owned(),
                "invalid_type",
                format!("{:?} is not a whole number", shown(cell)),
            )),
        },
        FieldKind::Number { .. } => match number(cell) {
            Some(n) => Ok(number_json(n)),
            None => Err((
                name.to_owned(),
                "invalid_type",
                format!("{:?} is not a number", shown(cell)),
            )),
        },
        FieldKind::Ref(_) => Ok(lines()
            .first()
            .and_then(|l| l.split_whitespace().next())
            .map_or(Value::Null, |id| Value::String(id.to_lowercase()))),
        FieldKind::Refs { .. } => Ok(Value::Array(
            lines()
                .into_iter()
                .flat_map(reference_ids)
                .map(Value::String)
                .collect(),
        )),
        FieldKind::Tags { .. } => Ok(Value::Array(
            lines()
                .into_iter()
                .map(|l| Value::String(l.to_owned()))
                .collect(),
        )),
        FieldKind::Objects { fields, .. } => {
            let mut out = Vec::new();
            for (i, line) in lines().into_iter().enumerate() {
                out.push(Value::Object(object_value(name, i, fields, line)?));
            }
            Ok(Value::Array(out))
        }
    }
}

fn shown(cell: &str) -> String {
    cell.chars().take(40).collect()
}

/// The ids of one line of a references cell: the first word is an id, and
/// so is every later word that has an id's shape (`id1, id2` typed on one
/// line); the other words are the name an export adds for people.
fn reference_ids(line: &str) -> Vec<String> {
    let mut words = line
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '、' | ';'))
        .filter(|w| !w.is_empty());
    let mut ids: Vec<String> = words.next().map(str::to_lowercase).into_iter().collect();
    ids.extend(
        words
            .map(str::to_lowercase)
            .filter(|w| w.parse::<RecordId>().is_ok()),
    );
    ids
}

fn enum_value(name: &str, options: &[EnumOption], cell: &str) -> Result<Value, CellError> {
    let k = key(cell);
    options
        .iter()
        .find(|o| key(o.value) == k || key(o.ja) == k || key(o.en) == k)
        .map(|o| Value::String(o.value.to_owned()))
        .ok_or_else(|| {
            let allowed: Vec<String> = options
                .iter()
                .map(|o| format!("{} ({})", o.ja, o.value))
                .collect();
            (
                name.to_owned(),
                "invalid_enum",
                format!("{:?} is not one of: {}", shown(cell), allowed.join(", ")),
            )
        })
}

/// A number as people and Excel write it: full-width digits, grouping
/// commas and surrounding white space allowed.
fn number(cell: &str) -> Option<f64> {
    let s: String = cell.nfkc().filter(|c| *c != ',').collect();
    let s = s.trim();
    let plain = !s.is_empty()
        && s.trim_start_matches(['-', '+'])
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.');
    plain
        .then(|| s.parse::<f64>().ok())
        .flatten()
        .filter(|n| n.is_finite())
}

/// A date as Excel writes it back (`2025/4/1`, perhaps with a midnight
/// time) or as people type it (`2025年4月1日`), as `YYYY-MM-DD`; anything
/// else is left for the validator to refuse.
fn date_text(cell: &str) -> String {
    let s: String = cell.nfkc().collect();
    let s = s.trim();
    // Excel's "2025/4/1 0:00".
    let day = s
        .split_once(' ')
        .filter(|(_, t)| matches!(t.trim(), "0:00" | "00:00" | "0:00:00" | "00:00:00"))
        .map_or(s, |(d, _)| d);
    let parts: Vec<&str> = day
        .trim_end_matches('日')
        .split(['/', '-', '.', '年', '月'])
        .collect();
    if let [y, m, d] = parts[..]
        && y.len() == 4
        && (1..=2).contains(&m.len())
        && (1..=2).contains(&d.len())
        && [y, m, d]
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_digit()))
    {
        return format!("{y}-{m:0>2}-{d:0>2}");
    }
    s.to_owned()
}

/// One line of a list-of-objects cell: `label=value; label=value`.
fn object_value(
    name: &str,
    index: usize,
    fields: &'static [FieldDef],
    line: &str,
) -> Result<Map<String, Value>, CellError> {
    let at = format!("{name}[{index}]");
    let mut out = Map::new();
    for part in split_items(line) {
        if part.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            let example: Vec<String> = fields.iter().map(|f| format!("{}=…", f.ja)).collect();
            return Err((
                at,
                "invalid_format",
                format!(
                    "{:?} is not label=value; write each item as {}",
                    shown(&part),
                    example.join("; ")
                ),
            ));
        };
        let kk = key(k);
        let Some(def) = fields.iter().find(|f| field_keys(f).contains(&kk)) else {
            let known: Vec<String> = fields
                .iter()
                .map(|f| format!("{} ({})", f.ja, f.en))
                .collect();
            return Err((
                at,
                "unknown_field",
                format!("{:?} is not one of: {}", shown(k.trim()), known.join(", ")),
            ));
        };
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let value = kind_value(&format!("{at}.{}", def.name), &def.kind, v)?;
        out.insert(def.name.to_owned(), value);
    }
    Ok(out)
}

/// Splits at `;` not escaped by `\`, and undoes `\;` and `\\`.
fn split_items(line: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (';' | '\\')) => current.push(next),
                Some(other) => {
                    current.push('\\');
                    current.push(other);
                }
                None => current.push('\\'),
            },
            ';' => items.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    items.push(current);
    items
}

/// Problems of one record, placed: each validator error under its column.
pub fn place(parsed: &Parsed, row: usize, errors: &[crate::FieldError]) -> Vec<Problem> {
    errors
        .iter()
        .map(|e| Problem {
            row,
            column: parsed.column_of(&e.field),
            field: Some(e.field.clone()),
            code: e.code,
            message: e.message.clone(),
        })
        .collect()
}

/// Counts rows by the ids they carry: a second row with an id already seen
/// is a problem of that row.
pub fn duplicate_ids(parsed: &Parsed) -> Vec<Problem> {
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    let heading = parsed
        .columns
        .iter()
        .find(|(_, c)| matches!(c, Column::Id))
        .map(|(h, _)| h.clone());
    let mut problems = Vec::new();
    for r in &parsed.rows {
        let Some(id) = &r.id else { continue };
        match first.get(id.as_str()) {
            Some(at) => problems.push(Problem {
                row: r.row,
                column: heading.clone(),
                field: Some("id".to_owned()),
                code: "duplicate_id",
                message: format!("row {at} has the same id {id}; a record appears once per file"),
            }),
            None => {
                first.insert(id.as_str(), r.row);
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(collection: Collection, fields: Value) -> RecordView {
        RecordView {
            id: "01jq2w3e4r5t6y7v8k9m0pasdf".parse().expect("id"),
            collection: collection.name().to_owned(),
            town: "tateshina".into(),
            created_at: "2025-04-01T00:30:00.000Z".into(),
            updated_at: "2025-04-02T15:00:00.000Z".into(),
            deleted: false,
            fields: fields.as_object().cloned().unwrap_or_default(),
            attachments: Vec::new(),
        }
    }

    fn read(c: Collection, text: &str) -> Parsed {
        parse(c, text.as_bytes(), 100)
    }

    #[test]
    fn an_export_is_excel_csv_with_labels_and_safe_cells() {
        let worker = view(
            Collection::Workers,
            json!({"name": "=HYPERLINK(\"http://x\")", "status": "active", "hours_per_week": 20.5,
                "joined_on": "2025-04-01", "mentor": "01jq2w3e4r5t6y7v8k9m0pasdg",
                "skills": [{"skill": "データ入力; 校正", "level": 4, "assessed_on": "2025-10-01"}, {"skill": "翻訳", "level": 2}],
                "notes": "一行目\n二行目"}),
        );
        let names = HashMap::from([(
            "01jq2w3e4r5t6y7v8k9m0pasdg".to_owned(),
            "結 花子".to_owned(),
        )]);
        let csv = records_csv(Collection::Workers, &[worker], &names, Lang::Ja);
        assert!(csv.starts_with("\u{feff}ID,氏名,ふりがな,"), "{csv}");
        assert!(
            csv.contains("作成した町,作成日時（日本時間）,更新日時（日本時間）\r\n"),
            "{csv}"
        );
        assert!(csv.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{csv}");
        assert!(csv.contains(",稼働中,20.5,2025-04-01,"), "{csv}");
        assert!(
            csv.contains(
                "\"スキル=データ入力\\; 校正; レベル=4; 評価日=2025-10-01\nスキル=翻訳; レベル=2\""
            ),
            "{csv}"
        );
        assert!(csv.contains("01jq2w3e4r5t6y7v8k9m0pasdg 結 花子"), "{csv}");
        assert!(csv.contains("\"一行目\n二行目\""), "{csv}");
        assert!(
            csv.contains("2025-04-01 09:30:00,2025-04-03 00:00:00\r\n"),
            "{csv}"
        );
        let en = records_csv(Collection::Workers, &[], &names, Lang::En);
        assert_eq!(
            en,
            "\u{feff}ID,Name,Name (kana),E-mail,Phone,Status,Hours per week,Joined on,Skills,Mentor,Notes,Town,Created (JST),Updated (JST)\r\n"
        );
    }

    #[test]
    fn an_export_reads_back_to_the_same_fields() {
        let fields = json!({"name": "-1 さん", "name_kana": "'=x", "status": "in_training", "hours_per_week": 20,
            "joined_on": "2025-04-01", "mentor": "01jq2w3e4r5t6y7v8k9m0pasdg",
            "skills": [{"skill": "a\\b;c", "level": 4, "assessed_on": "2025-10-01"}],
            "notes": "=1+1\n二行目"});
        let worker = view(Collection::Workers, fields.clone());
        let names = HashMap::from([(
            "01jq2w3e4r5t6y7v8k9m0pasdg".to_owned(),
            "結 花子".to_owned(),
        )]);
        for lang in [Lang::Ja, Lang::En] {
            let csv = records_csv(
                Collection::Workers,
                std::slice::from_ref(&worker),
                &names,
                lang,
            );
            let parsed = read(Collection::Workers, &csv);
            assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
            assert_eq!(parsed.encoding, "UTF-8");
            let row = &parsed.rows[0];
            assert_eq!(row.row, 2);
            assert_eq!(
                row.id.as_ref().map(RecordId::as_str),
                Some(worker.id.as_str())
            );
            assert_eq!(Value::Object(row.given()), fields, "{lang:?}");
        }
    }

    #[test]
    fn cells_as_excel_and_people_write_them() {
        let c = Collection::Orders;
        let p = read(
            c,
            "タイトル,Status,amount_jpy,納期,担当ワーカー\n請求書,受注,\"30,000\",2025/4/1,\"01jq2w3e4r5t6y7v8k9m0pasdf, 01jq2w3e4r5t6y7v8k9m0pasdg\n01jq2w3e4r5t6y7v8k9m0pasdh 佐藤\"\n見積,Quoted,３０００,2025年4月30日 ,\n,,,,\n",
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.rows.len(), 2, "the empty row is skipped");
        let f = &p.rows[0].fields;
        assert_eq!(f["status"], "ordered");
        assert_eq!(f["amount_jpy"], 30000);
        assert_eq!(f["due_on"], "2025-04-01");
        assert_eq!(
            f["assignees"],
            json!([
                "01jq2w3e4r5t6y7v8k9m0pasdf",
                "01jq2w3e4r5t6y7v8k9m0pasdg",
                "01jq2w3e4r5t6y7v8k9m0pasdh"
            ])
        );
        let g = &p.rows[1].fields;
        assert_eq!(g["status"], "quoted");
        assert_eq!(g["amount_jpy"], 3000);
        assert_eq!(g["due_on"], "2025-04-30");
        assert_eq!(g["assignees"], Value::Null);
    }

    #[test]
    fn shift_jis_and_utf16_files_are_read() {
        let text = "氏名,状態\r\n結 花子,稼働中\r\n";
        let (sjis, _, bad) = encoding_rs::SHIFT_JIS.encode(text);
        assert!(!bad);
        let p = parse(Collection::Workers, &sjis, 10);
        assert_eq!(p.encoding, "Shift_JIS");
        assert_eq!(p.rows[0].fields["name"], "結 花子");
        let mut utf16 = vec![0xff, 0xfe];
        for u in "氏名\t状態\r\n結 花子\t稼働中\r\n".encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let p = parse(Collection::Workers, &utf16, 10);
        assert_eq!(p.encoding, "UTF-16LE");
        assert_eq!(p.rows[0].fields["status"], "active");
        let p = parse(Collection::Workers, &[0x82, 0xa0, 0xff, 0xff], 10);
        assert_eq!(p.problems[0].code, "unreadable_file");
    }

    #[test]
    fn every_problem_is_placed() {
        let p = read(
            Collection::Workers,
            "ID,氏名,状態,週あたり稼働時間,好きな色,氏名\nxyz,a,稼働中,abc,,\n,b,引退,10,,\n",
        );
        let got: Vec<(usize, Option<&str>, &str)> = p
            .problems
            .iter()
            .map(|p| (p.row, p.column.as_deref(), p.code))
            .collect();
        assert_eq!(
            got,
            [
                (1, Some("好きな色"), "unknown_column"),
                (1, Some("氏名"), "duplicate_column"),
                (2, Some("ID"), "invalid_id"),
                (2, Some("週あたり稼働時間"), "invalid_type"),
                (3, Some("状態"), "invalid_enum"),
            ]
        );
        let p = read(Collection::Workers, "");
        assert_eq!(p.problems[0].code, "empty_file");
        let p = parse(Collection::Workers, "氏名\na\nb\nc\n".as_bytes(), 2);
        assert_eq!(p.problems[0].code, "too_many_rows");
    }

    #[test]
    fn labels_name_one_field_each() {
        for c in Collection::ALL {
            let mut keys: Vec<String> = vec![key("id")];
            for f in c.fields() {
                let mut own = field_keys(f).to_vec();
                own.sort();
                own.dedup();
                keys.extend(own);
                if let FieldKind::Enum(options) = f.kind {
                    let mut labels: Vec<String> = options
                        .iter()
                        .flat_map(|o| {
                            let mut k = vec![key(o.value), key(o.ja), key(o.en)];
                            k.sort();
                            k.dedup();
                            k
                        })
                        .collect();
                    let n = labels.len();
                    labels.sort();
                    labels.dedup();
                    assert_eq!(n, labels.len(), "{c}.{}: a label names two choices", f.name);
                }
            }
            let n = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(n, keys.len(), "{c}: a heading names two fields");
        }
    }

    #[test]
    fn formula_cells_are_neutralised_and_restored() {
        for s in ["=1+1", "+81", "-x", "@SUM", "\tx", "'=x", "''-1"] {
            let safe = formula_safe(s);
            assert!(safe.starts_with('\''), "{s:?}");
            assert_eq!(unneutralise(&safe), s);
        }
        assert_eq!(formula_safe("立科町"), "立科町");
        assert_eq!(unneutralise("'立科"), "'立科");
    }
}
