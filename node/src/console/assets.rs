//! The console's static files, compiled into the binary: one stylesheet and
//! one icon, served under names that carry a hash of their content, so
//! browsers may cache them for a year and still never see a stale copy.
//! System fonts only; nothing is fetched from the internet.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

struct Asset {
    stem: &'static str,
    ext: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 2] = [
    Asset {
        stem: "console",
        ext: "css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/console.css"),
    },
    Asset {
        stem: "icon",
        ext: "svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../assets/icon.svg"),
    },
];

/// `/assets/{stem}.{hash}.{ext}` for each asset, in `ASSETS` order.
static HREFS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = ring::digest::digest(&ring::digest::SHA256, a.bytes);
            let hash: String = digest.as_ref()[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("/assets/{}.{hash}.{}", a.stem, a.ext)
        })
        .collect()
});

pub fn css_href() -> &'static str {
    &HREFS[0]
}

pub fn icon_href() -> &'static str {
    &HREFS[1]
}

pub async fn serve(Path(name): Path<String>) -> Response {
    let wanted = format!("/assets/{name}");
    match HREFS.iter().position(|href| *href == wanted) {
        Some(i) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(ASSETS[i].content_type),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            ASSETS[i].bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
