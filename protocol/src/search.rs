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
//! The terms are plain space-separated tokens, meant for an SQLite FTS5 table
//! with the default `unicode61` tokenizer.

use unicode_normalization::UnicodeNormalization;

/// NFKC and lowercase, as index and query both see text.
pub fn normalize(text: &str) -> String {
    // Most Japanese text is made of characters NFKC leaves alone; its
    // decomposition and recomposition were most of the cost of indexing.
    if text.chars().all(nfkc_stable) {
        return text.chars().flat_map(char::to_lowercase).collect();
    }
    text.nfkc().flat_map(char::to_lowercase).collect()
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
    if c.is_ascii_alphanumeric()
        || (c.is_alphanumeric() && (c as u32) < 0x2000 && !('\u{0370}'..='\u{03ff}').contains(&c))
    {
        // ASCII plus Latin with diacritics; unicode61 folds the diacritics.
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
