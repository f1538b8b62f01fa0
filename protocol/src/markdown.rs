//! Long texts are Markdown: what a record's text fields look like rendered,
//! and what they say as plain text.
//!
//! Every `Text` field (an article's body, a failure case's causes, a pilot's
//! outcome, a worker's notes) is CommonMark with tables and strikethrough.
//! [`to_html`] renders it for the console, and it is the only way the console
//! shows such a field, so it must be safe whatever a town (or a peer that
//! relays one) wrote: raw HTML in the source is shown as text, never passed
//! through; a link keeps its target only when it is `http:`, `https:`,
//! `mailto:` or a path on this node, and gets `rel="noopener noreferrer
//! nofollow"`; an image is shown as a link to it, never loaded. The renderer
//! escapes every text and attribute it writes, so the tags of its output are
//! only those it emits for Markdown's own constructs. (The console's strict
//! Content-Security-Policy is the second wall.)
//!
//! [`plain_text`] is what the text says without its markup, with a map back
//! to the source: the search index and the personal-data guard read it, so
//! `山田**花子**` is the name 山田花子 to both.
//!
//! Line breaks inside a paragraph are kept as breaks: texts written before
//! they were Markdown read as they did.

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH
}

/// Whether `text` may hold Markdown beyond line breaks: one of
/// ``*_[]<>#`~|\&`` anywhere, or a line that starts like a list item, a
/// heading underline or an indented code block. When it holds none, the
/// parser would change nothing but its line breaks, so the index and the
/// guard read it as it is (most of the towns' texts are plain prose).
pub fn has_markup(text: &str) -> bool {
    if text.bytes().any(|b| {
        matches!(
            b,
            b'*' | b'_' | b'[' | b']' | b'<' | b'>' | b'#' | b'`' | b'~' | b'|' | b'\\' | b'&'
        )
    }) {
        return true;
    }
    text.lines().any(|line| {
        if line.starts_with('\t') || line.starts_with("    ") {
            return true;
        }
        let line = line.trim_start_matches(' ');
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        line.starts_with(['-', '+', '=']) || (digits > 0 && line[digits..].starts_with(['.', ')']))
    })
}

/// A link target the console may point at: `http:`, `https:`, `mailto:`,
/// or a path on this node (`/records/…`, `#…`). Anything else
/// (`javascript:`, `data:`, `file:`, a scheme hidden behind control
/// characters) is not a link.
pub fn is_safe_link(url: &str) -> bool {
    let url = url.trim();
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    // A browser reads `\` as `/` in a path, so `/\evil.example` would
    // leave the node like `//evil.example`.
    if url.contains('\\') {
        return false;
    }
    if url.starts_with('#') || (url.starts_with('/') && !url.starts_with("//")) {
        return true;
    }
    let Some((scheme, rest)) = url.split_once(':') else {
        return false;
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => rest.starts_with("//") && rest.len() > 2,
        "mailto" => !rest.is_empty(),
        _ => false,
    }
}

/// The sanitised HTML of a Markdown text (see the module's note).
pub fn to_html(src: &str) -> String {
    let mut out = String::with_capacity(src.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, safe_events(src));
    out
}

/// The renderer's events with everything unsafe taken out: raw HTML as
/// text, links checked and marked, images as links, bare URLs as links,
/// headings two levels down (the page has its own).
fn safe_events(src: &str) -> impl Iterator<Item = Event<'_>> {
    // For each open link, whether it was written as one.
    let mut links: Vec<bool> = Vec::new();
    let mut in_code_block = false;
    // For an image: its alt text is collected, then shown as one link.
    let mut image: Option<(CowStr<'_>, String)> = None;
    Parser::new_ext(src, options()).flat_map(move |event| {
        let mut out: Vec<Event<'_>> = Vec::with_capacity(1);
        if let Some((_, alt)) = image.as_mut() {
            match event {
                Event::End(TagEnd::Image) => {
                    let (url, alt) = image
                        .take()
                        .unwrap_or((CowStr::Borrowed(""), String::new()));
                    let alt = if alt.trim().is_empty() {
                        url.to_string()
                    } else {
                        alt
                    };
                    if is_safe_link(&url) && links.is_empty() {
                        out.push(Event::Html(link_open(&url, "image").into()));
                        out.push(Event::Text(alt.into()));
                        out.push(Event::Html("</a>".into()));
                    } else {
                        out.push(Event::Text(alt.into()));
                    }
                }
                Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                    alt.push_str(&t)
                }
                _ => {}
            }
            return out;
        }
        match event {
            Event::Start(Tag::Link { dest_url, .. }) => {
                // A link inside a link is not one (CommonMark forbids it).
                let written = is_safe_link(&dest_url) && links.is_empty();
                if written {
                    out.push(Event::Html(link_open(&dest_url, "").into()));
                }
                links.push(written);
            }
            Event::End(TagEnd::Link) => {
                if links.pop() == Some(true) {
                    out.push(Event::Html("</a>".into()));
                }
            }
            Event::Start(Tag::Image { dest_url, .. }) => image = Some((dest_url, String::new())),
            Event::End(TagEnd::Image) => {}
            Event::Start(Tag::Heading { level, .. }) => out.push(Event::Start(Tag::Heading {
                level: lower(level),
                id: None,
                classes: Vec::new(),
                attrs: Vec::new(),
            })),
            Event::End(TagEnd::Heading(level)) => {
                out.push(Event::End(TagEnd::Heading(lower(level))))
            }
            Event::Start(Tag::CodeBlock(_)) => {
                in_code_block = true;
                // No language class: it would come from the source.
                out.push(Event::Start(Tag::CodeBlock(
                    pulldown_cmark::CodeBlockKind::Indented,
                )));
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code_block = false;
                out.push(Event::End(TagEnd::CodeBlock));
            }
            // Raw HTML is shown as what it is: text.
            Event::Html(t) | Event::InlineHtml(t) => out.push(Event::Text(t)),
            Event::Text(t) if links.is_empty() && !in_code_block => autolink(t, &mut out),
            Event::SoftBreak if !in_code_block => out.push(Event::HardBreak),
            // Extensions not switched on above do not occur; were one
            // switched on by mistake, its output is dropped.
            Event::TaskListMarker(_)
            | Event::FootnoteReference(_)
            | Event::InlineMath(_)
            | Event::DisplayMath(_) => {}
            Event::Start(Tag::FootnoteDefinition(_))
            | Event::End(TagEnd::FootnoteDefinition)
            | Event::Start(Tag::MetadataBlock(_))
            | Event::End(TagEnd::MetadataBlock(_))
            | Event::Start(Tag::HtmlBlock)
            | Event::End(TagEnd::HtmlBlock) => {}
            other => out.push(other),
        }
        out
    })
}

/// `<a href="URL" rel="…">`. The URL passed [`is_safe_link`] (no white
/// space, no control character); it is escaped for the attribute.
fn link_open(url: &str, class: &str) -> String {
    let mut href = String::with_capacity(url.len());
    for c in url.trim().chars() {
        match c {
            '&' => href.push_str("&amp;"),
            '"' => href.push_str("&quot;"),
            '\'' => href.push_str("&#39;"),
            '<' => href.push_str("&lt;"),
            '>' => href.push_str("&gt;"),
            c => href.push(c),
        }
    }
    let class = if class.is_empty() {
        String::new()
    } else {
        format!(" class=\"{class}\"")
    };
    format!("<a href=\"{href}\" rel=\"noopener noreferrer nofollow\"{class}>")
}

/// A heading two levels down: the record's page has its h1 and h2.
fn lower(level: HeadingLevel) -> HeadingLevel {
    match level {
        HeadingLevel::H1 => HeadingLevel::H3,
        HeadingLevel::H2 => HeadingLevel::H4,
        HeadingLevel::H3 => HeadingLevel::H5,
        _ => HeadingLevel::H6,
    }
}

/// Text with its bare `http://` and `https://` URLs made links. A URL ends
/// at white space, at a character outside ASCII (Japanese text runs on
/// straight after it) or at one of `<>"'` and a closing bracket with no
/// opening one in it; a trailing `.,;:!?` is the sentence's, not the URL's.
fn autolink<'a>(text: CowStr<'a>, out: &mut Vec<Event<'a>>) {
    let mut rest: &str = &text;
    if !rest.contains("http") {
        out.push(Event::Text(text));
        return;
    }
    let mut pieces: Vec<Event<'a>> = Vec::new();
    while let Some(at) = find_url(rest) {
        let (before, from) = rest.split_at(at);
        let mut end = from
            .find(|c: char| {
                !c.is_ascii()
                    || c.is_ascii_whitespace()
                    || c.is_ascii_control()
                    || "<>\"'".contains(c)
            })
            .unwrap_or(from.len());
        while end > 0 && from[..end].ends_with(['.', ',', ';', ':', '!', '?']) {
            end -= 1;
        }
        if from[..end].ends_with(')') && !from[..end].contains('(') {
            end -= 1;
        }
        let url = &from[..end];
        if !before.is_empty() {
            pieces.push(Event::Text(before.to_owned().into()));
        }
        if is_safe_link(url) {
            pieces.push(Event::Html(link_open(url, "").into()));
            pieces.push(Event::Text(url.to_owned().into()));
            pieces.push(Event::Html("</a>".into()));
        } else {
            pieces.push(Event::Text(url.to_owned().into()));
        }
        rest = &from[end..];
        if end == 0 {
            // Cannot happen (find_url found a scheme); stop rather than loop.
            break;
        }
    }
    if !rest.is_empty() {
        pieces.push(Event::Text(rest.to_owned().into()));
    }
    out.extend(pieces);
}

fn find_url(text: &str) -> Option<usize> {
    let http = text.find("http://");
    let https = text.find("https://");
    match (http, https) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A Markdown text's plain text: what its words say, without markup, with
/// where each of its characters came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainText {
    pub text: String,
    /// For each character of `text`, the character range of the source it
    /// stands for (one character, or a whole escape or entity).
    spans: Vec<(usize, usize)>,
}

impl PlainText {
    /// The source's character range for `text`'s characters `start..end`.
    pub fn source_range(&self, start: usize, end: usize) -> (usize, usize) {
        if start >= end || end > self.spans.len() {
            return (0, 0);
        }
        (self.spans[start].0, self.spans[end - 1].1)
    }
}

/// The plain text of `src` (see [`PlainText`]). Blocks, list items, table
/// cells and line breaks become line breaks, so words of two blocks do not
/// run together; link targets are not text.
pub fn plain_text(src: &str) -> PlainText {
    let mut text = String::with_capacity(src.len());
    let mut spans = Vec::with_capacity(src.len());
    // Byte offset to character offset in `src`, for the parser's ranges:
    // a table made once, since counting from the start at every event is
    // quadratic in the length of the text.
    let mut char_of_byte = vec![0usize; src.len() + 1];
    let mut chars = 0;
    for (byte, c) in src.char_indices() {
        char_of_byte[byte..byte + c.len_utf8()].fill(chars);
        chars += 1;
    }
    char_of_byte[src.len()] = chars;
    let char_at = |byte: usize| char_of_byte[byte];
    let mut last_char = 0usize;
    let newline = |text: &mut String, spans: &mut Vec<(usize, usize)>, at: usize| {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
            spans.push((at, at));
        }
    };
    for (event, range) in Parser::new_ext(src, options()).into_offset_iter() {
        match event {
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                let start = char_at(range.start);
                let end = char_at(range.end);
                last_char = end;
                let source = &src[range.clone()];
                if *source == *t {
                    for (i, c) in t.chars().enumerate() {
                        text.push(c);
                        spans.push((start + i, start + i + 1));
                    }
                } else {
                    // An escape or an entity (`\*`, `&amp;`): the whole
                    // source range stands for each of its characters.
                    for c in t.chars() {
                        text.push(c);
                        spans.push((start, end));
                    }
                }
            }
            Event::SoftBreak | Event::HardBreak | Event::Rule => {
                let at = char_at(range.start);
                newline(&mut text, &mut spans, at);
            }
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::TableCell
                | TagEnd::CodeBlock
                | TagEnd::BlockQuote(_),
            ) => newline(&mut text, &mut spans, last_char),
            _ => {}
        }
    }
    while text.ends_with('\n') {
        text.pop();
        spans.pop();
    }
    PlainText { text, spans }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The tags the renderer may emit, and the attributes they may carry.
    const TAGS: &[&str] = &[
        "p",
        "br",
        "h3",
        "h4",
        "h5",
        "h6",
        "em",
        "strong",
        "del",
        "code",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "li",
        "hr",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "a",
    ];

    /// Every tag in `html` with its attributes and their values, as a
    /// browser reads them (names lowercased; values in double quotes, the
    /// only quoting the renderer writes).
    fn tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
        let mut out = Vec::new();
        let mut rest = html;
        while let Some(at) = rest.find('<') {
            let after = &rest[at + 1..];
            let name_len = after
                .trim_start_matches('/')
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .expect("a tag ends");
            let slash = usize::from(after.starts_with('/'));
            let name = after[slash..slash + name_len].to_ascii_lowercase();
            let mut inside = &after[slash + name_len..];
            let mut attrs = Vec::new();
            loop {
                inside = inside.trim_start();
                if let Some(next) = inside.strip_prefix('>') {
                    rest = next;
                    break;
                }
                if let Some(next) = inside.strip_prefix("/>") {
                    rest = next;
                    break;
                }
                let eq = inside.find('=').expect("an attribute has a value");
                let attr = inside[..eq].trim().to_ascii_lowercase();
                let value_start = &inside[eq + 1..];
                assert!(
                    value_start.starts_with('"'),
                    "an unquoted value in {html:?}"
                );
                let close = value_start[1..].find('"').expect("a value ends");
                attrs.push((attr, value_start[1..1 + close].to_owned()));
                inside = &value_start[close + 2..];
            }
            out.push((name, attrs));
        }
        out
    }

    fn assert_safe(src: &str) {
        let html = to_html(src);
        for (name, attrs) in tags(&html) {
            assert!(
                TAGS.contains(&name.as_str()),
                "tag {name:?} in {html:?} from {src:?}"
            );
            for (attr, value) in &attrs {
                match attr.as_str() {
                    "href" => {
                        let url = value.to_ascii_lowercase();
                        assert!(!url.contains('\\'), "href {url:?} in {html:?} from {src:?}");
                        assert!(
                            url.starts_with("http://")
                                || url.starts_with("https://")
                                || url.starts_with("mailto:")
                                || url.starts_with('/')
                                || url.starts_with('#'),
                            "href {url:?} in {html:?} from {src:?}"
                        );
                    }
                    "rel" => assert_eq!(value, "noopener noreferrer nofollow"),
                    "class" => assert_eq!(value, "image"),
                    // Table cells' alignment and a list's first number.
                    "style" => assert!(value.starts_with("text-align: "), "{html}"),
                    "start" => assert!(value.bytes().all(|b| b.is_ascii_digit()), "{html}"),
                    _ => panic!("attribute {attr:?} in {html:?} from {src:?}"),
                }
            }
        }
    }

    #[test]
    fn markdown_renders_headings_lists_links_and_tables() {
        let html = to_html(
            "# 研修の進め方\n\n- 模擬業務\n- **振り返り**\n\n詳しくは [手引き](https://example.jp/guide) を。\n\n| 週 | 内容 |\n| --- | --- |\n| 1 | 模擬業務 |\n",
        );
        assert!(html.contains("<h3>研修の進め方</h3>"), "{html}");
        assert!(
            html.contains("<li><strong>振り返り</strong></li>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<a href=\"https://example.jp/guide\" rel=\"noopener noreferrer nofollow\">手引き</a>"
            ),
            "{html}"
        );
        assert!(
            html.contains("<table>") && html.contains("<td>模擬業務</td>"),
            "{html}"
        );
    }

    #[test]
    fn plain_line_breaks_and_bare_urls_read_as_written() {
        let html =
            to_html("朝に予定を立てる。\n夕方に振り返る。資料はhttps://example.jp/a?b=1&c=2。");
        assert!(html.contains("立てる。<br />"), "{html}");
        assert!(
            html.contains("<a href=\"https://example.jp/a?b=1&amp;c=2\" rel=\"noopener noreferrer nofollow\">https://example.jp/a?b=1&amp;c=2</a>。"),
            "{html}"
        );
    }

    #[test]
    fn script_handlers_and_hostile_links_never_reach_the_page() {
        for src in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "本文 <img src=\"x\" onerror=\"alert(1)\"> 続き",
            "[押して](javascript:alert(1))",
            "[押して](JaVaScRiPt:alert(1))",
            "[押して](&#106;avascript:alert(1))",
            "[押して](java\\\nscript:alert(1))",
            "[押して](data:text/html;base64,PHNjcmlwdD4=)",
            "<javascript:alert(1)>",
            "![画像](https://evil.example/x.png)",
            "![画像](javascript:alert(1))",
            "[a](https://x.example \"t\\\" onmouseover=\\\"alert(1)\")",
            "<a href=\"javascript:alert(1)\">x</a>",
            "```html\n<script>alert(1)</script>\n```",
            "<iframe src=https://evil.example></iframe>",
            "<style>body{display:none}</style>",
            "[![x](https://e.example/i.png)](javascript:alert(1))",
            "https://example.jp/\"onmouseover=alert(1)",
            "[外へ](/\\evil.example/)",
            "[外へ](//evil.example/)",
        ] {
            assert_safe(src);
        }
        let html = to_html("<script>alert(1)</script>");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        let html = to_html("![図](https://evil.example/x.png)");
        assert!(html.contains("class=\"image\">図</a>"), "{html}");
        for src in ["[外へ](/\\evil.example/)", "[外へ](//evil.example/)"] {
            assert!(!to_html(src).contains("<a"), "{src}: {}", to_html(src));
        }
        assert!(
            to_html("[記録](/records/knowledge/01m8)")
                .contains("<a href=\"/records/knowledge/01m8\"")
        );
        let html = to_html("[押して](javascript:alert(1))");
        assert!(!html.contains("<a"), "{html}");
        assert!(html.contains("押して"), "{html}");
    }

    proptest! {
        /// Any text made of Markdown's and HTML's pieces renders to the
        /// allowed tags and attributes only, with safe link targets.
        #[test]
        fn any_text_renders_to_allowed_tags_only(pieces in proptest::collection::vec(
            proptest::sample::select(vec![
                "<", ">", "\"", "'", "=", "/", "[", "]", "(", ")", "!", "*", "_", "`", "#", "|",
                "-", "\n", " ", "\\", "&", ";", "#x6a;", "script", "img", "a href", "onerror",
                "javascript:", "JavaScript:", "data:", "https://e.example", "mailto:", "alert(1)",
                "研修", "&lt;", "<!--", "-->", "<![CDATA[", "]]>", "\t", "    ", ":", "style",
            ]),
            0..40,
        )) {
            assert_safe(&pieces.concat());
        }

        /// A text without markup says the same as its plain text: only line
        /// breaks (blank lines, trailing spaces) may differ.
        #[test]
        fn text_without_markup_is_its_plain_text(src in "[a-z研修 .,:;!?()0-9\n-]{0,60}") {
            prop_assume!(!has_markup(&src));
            let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
            prop_assert_eq!(words(&plain_text(&src).text), words(&src));
        }

        /// The plain text's map points every character at a place in the
        /// source that holds it, or at the escape that stands for it.
        #[test]
        fn plain_text_maps_back_into_the_source(src in "[a-z山田*_\\[\\]()#\\-\n >|`\\\\&;]{0,60}") {
            let plain = plain_text(&src);
            let chars: Vec<char> = src.chars().collect();
            for (i, c) in plain.text.chars().enumerate() {
                let (s, e) = plain.source_range(i, i + 1);
                prop_assert!(s <= e && e <= chars.len());
                if c != '\n' && e == s + 1 {
                    prop_assert_eq!(chars[s], c);
                }
            }
        }
    }

    #[test]
    fn plain_text_drops_markup_and_maps_back() {
        let src = "# 見出し\n\n担当は山田**花子**さん。[資料](https://example.jp)";
        let plain = plain_text(src);
        assert_eq!(plain.text, "見出し\n担当は山田花子さん。資料");
        let at = plain.text.chars().position(|c| c == '山').expect("山");
        let (s, e) = plain.source_range(at, at + 4);
        let original: String = src.chars().skip(s).take(e - s).collect();
        assert_eq!(original, "山田**花子");
        assert!(!has_markup("朝に予定を立てる。\n夕方に振り返る"));
        assert!(!has_markup("2026-04-01 に開始。費用は1.5万円 (税込)。"));
        assert!(has_markup("山田*花子*"));
        for listed in ["- 一つ目", "準備\n1. 一つ目", "見出し\n===", "    コード"] {
            assert!(has_markup(listed), "{listed}");
        }
    }
}
