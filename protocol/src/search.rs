//! Japanese-aware search terms: what a record is indexed under and what a
//! query looks for.
//!
//! Text is normalised with NFKC (full-width Ｙｕｉ and half-width ｶﾀｶﾅ become
//! their ordinary forms) and lowercased, then split into runs. A run of
//! Latin letters or digits is one term (`dx`, `2024`). A run of any other
//! script (kanji, kana, …) is indexed as its overlapping character bigrams
//! plus its last character alone, so every substring of two or more
//! characters is a phrase of adjacent bigrams and a single character is a
//! prefix of some term. A word segmenter would miss compounds (水道 inside
//! 下水道); bigrams do not.
//!
//! The terms are plain space-separated tokens, already folded as search
//! needs them, meant for an SQLite FTS5 table with the `ascii` tokenizer
//! (which only splits at the spaces). The `unicode61` tokenizer would fold
//! them again, character by character: that was a tenth of a node's CPU
//! while it received a peer's records.

use unicode_normalization::UnicodeNormalization;

/// NFKC, lowercase, and Latin letters without their diacritics (`Café` →
/// `cafe`), as index and query both see text.
pub fn normalize(text: &str) -> String {
    // Most Japanese text is made of characters NFKC leaves alone; its
    // decomposition and recomposition were most of the cost of indexing.
    if text.chars().all(nfkc_stable) {
        // Only ASCII among these characters has case.
        return text.chars().map(|c| c.to_ascii_lowercase()).collect();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.nfkc().flat_map(char::to_lowercase) {
        if !c.is_ascii() && class_by_tables(c) == Class::Latin {
            // The base letter of its canonical decomposition; kana are not
            // Latin, so their voicing marks (が = か + ゙) stay.
            unicode_normalization::char::decompose_canonical(c, |d| {
                if !unicode_normalization::char::is_combining_mark(d) {
                    out.push(d);
                }
            });
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters NFKC leaves as they are, alone and next to each other (no
/// combining marks among them): ASCII, hiragana and katakana letters and
/// the prolonged sound mark, unified kanji, 々, and the punctuation of
/// Japanese sentences (、。「」『』【】・). By far the most common in the
/// towns' texts. (The ideographic space and full-width forms are not.)
pub fn nfkc_stable(c: char) -> bool {
    c.is_ascii()
        || matches!(
            c,
            '\u{3001}'..='\u{3002}'
                | '\u{3005}'
                | '\u{300C}'..='\u{3011}'
                | '\u{3041}'..='\u{3096}'
                | '\u{30A1}'..='\u{30FC}'
                | '\u{4E00}'..='\u{9FFF}'
        )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Latin,
    Other,
    Break,
}

fn class(c: char) -> Class {
    // Kana and unified kanji first: most of the towns' text, and
    // `is_alphanumeric` looks them up in Unicode tables.
    // (U+30FB, the katakana middle dot, is punctuation: not taken here.)
    if matches!(
        c,
        '\u{3041}'..='\u{3096}' | '\u{30A1}'..='\u{30FA}' | '\u{30FC}' | '\u{4E00}'..='\u{9FFF}'
    ) {
        return Class::Other;
    }
    class_by_tables(c)
}

fn class_by_tables(c: char) -> Class {
    if c.is_ascii_alphanumeric()
        || (c.is_alphanumeric() && (c as u32) < 0x2000 && !('\u{0370}'..='\u{03ff}').contains(&c))
    {
        // ASCII plus Latin with diacritics (which `normalize` removes).
        Class::Latin
    } else if c.is_alphanumeric() || c == 'ー' || c == '々' {
        Class::Other
    } else {
        Class::Break
    }
}

/// Splits normalised text into runs of one class.
fn runs(text: &str) -> Vec<(Class, Vec<char>)> {
    let mut out: Vec<(Class, Vec<char>)> = Vec::new();
    for c in text.chars() {
        let k = class(c);
        match out.last_mut() {
            Some((last, chars)) if *last == k && k != Class::Break => chars.push(c),
            _ if k == Class::Break => out.push((Class::Break, Vec::new())),
            _ => out.push((k, vec![c])),
        }
    }
    out.retain(|(k, chars)| *k != Class::Break && !chars.is_empty());
    out
}

/// Appends the index terms of `text` to `out`, space-separated.
///
/// The same terms as splitting into [`runs`] would give, written straight
/// into `out`: this runs for every text field of every record a peer sends,
/// and a string per bigram was most of its cost.
pub fn index_terms(text: &str, out: &mut String) {
    fn space(out: &mut String) {
        if !out.is_empty() {
            out.push(' ');
        }
    }
    let mut run = Class::Break;
    // The previous character of a run of `Other`, which starts the next bigram.
    let mut prev: Option<char> = None;
    for c in normalize(text).chars() {
        let k = class(c);
        if k != run {
            if let Some(last) = prev.take() {
                space(out);
                out.push(last);
            }
            run = k;
            match k {
                Class::Latin => {
                    space(out);
                    out.push(c);
                }
                Class::Other => prev = Some(c),
                Class::Break => {}
            }
            continue;
        }
        match k {
            Class::Latin => out.push(c),
            Class::Other => {
                if let Some(p) = prev {
                    space(out);
                    out.push(p);
                    out.push(c);
                }
                prev = Some(c);
            }
            Class::Break => {}
        }
    }
    if let Some(last) = prev {
        space(out);
        out.push(last);
    }
}

/// The FTS5 MATCH expression for a user's query, or `None` when the query has
/// no searchable characters. All parts must match (AND); a Latin word matches
/// as a prefix (`tele` finds `telework`); a run of kanji/kana matches as a
/// substring.
pub fn match_expression(query: &str) -> Option<String> {
    let mut parts = Vec::new();
    for (k, chars) in runs(&normalize(query)) {
        match k {
            Class::Latin => parts.push(format!("\"{}\"*", chars.iter().collect::<String>())),
            Class::Other if chars.len() == 1 => parts.push(format!("\"{}\"*", chars[0])),
            Class::Other => {
                let bigrams: Vec<String> = chars.windows(2).map(|p| p.iter().collect()).collect();
                parts.push(format!("\"{}\"", bigrams.join(" ")));
            }
            Class::Break => {}
        }
    }
    // Terms hold only letters and digits, so no quote can reach FTS5 unescaped.
    (!parts.is_empty()).then(|| parts.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(s: &str) -> String {
        let mut out = String::new();
        index_terms(s, &mut out);
        out
    }

    #[test]
    fn japanese_runs_become_bigrams_and_latin_words_stay_whole() {
        assert_eq!(terms("研修会"), "研修 修会 会");
        assert_eq!(terms("DX推進、Telework!"), "dx 推進 進 telework");
        assert_eq!(terms("ＤＸ　ｶﾀｶﾅ"), "dx カタ タカ カナ ナ");
        assert_eq!(terms("人々"), "人々 々");
    }

    /// The terms by way of [`runs`], as they were built before
    /// `index_terms` wrote them in place.
    fn terms_from_runs(s: &str) -> String {
        let mut out: Vec<String> = Vec::new();
        for (k, chars) in runs(&normalize(s)) {
            if k == Class::Latin {
                out.push(chars.iter().collect());
            } else {
                out.extend(chars.windows(2).map(|p| p.iter().collect::<String>()));
                out.extend(chars.last().map(char::to_string));
            }
        }
        out.join(" ")
    }

    #[test]
    fn latin_diacritics_fold_and_kana_voicing_stays() {
        assert_eq!(terms("Café MÜLLER, naïve"), "cafe muller naive");
        assert_eq!(terms("ｶﾞｲﾄﾞ がいど"), "ガイ イド ド がい いど ど");
        assert_eq!(match_expression("cafe").as_deref(), Some("\"cafe\"*"));
        assert_eq!(match_expression("CAFÉ").as_deref(), Some("\"cafe\"*"));
    }

    #[test]
    fn the_kana_and_kanji_shortcut_agrees_with_the_unicode_tables() {
        for c in ('\u{3000}'..='\u{30FF}').chain('\u{4E00}'..='\u{9FFF}') {
            assert!(class(c) == class_by_tables(c), "{c:?} U+{:04X}", c as u32);
        }
    }

    #[test]
    fn terms_written_in_place_equal_terms_from_runs() {
        let alphabet: Vec<char> = "aZ9é ー々研修会、。！「」ｶﾀＤ　-x\n人αβ下水道"
            .chars()
            .collect();
        // A fixed pseudo-random walk over mixed scripts and breaks.
        let mut state = 0x2545_f491_u32;
        for len in 0..400 {
            let s: String = (0..len % 23)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    alphabet[state as usize % alphabet.len()]
                })
                .collect();
            assert_eq!(terms(&s), terms_from_runs(&s), "{s:?}");
        }
        let mut two = String::from("前");
        index_terms("DX 研修", &mut two);
        assert_eq!(two, "前 dx 研修 修");
    }

    #[test]
    fn queries() {
        assert_eq!(match_expression("研修").as_deref(), Some("\"研修\""));
        assert_eq!(match_expression("下水道").as_deref(), Some("\"下水 水道\""));
        assert_eq!(match_expression("研").as_deref(), Some("\"研\"*"));
        assert_eq!(
            match_expression("DX 推進").as_deref(),
            Some("\"dx\"* AND \"推進\"")
        );
        // Operators typed by a user are searched for as words, never obeyed.
        assert_eq!(match_expression("\" OR *").as_deref(), Some("\"or\"*"));
        assert_eq!(match_expression("、。！"), None);
    }
}
