//! Following other towns (issue 16): an Atom feed per shared collection of
//! what other towns wrote (`/feeds/{collection}.atom?token=…`), and the
//! console page where a user makes, rotates or revokes the feed token that
//! opens their feeds (`/feeds`).
//!
//! Feed readers and mail clients cannot log in, so a feed is opened by the
//! user's feed token in its URL (`crate::accounts` keeps only its hash).
//! The token opens the feeds and nothing else: it is neither a session nor
//! an API token, so `/api/v1` and every console page refuse it. A missing,
//! wrong, rotated or revoked token, or one of a removed user, answers 401
//! with the same few words. These routes are the console's, outside
//! `/api/v1`, and not in the OpenAPI document (operations.md 23).
//!
//! What a feed holds: live records of that shared collection whose origin
//! town is another town, newest arrival first, at most [`FEED_ENTRIES`]:
//! each with its town's name, its title, a plain-text summary of its first
//! long text, its times and a link to its console page. Never a local
//! collection, never this town's own records, never a deleted record.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use yui_protocol::atom::{self, Entry, Feed};
use yui_protocol::schema::FieldKind;
use yui_protocol::sync::SharedCollection;
use yui_protocol::{Collection, RecordView};

use super::records::record_title_named;
use super::{AppState, Chrome, PageError, SignedIn, render, show_time, url_encode};
use crate::store::News;

/// How many records a feed lists.
pub const FEED_ENTRIES: usize = 50;
/// How many characters of a record's text its summary keeps.
const SUMMARY_CHARS: usize = 280;

/// The shared collections, in the order of SPEC §4.
fn shared_collections() -> impl Iterator<Item = SharedCollection> {
    Collection::ALL
        .into_iter()
        .filter_map(SharedCollection::new)
}

/// `http://HOST` or `https://HOST` of this request, as the browser or feed
/// reader reached it (the `Host` was checked by `http::check_host`).
fn base_url(headers: &HeaderMap, secure: bool) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = if secure { "https" } else { "http" };
    format!("{scheme}://{host}")
}

fn reached_over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A feed's path, with its token when given.
fn feed_path(collection: Collection, token: Option<&str>) -> String {
    match token {
        Some(t) => format!("/feeds/{}.atom?token={}", collection.name(), url_encode(t)),
        None => format!("/feeds/{}.atom", collection.name()),
    }
}

#[derive(Deserialize)]
pub struct FeedQuery {
    token: Option<String>,
}

/// The answer to a feed request without a valid token: the same for a
/// missing, wrong, revoked or rotated one, saying nothing about which.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        "フィードのトークンが必要です。/ This feed needs a valid feed token.\n",
    )
        .into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        "そのフィードはありません。/ No such feed.\n",
    )
        .into_response()
}

/// `GET /feeds/{collection}.atom?token=…`: the Atom feed of a shared
/// collection's records from other towns. The token is checked before
/// anything else is looked at.
pub async fn atom_feed(
    State(node): State<AppState>,
    Path(file): Path<String>,
    Query(q): Query<FeedQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(user) = (match q.token.as_deref() {
        Some(token) => node.accounts.feed_token_user(token).await,
        None => None,
    }) else {
        return unauthorized();
    };
    let Some(collection) = file
        .strip_suffix(".atom")
        .and_then(|name| name.parse::<Collection>().ok())
        .and_then(SharedCollection::new)
    else {
        return not_found();
    };
    let up_to = node.store.feed_position();
    let news = match node
        .store
        .news_from_other_towns(Some(collection), 0, up_to, FEED_ENTRIES)
        .await
    {
        Ok(news) => news,
        Err(e) => {
            tracing::error!(error = %e, %user, "feed: reading records failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "feed unavailable\n").into_response();
        }
    };
    let base = base_url(&headers, reached_over_https(&headers));
    let names = node.town_names().await;
    let collection = collection.get();
    let own = names.show(&node.config.town).to_owned();
    let now = yui_protocol::record::format_time(crate::clock::now_ms());
    let entries: Vec<Entry> = news
        .iter()
        .map(|n| entry(&base, collection, n, &names))
        .collect();
    let updated = news
        .iter()
        .filter_map(|n| atom::date_time(&n.view.updated_at))
        .max()
        .unwrap_or_else(|| now.clone());
    let (ja, en) = (collection.label_ja(), collection.label_en());
    let feed = Feed {
        id: atom::uuid_urn(&[
            b"yui-feed",
            node.config.town.as_bytes(),
            collection.name().as_bytes(),
        ]),
        title: format!("{ja}：他の町から / {en} from other towns — {own}"),
        subtitle: Some(format!(
            "{own}のYuiに届いた、他の町の{ja}の新しい記録と変更された記録 / New and changed {en} records from other towns, as they reached Yui at {own}"
        )),
        lang: "ja",
        updated,
        self_href: format!("{base}{}", feed_path(collection, q.token.as_deref())),
        alternate_href: format!("{base}/records/{}", collection.name()),
        generator: "Yui",
        entries,
    };
    tracing::debug!(%user, collection = collection.name(), entries = news.len(), "feed: served");
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(atom::CONTENT_TYPE),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // The URL carries the token: never pass it on.
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            ),
        ],
        atom::write(&feed, &now),
    )
        .into_response()
}

fn entry(base: &str, collection: Collection, news: &News, names: &crate::pki::TownNames) -> Entry {
    let view = &news.view;
    let heads: Vec<u8> = news.heads.concat();
    Entry {
        id: atom::uuid_urn(&[b"yui-record", view.id.as_str().as_bytes(), &heads]),
        title: record_title_named(collection, view, names),
        author: names.show(&view.town).to_owned(),
        summary: summary(collection, view),
        updated: view.updated_at.clone(),
        published: view.created_at.clone(),
        href: format!("{base}/records/{}/{}", collection.name(), view.id.as_str()),
        category: (
            collection.name().to_owned(),
            collection.label_ja().to_owned(),
        ),
    }
}

/// A record's summary: the plain text of its first long text (Markdown
/// read as text), or else its other values with their Japanese labels.
fn summary(collection: Collection, view: &RecordView) -> String {
    let fields = collection.fields();
    for def in fields {
        if let (FieldKind::Text { .. }, Some(Value::String(s))) =
            (&def.kind, view.fields.get(def.name))
            && !s.trim().is_empty()
        {
            let text = yui_protocol::markdown::plain_text(s).text;
            return atom::summary_of(&text, SUMMARY_CHARS);
        }
    }
    let title_field = fields
        .iter()
        .find(|d| matches!(d.kind, FieldKind::Str { .. }))
        .map(|d| d.name);
    let parts: Vec<String> = fields
        .iter()
        .filter(|d| Some(d.name) != title_field)
        .filter_map(|d| {
            let value = match view.fields.get(d.name)? {
                Value::String(s) if !s.trim().is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some(format!("{}: {value}", d.ja))
        })
        .collect();
    atom::summary_of(&parts.join(" / "), SUMMARY_CHARS)
}

struct FeedRow {
    label: &'static str,
    /// The whole URL with the token, right after it was made.
    url: Option<String>,
    path: String,
}

#[derive(Template)]
#[template(path = "feeds.html")]
struct FeedsPage {
    chrome: Chrome,
    feeds: Vec<FeedRow>,
    /// When the user's token was made, if they have one.
    created: Option<String>,
    /// Set right after a token was made or rotated: the URLs are shown once.
    fresh: bool,
    notice: Option<&'static str>,
}

async fn page(
    node: &AppState,
    who: &SignedIn,
    headers: &HeaderMap,
    token: Option<&str>,
    notice: Option<&'static str>,
) -> Result<Response, PageError> {
    let lang = who.lang();
    let created = node
        .accounts
        .feed_token_created(&who.principal().user)
        .await
        .map_err(|e| who.failed(e))?;
    let base = base_url(headers, who.visitor.secure);
    let feeds = shared_collections()
        .map(|c| {
            let c = c.get();
            FeedRow {
                label: lang.collection(c),
                url: token.map(|t| format!("{base}{}", feed_path(c, Some(t)))),
                path: feed_path(c, None),
            }
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &FeedsPage {
            chrome: who.chrome(who.m().feeds_title, "feeds"),
            feeds,
            created: created.as_deref().map(show_time),
            fresh: token.is_some(),
            notice,
        },
    ))
}

/// `GET /feeds`: the user's feeds and their token's state.
pub async fn show(
    State(node): State<AppState>,
    who: SignedIn,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    page(&node, &who, &headers, None, None).await
}

/// `POST /feeds`: make or rotate (`action=create`) or revoke
/// (`action=revoke`) the user's own feed token. Any signed-in user may,
/// for themselves only. The new token is shown on the answer, once.
pub async fn change(
    State(node): State<AppState>,
    who: SignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = who.posted_form(&body, true)?;
    let user = who.principal().user.clone();
    match form.get("action") {
        Some("create") => {
            let token = node
                .accounts
                .create_feed_token(&user)
                .await
                .map_err(|e| who.failed(e))?;
            tracing::info!(%user, "console: feed token made");
            page(&node, &who, &headers, Some(&token), None).await
        }
        Some("revoke") => {
            node.accounts
                .revoke_feed_token(&user)
                .await
                .map_err(|e| who.failed(e))?;
            tracing::info!(%user, "console: feed token revoked");
            page(&node, &who, &headers, None, Some(who.m().feeds_revoked)).await
        }
        _ => Err(who.error(StatusCode::BAD_REQUEST, who.m().not_found)),
    }
}
