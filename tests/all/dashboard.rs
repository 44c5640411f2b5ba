//! The web dashboard at `/`, driven in a real browser: Debian's chromium, headless, through
//! Playwright (`playwright-core` from npm, installed here into the test's temp dir), by
//! `tests/dashboard/dashboard.mjs`. Screenshots of each step are kept in
//! `target/tmp/dashboard-screenshots/` (`make test` installs chromium and npm).

use crate::plugins;
use std::path::Path;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_the_pipeline_from_the_dashboard_in_a_real_browser() {
    let token = "dashboard-token";
    let (served, http) = crate::bad_input::setup_with(Some(token)).await;
    // Some history to show.
    let r = http
        .post(served.url("/v1/collections/acme%2Forders/documents"))
        .body("{\"id\":1,\"customer\":\"alice\",\"amount\":5}\n{\"id\":2,\"customer\":\"bob\",\"amount\":7.5}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = http.get(served.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<title>Flow</title>"));

    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard");
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["package.json", "dashboard.mjs"] {
        std::fs::copy(src.join(f), tmp.join(f)).unwrap();
    }
    let base = served.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        if !tmp.join("node_modules/playwright-core").is_dir() {
            let npm = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent"])
                .current_dir(&tmp)
                .output()
                .expect("npm is needed (make setup-test installs it)");
            assert!(
                npm.status.success(),
                "npm install playwright-core failed: {}",
                String::from_utf8_lossy(&npm.stderr)
            );
        }
        assert!(
            Path::new("/usr/bin/chromium").is_file() || std::env::var_os("CHROMIUM").is_some(),
            "chromium is needed at /usr/bin/chromium (make setup-test installs Debian's chromium) or CHROMIUM"
        );
        Command::new("node")
            .arg("dashboard.mjs")
            .current_dir(&tmp)
            .env("BASE", &base)
            .env("TOKEN", token)
            .env("OUT", &shots)
            .env("PLUGIN_FILE", plugins::PASSTHROUGH)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all steps passed"),
        "the dashboard run failed (screenshots in {}):\n{stdout}\n{}",
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("dashboard-screenshots")
            .display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
