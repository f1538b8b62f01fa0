//! Atom feeds (RFC 4287) as text: a [`Feed`] of [`Entry`]s written as one
//! XML document, with everything in it escaped. What goes into a feed (which
//! records, their titles and summaries, the links) is the node's choice; this
//! module only makes sure that whatever a peer wrote into a title reaches a
//! feed reader as text: `&`, `<`, `>` and quotes are escaped, and characters
//! XML 1.0 cannot carry at all (most C0 controls, U+FFFE, U+FFFF) are left
//! out rather than making the whole feed unreadable. Entry and feed ids are
//! `urn:uuid:` URNs derived from SHA-256 of what identifies them, so they are
//! the same on every fetch and on every node that holds the same version.

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The Atom namespace.
pub const NAMESPACE: &str = "http://www.w3.org/2005/Atom";
/// The media type of a feed, as served.
pub const CONTENT_TYPE: &str = "application/atom+xml; charset=utf-8";

/// A feed: its metadata and its entries, in the order they are written.
#[derive(Debug, Clone)]
pub struct Feed {
    /// An IRI, e.g. from [`uuid_urn`].
    pub id: String,
    pub title: String,
    pub subtitle: Option<String>,
    /// `xml:lang` of the feed (`ja`).
    pub lang: &'static str,
    /// RFC 3339; used as is when it parses, else `fallback_time`.
    pub updated: String,
    /// The feed's own URL (`rel="self"`).
    pub self_href: String,
    /// A page for people (`rel="alternate"`, HTML).
    pub alternate_href: String,
    /// `atom:generator`.
    pub generator: &'static str,
    pub entries: Vec<Entry>,
}

/// One entry of a feed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub title: String,
    /// The entry's author (`atom:author/atom:name`).
    pub author: String,
    /// Plain text (`type="text"`); left out when empty.
    pub summary: String,
    /// RFC 3339.
    pub updated: String,
    /// RFC 3339; left out when it does not parse.
    pub published: String,
    /// The page of the entry for people (`rel="alternate"`, HTML).
    pub href: String,
    /// `atom:category` term and label.
    pub category: (String, String),
}

/// Writes `feed` as an Atom document. A time that does not parse as
/// RFC 3339 is replaced by `fallback_time` (which must, e.g. the node's
/// clock now), so the document always validates.
pub fn write(feed: &Feed, fallback_time: &str) -> String {
    let time = |t: &str| date_time(t).unwrap_or_else(|| fallback_time.to_owned());
    let mut out = String::with_capacity(1024 + feed.entries.len() * 1024);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let _ = writeln!(
        out,
        "<feed xmlns=\"{NAMESPACE}\" xml:lang=\"{}\">",
        escape(feed.lang)
    );
    element(&mut out, "id", &feed.id);
    text_element(&mut out, "title", &feed.title);
    if let Some(subtitle) = &feed.subtitle {
        text_element(&mut out, "subtitle", subtitle);
    }
    element(&mut out, "updated", &time(&feed.updated));
    let _ = writeln!(
        out,
        "<link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>",
        escape(&feed.self_href)
    );
    let _ = writeln!(
        out,
        "<link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
        escape(&feed.alternate_href)
    );
    element(&mut out, "generator", feed.generator);
    for entry in &feed.entries {
        out.push_str("<entry>\n");
        element(&mut out, "id", &entry.id);
        text_element(&mut out, "title", &entry.title);
        let _ = writeln!(
            out,
            "<author><name>{}</name></author>",
            escape(&entry.author)
        );
        element(&mut out, "updated", &time(&entry.updated));
        if let Some(published) = date_time(&entry.published) {
            element(&mut out, "published", &published);
        }
        let _ = writeln!(
            out,
            "<link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
            escape(&entry.href)
        );
        let (term, label) = &entry.category;
        let _ = writeln!(
            out,
            "<category term=\"{}\" label=\"{}\"/>",
            escape(term),
            escape(label)
        );
        if !entry.summary.trim().is_empty() {
            text_element(&mut out, "summary", &entry.summary);
        }
        out.push_str("</entry>\n");
    }
    out.push_str("</feed>\n");
    out
}

fn element(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(out, "<{name}>{}</{name}>", escape(value));
}

fn text_element(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(out, "<{name} type=\"text\">{}</{name}>", escape(value));
}

/// `s` as XML character data or an attribute value: markup characters
/// escaped, and characters XML 1.0 does not allow (even escaped) left out.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // A line break in an attribute would be read back as a space.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if xml_char(c) => out.push(c),
            _ => {}
        }
    }
    out
}

/// The `Char` production of XML 1.0 (tab, line feed and carriage return
/// are handled by [`escape`]).
fn xml_char(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// `t` as an RFC 3339 time in UTC (which is also an `xsd:dateTime`), if it
/// is one with a four-digit year.
pub fn date_time(t: &str) -> Option<String> {
    let parsed = OffsetDateTime::parse(t, &Rfc3339).ok()?;
    let utc = parsed.checked_to_offset(time::UtcOffset::UTC)?;
    if !(0..=9999).contains(&utc.year()) {
        return None;
    }
    utc.format(&Rfc3339).ok()
}

/// A `urn:uuid:` URN from SHA-256 of `parts` (each length-prefixed, so
/// `["ab", "c"]` and `["a", "bc"]` differ): a version 8 UUID (RFC 9562
/// §5.8), stable for the same parts.
pub fn uuid_urn(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let digest = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The first `max` characters of `text` with its runs of white space
/// (line breaks included) made one space, and `…` if it was longer.
pub fn summary_of(text: &str, max: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let joined = words.join(" ");
    if joined.chars().count() <= max {
        return joined;
    }
    let mut cut: String = joined.chars().take(max).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(title: &str) -> Feed {
        Feed {
            id: uuid_urn(&[b"feed"]),
            title: "ナレッジ".into(),
            subtitle: None,
            lang: "ja",
            updated: "2026-12-03T10:00:00.000Z".into(),
            self_href: "http://127.0.0.1:7480/feeds/knowledge.atom?token=a&b".into(),
            alternate_href: "http://127.0.0.1:7480/records/knowledge".into(),
            generator: "Yui",
            entries: vec![Entry {
                id: uuid_urn(&[b"entry"]),
                title: title.into(),
                author: "立科町".into(),
                summary: "要約".into(),
                updated: "not a time".into(),
                published: "2026-12-01T09:00:00+09:00".into(),
                href: "http://127.0.0.1:7480/records/knowledge/x".into(),
                category: ("knowledge".into(), "ナレッジ".into()),
            }],
        }
    }

    #[test]
    fn hostile_text_stays_text_and_bad_characters_are_left_out() {
        let xml = write(
            &feed("<script>alert(1)</script> & \"q\" \u{1}\u{FFFE}ok]]>"),
            "2026-12-03T11:00:00Z",
        );
        assert!(
            xml.contains(
                "<title type=\"text\">&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot; ok]]&gt;</title>"
            ),
            "{xml}"
        );
        assert!(!xml.contains('\u{1}') && !xml.contains('\u{FFFE}'));
        assert!(xml.contains("token=a&amp;b"), "{xml}");
        // A time that does not parse is replaced; one with an offset is UTC.
        assert!(
            xml.contains("<updated>2026-12-03T11:00:00Z</updated>"),
            "{xml}"
        );
        assert!(
            xml.contains("<published>2026-12-01T00:00:00Z</published>"),
            "{xml}"
        );
    }

    #[test]
    fn ids_are_stable_uuid_urns_that_depend_on_every_part() {
        let a = uuid_urn(&[b"ab", b"c"]);
        assert_eq!(a, uuid_urn(&[b"ab", b"c"]));
        assert_ne!(a, uuid_urn(&[b"a", b"bc"]));
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
        // Version 8, RFC 9562 variant.
        assert_eq!(&a[9 + 14..9 + 15], "8");
        assert!("89ab".contains(&a[9 + 19..9 + 20]));
    }

    #[test]
    fn summaries_are_one_line_and_bounded() {
        assert_eq!(summary_of("一行目\n\n二行目  三", 100), "一行目 二行目 三");
        assert_eq!(summary_of("あいうえお", 3), "あいう…");
    }
}
