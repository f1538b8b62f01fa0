//! The personal-data guard: finds personal data in the fields of a record
//! before a shared record is stored (and so before it can leave the town).
//!
//! It owns the detectors — Japanese phone numbers, e-mail addresses, postal
//! codes, dates of birth named as such, My Number (with its check digit) and
//! the names and kana readings of the town's own registered people — and
//! the normalisation they run on: NFKC character by character (full-width
//! digits and letters become ASCII), dashes between digits become `-`, and
//! for names, spaces are dropped, hiragana read as katakana and a few
//! variant kanji folded. Every finding names the field, the kind and the
//! position in the field's original text (character offsets), so a form can
//! point at it. Findings carry a masked excerpt only: the guard's answer
//! goes into error bodies and logs, which must not repeat what it found.
//!
//! No I/O: the node passes the town's registered names in a [`Registry`].

use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

use crate::validate::{FieldValue, Fields};

/// What kind of personal data a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Phone,
    Email,
    PostalCode,
    BirthDate,
    MyNumber,
    RegisteredName,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Phone => "phone",
            Kind::Email => "email",
            Kind::PostalCode => "postal_code",
            Kind::BirthDate => "birth_date",
            Kind::MyNumber => "my_number",
            Kind::RegisteredName => "registered_name",
        }
    }

    /// Whether an administrator may publish a finding of this kind anyway,
    /// with a written reason. My Number never: the law allows no reason.
    pub fn may_override(self) -> bool {
        self != Kind::MyNumber
    }

    pub const ALL: [Kind; 6] = [
        Kind::Phone,
        Kind::Email,
        Kind::PostalCode,
        Kind::BirthDate,
        Kind::MyNumber,
        Kind::RegisteredName,
    ];
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of personal data found in a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The field's path: `body`, `tags[2]`, `metrics[0].name`.
    pub field: String,
    pub kind: Kind,
    /// Character offsets in the field's text as given (not normalised),
    /// `start` inclusive, `end` exclusive.
    pub start: usize,
    pub end: usize,
    /// The found text with all but its first and last characters masked.
    pub excerpt: String,
}

/// The names (and kana readings) of the town's registered people: its
/// workers and its customers' contacts. Built by the node from its local
/// records; matched after normalisation, with spaces removed.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Names by their first character, so a scan looks only at the names
    /// that can start where it stands (a town may register thousands).
    by_first: std::collections::HashMap<char, Vec<Vec<char>>>,
    len: usize,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a name or reading. Names of fewer than two characters after
    /// normalisation are ignored: one character would match everywhere.
    pub fn add(&mut self, name: &str) {
        let key: Vec<char> = name_key(name).into_iter().map(|(c, _)| c).collect();
        if key.len() < 2 {
            return;
        }
        let same_start = self.by_first.entry(key[0]).or_default();
        if !same_start.contains(&key) {
            same_start.push(key);
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Scans every text of a record's fields.
pub fn scan_fields(fields: &Fields, registry: &Registry) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, value) in fields {
        scan_value(name, value, registry, &mut out);
    }
    out
}

fn scan_value(path: &str, value: &FieldValue, registry: &Registry, out: &mut Vec<Finding>) {
    match value {
        FieldValue::Str(s) => out.extend(scan_text(path, s, registry)),
        FieldValue::Text(s) => out.extend(scan_markdown(path, s, registry)),
        FieldValue::Int(_) | FieldValue::Number(_) => {}
        FieldValue::StrList(items) => {
            for (i, s) in items.iter().enumerate() {
                out.extend(scan_text(&format!("{path}[{i}]"), s, registry));
            }
        }
        FieldValue::Objects(objects) => {
            for (i, object) in objects.iter().enumerate() {
                for (key, v) in object {
                    scan_value(&format!("{path}[{i}].{key}"), v, registry, out);
                }
            }
        }
    }
}

/// Scans one text; findings are in order of position.
pub fn scan_text(field: &str, text: &str, registry: &Registry) -> Vec<Finding> {
    let original: Vec<char> = text.chars().collect();
    let norm = normalise(&original);
    let chars: Vec<char> = norm.iter().map(|(c, _)| *c).collect();
    let mut spans: Vec<(Kind, usize, usize)> = Vec::new();
    find_emails(&chars, &mut spans);
    find_numbers(&chars, &mut spans);
    find_birth_dates(&chars, &mut spans);
    // Names: on the text without spaces, its own index map.
    let names_text = name_key_of(&norm);
    let name_chars: Vec<char> = names_text.iter().map(|(c, _)| *c).collect();
    for (at, c) in name_chars.iter().enumerate() {
        for name in registry.by_first.get(c).into_iter().flatten() {
            if name_chars[at..].starts_with(name) {
                let (s, e) = (names_text[at].1, names_text[at + name.len() - 1].1 + 1);
                spans.push((Kind::RegisteredName, s, e));
            }
        }
    }
    // Normalised positions to original ones, then drop duplicates and
    // spans inside a longer one of the same kind.
    let found: Vec<Finding> = spans
        .into_iter()
        .map(|(kind, s, e)| {
            let (start, end) = if kind == Kind::RegisteredName {
                (s, e)
            } else {
                (norm[s].1, norm[e - 1].1 + 1)
            };
            Finding {
                field: field.to_owned(),
                kind,
                start,
                end,
                excerpt: mask(&original[start..end]),
            }
        })
        .collect();
    fold_nested(found)
}

/// Findings in start order, without those inside a longer one of the
/// same kind.
fn fold_nested(mut found: Vec<Finding>) -> Vec<Finding> {
    // In start order (the longest first where two start together), a span
    // lies inside a kept one of its kind exactly when it ends no later than
    // the furthest end kept for that kind so far: one pass, so a text that
    // matches at every character (a registered "00" in a run of zeros)
    // costs linear time, not quadratic.
    found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end), f.kind));
    let mut furthest_end: std::collections::HashMap<Kind, usize> = Default::default();
    let mut kept: Vec<Finding> = Vec::new();
    for f in found {
        let end = furthest_end.entry(f.kind).or_insert(0);
        if f.end <= *end {
            continue;
        }
        *end = f.end;
        kept.push(f);
    }
    kept
}

/// Scans a Markdown text (every `Text` field is one): its source as
/// written, so nothing hides in a link's target, and its plain text
/// (`protocol::markdown`), so markup does not split a name (`山田**花子**`).
/// Findings are in the source's positions.
pub fn scan_markdown(field: &str, text: &str, registry: &Registry) -> Vec<Finding> {
    let found = scan_text(field, text, registry);
    if !crate::markdown::has_markup(text) {
        return found;
    }
    let plain = crate::markdown::plain_text(text);
    if plain.text == text {
        return found;
    }
    let original: Vec<char> = text.chars().collect();
    let mut all = found;
    for f in scan_text(field, &plain.text, registry) {
        let (start, end) = plain.source_range(f.start, f.end);
        if start < end && end <= original.len() {
            all.push(Finding {
                excerpt: mask(&original[start..end]),
                start,
                end,
                ..f
            });
        }
    }
    fold_nested(all)
}

fn mask(found: &[char]) -> String {
    found
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 || i + 1 == found.len() || c.is_whitespace() || *c == '-' || *c == '@' {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------

fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | 'ー' | '−' | '–' | '—' | '‐' | '‑' | '‒' | '―' | 'ｰ' | '－' | '─' | '━'
    )
}

/// NFKC character by character, each resulting char with the index of the
/// original char it came from; dashes between digits become `-`.
fn normalise(original: &[char]) -> Vec<(char, usize)> {
    let mut out = Vec::with_capacity(original.len());
    for (i, c) in original.iter().enumerate() {
        if crate::search::nfkc_stable(*c) {
            out.push((*c, i));
            continue;
        }
        for n in std::iter::once(*c).nfkc() {
            out.push((n, i));
        }
    }
    for i in 1..out.len().saturating_sub(1) {
        if is_dash(out[i].0) && out[i - 1].0.is_ascii_digit() && out[i + 1].0.is_ascii_digit() {
            out[i].0 = '-';
        }
    }
    out
}

/// The form names are compared in: normalised, without spaces or middle
/// dots, hiragana as katakana, variant kanji folded.
fn name_key(name: &str) -> Vec<(char, usize)> {
    let original: Vec<char> = name.chars().collect();
    name_key_of(&normalise(&original))
}

fn name_key_of(norm: &[(char, usize)]) -> Vec<(char, usize)> {
    norm.iter()
        .filter(|(c, _)| !c.is_whitespace() && !matches!(c, '・' | '･' | '.' | '·'))
        .map(|&(c, i)| (fold_name_char(c), i))
        .collect()
}

fn fold_name_char(c: char) -> char {
    match c {
        // Hiragana → katakana (same offset in the two blocks).
        'ぁ'..='ゖ' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
        // Variant kanji common in names that NFKC keeps apart.
        '髙' => '高',
        '﨑' | '嵜' => '崎',
        '邊' | '邉' => '辺',
        '齋' | '齊' => '斎',
        '濵' => '浜',
        '德' => '徳',
        '櫻' => '桜',
        '澤' => '沢',
        '廣' => '広',
        c => c,
    }
}

// ---------------------------------------------------------------------------
// Detectors (on normalised text)
// ---------------------------------------------------------------------------

fn find_emails(t: &[char], spans: &mut Vec<(Kind, usize, usize)>) {
    let local = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let domain = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    for at in (0..t.len()).filter(|&i| t[i] == '@') {
        let mut s = at;
        while s > 0 && local(t[s - 1]) {
            s -= 1;
        }
        let mut e = at + 1;
        while e < t.len() && domain(t[e]) {
            e += 1;
        }
        // A trailing dot ends the sentence, not the domain.
        while e > at + 1 && t[e - 1] == '.' {
            e -= 1;
        }
        let host: String = t[at + 1..e].iter().collect();
        let Some((_, tld)) = host.rsplit_once('.') else {
            continue;
        };
        if s < at && tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()) {
            spans.push((Kind::Email, s, e));
        }
    }
}

/// A run of digits joined by single separators, as numbers are written.
struct NumberRun {
    start: usize,
    end: usize,
    digits: String,
    groups: Vec<usize>,
    /// `+81` before it.
    international: bool,
}

fn number_runs(t: &[char]) -> Vec<NumberRun> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let opens = t[i] == '(' && t.get(i + 1).is_some_and(char::is_ascii_digit);
        if !t[i].is_ascii_digit() && !opens {
            i += 1;
            continue;
        }
        // A digit glued to a letter or a decimal point is not a number of its own.
        let start = i;
        let (mut digits, mut groups, mut current) = (String::new(), Vec::new(), 0);
        let mut j = i;
        while j < t.len() {
            let c = t[j];
            if c.is_ascii_digit() {
                digits.push(c);
                current += 1;
                j += 1;
            } else if matches!(c, '-' | '(' | ')' | ' ')
                && t.get(j + 1)
                    .is_some_and(|n| n.is_ascii_digit() || *n == '(')
                && (c != ' ' || current == 4)
            {
                if current > 0 {
                    groups.push(current);
                }
                current = 0;
                j += 1;
            } else if c == ')' && current > 0 {
                j += 1;
            } else {
                break;
            }
        }
        if current > 0 {
            groups.push(current);
        }
        let mut end = j;
        while end > start && !t[end - 1].is_ascii_digit() {
            end -= 1;
        }
        // +81: the country code is not part of the national number.
        let international = start > 0 && t[start - 1] == '+' && digits.starts_with("81");
        if international {
            digits.drain(..2);
            match groups.first_mut() {
                Some(2) => {
                    groups.remove(0);
                }
                Some(g) if *g > 2 => *g -= 2,
                _ => {}
            }
        }
        let glued = start > 0 && (t[start - 1].is_ascii_alphabetic() || t[start - 1] == '.')
            || t.get(end).is_some_and(|c| c.is_ascii_alphabetic());
        if !digits.is_empty() && !glued {
            runs.push(NumberRun {
                start,
                end,
                digits,
                groups,
                international,
            });
        }
        i = j.max(i + 1);
    }
    runs
}

fn find_numbers(t: &[char], spans: &mut Vec<(Kind, usize, usize)>) {
    for run in number_runs(t) {
        let d = run.digits.as_bytes();
        let n = d.len();
        let (s, e) = (run.start, run.end);
        if is_phone(&run) {
            spans.push((Kind::Phone, s, e));
        } else if n == 12
            && my_number_check(d)
            && (run.groups.len() == 1 || run.groups == [4, 4, 4])
        {
            spans.push((Kind::MyNumber, s, e));
        } else if n == 7 && run.groups == [3, 4] && postal_context(t, s) {
            spans.push((Kind::PostalCode, s, e));
        }
    }
}

/// A Japanese phone number: landlines 0A-…(10 digits), mobiles and IP
/// phones 070/080/090/050 (11 digits), or the same after +81 without the
/// leading 0. A bare 10- or 11-digit run must start like one; written with
/// separators it must also be grouped like one. Free-dial numbers (0120,
/// 0800) are firms', not people's, and are left alone.
fn is_phone(run: &NumberRun) -> bool {
    let d = &run.digits;
    let national = if run.international {
        format!("0{d}")
    } else {
        d.clone()
    };
    let b = national.as_bytes();
    if b.len() < 10 || b[0] != b'0' || b[1] == b'0' || matches!(&national[..4], "0120" | "0800") {
        return false;
    }
    let mobile = matches!(&national[..3], "070" | "080" | "090" | "050");
    let length_ok = if mobile { b.len() == 11 } else { b.len() == 10 };
    if !length_ok {
        return false;
    }
    match run.groups.len() {
        1 => true,
        // 0X-XXXX-XXXX, 0XX-XXX-XXXX, 0XXX-XX-XXXX, 0XXXX-X-XXXX, 090-XXXX-XXXX
        3 => run.groups[2] == 4 && run.groups[0] + run.groups[1] >= 5,
        // +81 90 1234 5678 has three groups after the country code.
        _ => false,
    }
}

/// 郵便番号 / 〒 just before a 3-4 digit code.
fn postal_context(t: &[char], start: usize) -> bool {
    let before: String = t[start.saturating_sub(8)..start].iter().collect();
    before.contains('〒') || before.contains("郵便") || before.to_lowercase().contains("zip")
}

/// My Number's check digit: weights 6,5,4,3,2,7,6,5,4,3,2 over the first
/// eleven digits; check = 11 − (sum mod 11), or 0 when the remainder is 0 or 1.
pub fn my_number_check(digits: &[u8]) -> bool {
    if digits.len() != 12 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    const WEIGHTS: [u32; 11] = [6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
    let sum: u32 = digits[..11]
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let remainder = sum % 11;
    let check = if remainder <= 1 { 0 } else { 11 - remainder };
    u32::from(digits[11] - b'0') == check
}

const BIRTH_WORDS: [&str; 8] = [
    "生年月日",
    "誕生日",
    "生まれ",
    "出生",
    "birthday",
    "birth",
    "born",
    "dob",
];

/// A date with a birth word close before or after it.
fn find_birth_dates(t: &[char], spans: &mut Vec<(Kind, usize, usize)>) {
    for (s, e) in dates(t) {
        let before: String = t[s.saturating_sub(12)..s]
            .iter()
            .collect::<String>()
            .to_lowercase();
        let after: String = t[e..(e + 8).min(t.len())]
            .iter()
            .collect::<String>()
            .to_lowercase();
        // "1985年4月1日生" as résumés write it.
        if after.starts_with('生')
            || BIRTH_WORDS
                .iter()
                .any(|w| before.contains(w) || after.contains(w))
        {
            spans.push((Kind::BirthDate, s, e));
        }
    }
}

/// Dates: 1985年4月1日, 昭和60年4月1日, 1985/4/1, 1985-04-01, 1985.4.1, S60.4.1.
fn dates(t: &[char]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // How many digits start at i, counted up to 5: enough to tell 1–2 and
    // exactly 4 from longer, and a run of zeros costs linear time.
    let digits_at = |i: usize| -> usize {
        t[i..]
            .iter()
            .take(5)
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut i = 0;
    while i < t.len() {
        let era = ["昭和", "平成", "令和", "大正"]
            .iter()
            .find(|e| t[i..].starts_with(&e.chars().collect::<Vec<_>>()))
            .map(|_| 2)
            .or_else(|| {
                (matches!(t[i], 'S' | 'H' | 'R' | 'T')
                    && t.get(i + 1).is_some_and(char::is_ascii_digit)
                    && (i == 0 || !t[i - 1].is_ascii_alphanumeric()))
                .then_some(1)
            });
        let start = i;
        let mut j = i + era.unwrap_or(0);
        let year = digits_at(j);
        let year_ok = if era.is_some() {
            (1..=2).contains(&year)
        } else {
            year == 4 && (start == 0 || !t[start - 1].is_ascii_digit())
        };
        if !year_ok || j >= t.len() {
            i += 1;
            continue;
        }
        j += year;
        let Some(&sep) = t.get(j) else { break };
        let kanji = sep == '年';
        if !(kanji || matches!(sep, '/' | '-' | '.')) {
            i += 1;
            continue;
        }
        j += 1;
        let month = digits_at(j);
        if !(1..=2).contains(&month) {
            i += 1;
            continue;
        }
        j += month;
        let want = if kanji { '月' } else { sep };
        if t.get(j) != Some(&want) {
            i += 1;
            continue;
        }
        j += 1;
        let day = digits_at(j);
        if !(1..=2).contains(&day) {
            i += 1;
            continue;
        }
        j += day;
        if kanji && t.get(j) == Some(&'日') {
            j += 1;
        }
        out.push((start, j));
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Kind> {
        let mut registry = Registry::new();
        registry.add("山田 花子");
        registry.add("やまだ はなこ");
        registry.add("髙橋一郎");
        scan_text("body", text, &registry)
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn positives() {
        let table: &[(&str, Kind)] = &[
            ("連絡先は090-1234-5678です", Kind::Phone),
            ("連絡先は09012345678です", Kind::Phone),
            ("携帯 ０８０ー１２３４ー５６７８ まで", Kind::Phone),
            ("携帯 ０８０−１２３４−５６７８", Kind::Phone),
            ("070–1234–5678", Kind::Phone),
            ("役場 0267-56-1234", Kind::Phone),
            ("代表 03-1234-5678", Kind::Phone),
            ("代表(03)1234-5678", Kind::Phone),
            ("+81-90-1234-5678", Kind::Phone),
            ("mail: hanako.yamada@example.co.jp.", Kind::Email),
            ("ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐ", Kind::Email),
            ("〒384-2305 長野県北佐久郡", Kind::PostalCode),
            ("〒３８４－２３０５", Kind::PostalCode),
            ("郵便番号 398-8601", Kind::PostalCode),
            ("生年月日：1985年4月1日", Kind::BirthDate),
            ("昭和60年4月1日生まれ", Kind::BirthDate),
            ("誕生日は 1990/12/24", Kind::BirthDate),
            ("DOB 1990-12-24", Kind::BirthDate),
            ("1985年4月1日生、立科町在住", Kind::BirthDate),
            ("マイナンバー 123456789018", Kind::MyNumber),
            ("個人番号 1234 5678 9018", Kind::MyNumber),
            ("1234-5678-9018", Kind::MyNumber),
            ("１２３４５６７８９０１８", Kind::MyNumber),
            ("担当は山田花子さん", Kind::RegisteredName),
            ("担当は山田 花子さん", Kind::RegisteredName),
            ("担当は山田　花子さん", Kind::RegisteredName),
            ("ヤマダハナコ", Kind::RegisteredName),
            ("やまだ・はなこ", Kind::RegisteredName),
            ("高橋一郎さん", Kind::RegisteredName),
        ];
        for (text, kind) in table {
            assert_eq!(kinds(text), vec![*kind], "{text}");
        }
    }

    #[test]
    fn negatives() {
        let table = [
            "令和6年度の新規雇用は15人、パイロット事業は3件",
            "研修は2024年4月1日から",
            "2024-04-01 に開始",
            "見積 120,000円、作業 12.5 時間",
            "123456789012",
            "1234-5678-9012",
            "注文番号 384-2305",
            "山田さんと花子さん",
            "ISBN 978-4-12-345678-9",
            "version 1.2.3",
            "090-1234-567",
            "@メンション",
            "user@localhost",
            "予算 105,565千円",
            "12345678901",
            "郵便局で 3 件",
            "0120-123-456 フリーダイヤル",
        ];
        for text in table {
            assert_eq!(kinds(text), vec![], "{text}");
        }
    }

    #[test]
    fn positions_are_in_the_original_text_and_the_excerpt_is_masked() {
        let text = "ｍ：０９０ー１２３４ー５６７８。";
        let found = scan_text("body", text, &Registry::new());
        assert_eq!(found.len(), 1);
        let f = &found[0];
        let original: String = text.chars().skip(f.start).take(f.end - f.start).collect();
        assert_eq!(original, "０９０ー１２３４ー５６７８");
        assert!(!f.excerpt.contains("１２３４"), "{}", f.excerpt);
        let name = {
            let mut r = Registry::new();
            r.add("山田花子");
            scan_text("title", "報告：山田 花子", &r)
        };
        assert_eq!((name[0].start, name[0].end), (3, 8));
    }

    #[test]
    fn the_fast_path_agrees_with_nfkc() {
        let stable = (0..0x1_0000)
            .filter_map(char::from_u32)
            .filter(|c| crate::search::nfkc_stable(*c));
        for c in stable {
            assert_eq!(
                std::iter::once(c).nfkc().collect::<String>(),
                c.to_string(),
                "{c:?}"
            );
            // `search::normalize` lowercases these as ASCII.
            assert_eq!(
                c.to_lowercase().collect::<String>(),
                c.to_ascii_lowercase().to_string(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn my_number_check_digit() {
        assert!(my_number_check(b"123456789018"));
        for last in b'0'..=b'9' {
            let mut n = *b"12345678901_";
            n[11] = last;
            assert_eq!(my_number_check(&n), last == b'8');
        }
        // Remainder 0 or 1 → check digit 0.
        assert!(my_number_check(b"000000000000"));
        assert!(!my_number_check(b"12345678901"));
    }

    #[test]
    fn fields_paths() {
        let mut fields = Fields::new();
        fields.insert("title", FieldValue::Str("連絡先".into()));
        fields.insert(
            "tags",
            FieldValue::StrList(vec!["ok".into(), "a@b.jp".into()]),
        );
        let found = scan_fields(&fields, &Registry::new());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "tags[1]");
        assert_eq!(found[0].kind, Kind::Email);
    }

    /// A text that matches at every character (a registered "00" in a long
    /// run of zeros, as a fuzzer sends) is scanned in one pass: every match
    /// is reported once, none nested in another, and a 20,000-digit run is
    /// no date. (It took seconds per field when the scan was quadratic.)
    #[test]
    fn a_text_matching_everywhere_is_scanned_in_linear_time() {
        let mut registry = Registry::new();
        registry.add("00");
        let text = "0".repeat(20_000);
        let found = scan_text("body", &text, &registry);
        assert_eq!(found.len(), 19_999);
        assert!(
            found
                .iter()
                .all(|f| f.kind == Kind::RegisteredName && f.end == f.start + 2)
        );
        assert!(scan_text("body", &text, &Registry::new()).is_empty());
        // Nested spans of one kind still fold into the longest.
        let mut registry = Registry::new();
        registry.add("山田花子");
        registry.add("花子");
        let found = scan_text("body", "担当は山田花子さん", &registry);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].start, found[0].end), (3, 7));
    }

    /// A Markdown text is read as written and as plain text: emphasis does
    /// not hide a registered name, and a link's target does not hide a
    /// phone number; positions are the source's.
    #[test]
    fn markdown_neither_splits_a_name_nor_hides_a_number() {
        let mut registry = Registry::new();
        registry.add("山田花子");
        let text = "担当は山田**花子**さん。[電話](tel:0267-00-0000)";
        let found = scan_markdown("body", text, &registry);
        let kinds: Vec<(Kind, usize, usize)> =
            found.iter().map(|f| (f.kind, f.start, f.end)).collect();
        assert_eq!(kinds[0], (Kind::RegisteredName, 3, 9), "{found:?}");
        assert!(found.iter().any(|f| f.kind == Kind::Phone), "{found:?}");
        let mut fields = crate::validate::Fields::new();
        fields.insert("body", FieldValue::Text(text.to_owned()));
        assert_eq!(scan_fields(&fields, &registry), found);
        // Plain text without markup is scanned once, as before.
        assert_eq!(
            scan_markdown("body", "担当は山田花子さん", &registry),
            scan_text("body", "担当は山田花子さん", &registry)
        );
    }
}
