//! The dashboard as a user sees it: three daemons on loopback train the digits shards, then
//! headless Chromium opens node 0's `/`, runs the page's script against the live node, and the
//! rendered DOM must list both other nodes in the neighbour table with non-zero bytes each
//! way, a loss chart with points and a swarm drawing of all three nodes. The same page is
//! screenshotted (`MURMUR_UPDATE_DOCS=1` writes it to `docs/dashboard.png`).
//!
//! Needs Debian's `chromium` (`apt-get install chromium`); prints `SKIPPED:` without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{TempDir, binary};
use murmur_daemon::demo::{DemoOptions, run_swarm_then};

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("which").arg(name).output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
}

/// Runs headless Chromium on `url` with `args`, giving the page's timers and fetches
/// `budget_ms` of virtual time; returns stdout.
fn headless(browser: &Path, profile: &Path, url: &str, args: &[&str], budget_ms: u32) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1400,1100",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--virtual-time-budget={budget_ms}"),
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of attribute `name` in the start tag that contains `marker`.
fn attribute(dom: &str, marker: &str, name: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let start = dom[..at].rfind('<')?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let key = format!("{name}=\"");
    let from = tag.find(&key)? + key.len();
    Some(tag[from..from + tag[from..].find('"')?].to_string())
}

/// Every `<tr ...>` start tag inside the element with id `links`.
fn link_rows(dom: &str) -> Vec<String> {
    let Some(at) = dom.find("id=\"links\"") else {
        return Vec::new();
    };
    let body = &dom[at..at + dom[at..].find("</tbody>").unwrap_or(dom.len() - at)];
    body.match_indices("<tr ")
        .map(|(i, _)| body[i..i + body[i..].find('>').unwrap()].to_string())
        .collect()
}

/// The value of attribute `name` in the start tag `tag`.
fn attr_of(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    Some(tag[from..from + tag[from..].find('"')?].to_string())
}

#[test]
fn the_dashboard_shows_both_neighbours_with_traffic_and_a_loss_chart() {
    let Some(browser) = chromium() else {
        println!("SKIPPED: chromium not found (Debian: apt-get install chromium)");
        return;
    };
    let dir = TempDir::new("dashboard");
    let opts = DemoOptions {
        peers: 3,
        rounds: 150,
        extra: Vec::new(),
        dir: Some(dir.0.clone()),
        keep: true,
        timeout: Duration::from_secs(120),
        transport: Default::default(),
    };
    let profile = dir.join("chromium-profile");
    let mut checked = false;
    run_swarm_then(
        binary(),
        &opts,
        |line| eprintln!("{line}"),
        |report, nodes| {
            let url = format!("http://{}/", nodes[0].http);
            let me = &report.statuses[0].peer_id;
            let others: Vec<&String> = report.statuses[1..].iter().map(|s| &s.peer_id).collect();
            // Each neighbour told node 0 its own neighbours (the `Neighbours` frame): node 0
            // among them, and a subset of the swarm.
            let status = nodes[0].status().unwrap();
            for other in &others {
                let theirs = status
                    .reported_neighbours
                    .get(*other)
                    .unwrap_or_else(|| panic!("{other} reported no neighbours: {status:?}"));
                assert!(theirs.contains(me), "{other} reports {theirs:?}, not {me}");
                assert!(
                    theirs
                        .iter()
                        .all(|p| report.statuses.iter().any(|s| &s.peer_id == p))
                );
            }
            let dom = headless(&browser, &profile, &url, &["--dump-dom"], 6_000);
            assert!(
                attribute(&dom, "data-refreshed", "data-refreshed").is_some(),
                "the script never completed a refresh:\n{dom}"
            );
            let rows = link_rows(&dom);
            let mut listed: Vec<String> = rows
                .iter()
                .filter_map(|r| attr_of(r, "data-peer"))
                .collect();
            listed.sort();
            let mut expected: Vec<String> = others.iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(listed, expected, "neighbour table of {me}:\n{dom}");
            for row in &rows {
                for key in ["data-bytes-sent", "data-bytes-received"] {
                    let n: u64 = attr_of(row, key)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("{key} missing in {row}"));
                    assert!(n > 0, "{key} is 0 in {row}");
                }
            }
            let points: usize = attribute(&dom, "id=\"chart-loss\"", "data-points")
                .and_then(|v| v.parse().ok())
                .expect("the loss chart");
            assert!(points > 0, "the loss chart has no points");
            let nodes_drawn: usize = attribute(&dom, "id=\"swarm\"", "data-nodes")
                .and_then(|v| v.parse().ok())
                .expect("the swarm drawing");
            assert!(
                nodes_drawn >= 3,
                "the swarm drawing has {nodes_drawn} nodes"
            );

            let shot = dir.join("dashboard.png");
            headless(
                &browser,
                &profile,
                &url,
                &[&format!("--screenshot={}", shot.display())],
                6_000,
            );
            let png = std::fs::read(&shot).expect("a screenshot");
            assert!(
                png.starts_with(b"\x89PNG") && png.len() > 10_000,
                "{} bytes",
                png.len()
            );
            if std::env::var_os("MURMUR_UPDATE_DOCS").is_some() {
                let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
                std::fs::write(&docs, &png).unwrap();
                eprintln!("wrote {}", docs.display());
            }
            checked = true;
            Ok(())
        },
    )
    .expect("swarm runs");
    assert!(checked);
}

/// `murmur demo --keep`: after the report the daemons keep serving their dashboards (the
/// addresses it printed answer, training done), and Ctrl-C stops them all cleanly, the
/// `summary:` line last.
#[test]
fn demo_keep_leaves_the_dashboards_up_until_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("demo-keep");
    let mut child = Command::new(binary())
        .args(["demo", "--peers", "2", "--rounds", "60", "--keep", "--dir"])
        .arg(dir.join("swarm"))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut dashboards = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.trim().split("dashboard: ").nth(1) {
            dashboards.push(url.to_string());
        }
        let waiting = line.contains("press Ctrl-C");
        seen.push(line);
        if waiting {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.starts_with("summary: ")),
        "the report comes before the wait:\n{}",
        seen.join("\n")
    );
    assert!(dashboards.len() >= 2, "{}", seen.join("\n"));
    // Well after training ended, every dashboard still answers.
    std::thread::sleep(Duration::from_millis(500));
    for url in &dashboards {
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let page = murmur_daemon::http::get(&addr, "/", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{url} is down: {e:#}"));
        assert!(page.contains("/dashboard.js"));
        let status: murmur_daemon::status::Status = serde_json::from_str(
            &murmur_daemon::http::get(&addr, "/status", Duration::from_secs(5)).unwrap(),
        )
        .unwrap();
        assert!(status.done, "{url}: training is over, serving goes on");
    }
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(child.wait().unwrap().success(), "{}", rest.join("\n"));
    assert!(
        rest.iter()
            .any(|l| l.contains("clean exits after SIGTERM: 2/2")),
        "{}",
        rest.join("\n")
    );
    assert!(
        rest.last().is_some_and(|l| l.starts_with("summary: ")),
        "the summary line ends the output:\n{}",
        rest.join("\n")
    );
    for url in &dashboards {
        let addr = url.trim_start_matches("http://").trim_end_matches('/');
        assert!(
            murmur_daemon::http::get(addr, "/", Duration::from_millis(500)).is_err(),
            "{url} still up after Ctrl-C"
        );
    }
}
