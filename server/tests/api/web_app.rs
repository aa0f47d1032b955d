//! The built web app is served with SPA fallback and long-lived caching of hashed assets.

use reqwest::StatusCode;

use crate::helpers::{Backend, spawn_app_with};

#[actix_web::test]
async fn serves_the_app_with_fallback_and_cache_headers() {
    let dist = crate::helpers::web_dist("pychat");
    let dir = dist.path().to_path_buf();
    let app = spawn_app_with(Backend::Sqlite, move |s| s.web_dir = Some(dir))
        .await
        .expect("sqlite");
    let get = |path: &'static str| {
        let client = app.client.clone();
        let url = app.url(path);
        async move { client.get(url).send().await.expect("request") }
    };

    let index = get("/").await;
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(index.headers()["cache-control"], "no-cache");
    assert!(
        index
            .text()
            .await
            .expect("body")
            .contains("<title>pychat</title>")
    );

    // A route of the app itself, reloaded: the server answers with the app.
    let deep = get("/chat/bob").await;
    assert_eq!(deep.status(), StatusCode::OK);
    assert!(
        deep.text()
            .await
            .expect("body")
            .contains("<title>pychat</title>")
    );

    let asset = get("/assets/app-3f9a.js").await;
    assert_eq!(asset.status(), StatusCode::OK);
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );

    // The API keeps its JSON errors; it never falls back to the page.
    let api = get("/api/nothing").await;
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    assert_eq!(api.headers()["content-type"], "application/json");
}
