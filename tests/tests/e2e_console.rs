//! The web console (`GET /`) in a real browser: Debian's headless Chromium, driven over the
//! DevTools protocol (`headless_chrome`), against real `tandem agent` processes on
//! 127.0.0.1 with ephemeral ports. The page runs `version`, charts `dashboard -i 200`,
//! is interrupted with Ctrl-C, and shows a second agent join and then leave; any
//! JavaScript exception, `console.error` or browser error log entry fails the test.
//!
//! Chromium comes from the `chromium` package, provisioned by `tandem_tests::tools` (apt-get
//! as root): a test that cannot have it fails under `CI=true` and is reported `ignored`
//! with the reason otherwise (`TANDEM_SKIP_CHROMIUM=1` skips on purpose). `harness = false`:
//! `run_trials` is the runner. `TANDEM_UPDATE_SCREENSHOT=1` copies the screenshot the first
//! test takes to `docs/console.png`.

#[allow(unused_macros)] // `runtimes!`: each browser case picks its runtime
mod e2e_support;
#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_support::{Agent, DEADLINE, Runtime};
use headless_chrome::browser::tab::ModifierKey;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::{Emulation, Runtime as Cdp};
use headless_chrome::{Browser, LaunchOptions, Tab};
use tandem_tests::tools::{self, Test, run_trials};

fn main() {
    run_trials(vec![
        Test::new(
            "console_runs_commands_charts_a_dashboard_and_follows_members",
            console_runs_commands_charts_a_dashboard_and_follows_members,
        ),
        Test::new(
            "console_behind_http_auth_works_once_given_credentials",
            console_behind_http_auth_works_once_given_credentials,
        ),
    ]);
}

/// A headless Chromium with a fresh profile, and what its pages reported as errors.
struct Chrome {
    browser: Browser,
    errors: Arc<Mutex<Vec<String>>>,
    _profile: TempDir,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Chrome {
    fn launch(path: PathBuf) -> Chrome {
        let profile = std::env::temp_dir().join(format!(
            "tandem-console-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let args: Vec<&OsStr> = [
            "--disable-gpu",
            "--disable-quic",
            "--disable-component-update",
        ]
        .iter()
        .map(OsStr::new)
        .collect();
        let options = LaunchOptions::default_builder()
            .path(Some(path))
            .headless(true)
            .sandbox(false)
            .window_size(Some((1280, 800)))
            .user_data_dir(Some(profile.clone()))
            .args(args)
            .idle_browser_timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        Chrome {
            browser: Browser::new(options).expect("chromium starts"),
            errors: Arc::default(),
            _profile: TempDir(profile),
        }
    }

    /// A new tab whose exceptions, `console.error` calls and error log entries are recorded.
    fn tab(&self) -> Arc<Tab> {
        let tab = self.browser.new_tab().unwrap();
        tab.set_default_timeout(DEADLINE);
        tab.enable_runtime().unwrap();
        tab.enable_log().unwrap();
        let errors = Arc::clone(&self.errors);
        tab.add_event_listener(Arc::new(move |event: &Event| {
            let text = match event {
                Event::RuntimeExceptionThrown(e) => {
                    Some(format!("{:?}", e.params.exception_details))
                }
                Event::RuntimeConsoleAPICalled(e)
                    if format!("{:?}", e.params.Type).eq_ignore_ascii_case("error") =>
                {
                    Some(format!("console.error {:?}", e.params.args))
                }
                Event::LogEntryAdded(e)
                    if format!("{:?}", e.params.entry.level).eq_ignore_ascii_case("error") =>
                {
                    Some(format!("log: {}", e.params.entry.text))
                }
                _ => None,
            };
            if let Some(t) = text {
                errors.lock().unwrap().push(t);
            }
        }))
        .unwrap();
        tab
    }

    fn assert_no_errors(&self) {
        let errors = self.errors.lock().unwrap();
        assert!(errors.is_empty(), "the page reported errors: {errors:#?}");
    }
}

/// Evaluates `expr` in the page until it is `true`; fails with `what` after the deadline.
fn wait_true(tab: &Tab, expr: &str, what: &str) {
    let end = Instant::now() + DEADLINE;
    loop {
        let v = tab.evaluate(expr, false).ok().and_then(|r| r.value);
        if v == Some(serde_json::Value::Bool(true)) {
            return;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what} ({expr})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of `expr` in the page.
fn eval(tab: &Tab, expr: &str) -> serde_json::Value {
    tab.evaluate(expr, false)
        .unwrap()
        .value
        .unwrap_or(serde_json::Value::Null)
}

/// Types `line` into the command line and presses Enter.
fn run_command(tab: &Tab, line: &str) {
    tab.wait_for_element("#cmd").unwrap().click().unwrap();
    tab.send_character(line).unwrap();
    tab.press_key("Enter").unwrap();
}

/// The member `name` in the LAN panel has `status`.
fn member_status(name: &str, status: &str) -> String {
    format!(
        "document.querySelector('#lan li[data-name=\"{name}\"]')?.dataset.status === '{status}'"
    )
}

/// The console's session id, as the page keeps it for reloads.
fn session_id(tab: &Tab) -> String {
    let v = eval(
        tab,
        "JSON.parse(sessionStorage.getItem('tandem.console')).sessionId",
    );
    v.as_str()
        .expect("a session id in sessionStorage")
        .to_string()
}

fn open(tab: &Tab, agent: &Agent) {
    tab.navigate_to(&format!("http://127.0.0.1:{}/", agent.port()))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
}

fn console_runs_commands_charts_a_dashboard_and_follows_members() {
    let path = tools::chromium();
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:>6.2}s] {what}", t0.elapsed().as_secs_f64());
    let alpha = Agent::start(Runtime::Smol, &["-node=alpha", "-server"]);
    let chrome = Chrome::launch(path);
    let tab = chrome.tab();
    open(&tab, &alpha);
    step("page loaded");
    wait_true(
        &tab,
        &member_status("alpha", "alive"),
        "alpha alive in the panel",
    );
    // A server's panel lists the WAN pool too.
    wait_true(
        &tab,
        "!document.querySelector('#wan-section').hidden && document.querySelector('#wan li[data-name^=\"alpha\"]')?.dataset.status === 'alive'",
        "alpha in the WAN list",
    );
    wait_true(
        &tab,
        "document.querySelector('#node').textContent.startsWith('alpha')",
        "the welcome item in the header",
    );

    step("version");
    run_command(&tab, "version");
    let version = format!("tandem {}", env!("CARGO_PKG_VERSION"));
    let shows_version = format!(
        "[...document.querySelectorAll('.job .version')].some(e => e.textContent === '{version}')"
    );
    wait_true(&tab, &shows_version, "the version");

    // A reload joins the same session, which replays its recent output.
    step("reload");
    let session = session_id(&tab);
    tab.reload(false, None)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    wait_true(&tab, &shows_version, "the version replayed after a reload");
    assert_eq!(session_id(&tab), session);

    // The dashboard's chart: at least three samples drawn, one after another.
    step("dashboard");
    run_command(&tab, "dashboard -i 200");
    let samples = "Number(document.querySelector('.dashboard')?.dataset.samples || 0)";
    let mut seen = Vec::new();
    let end = Instant::now() + DEADLINE;
    while seen.len() < 3 {
        let n = eval(&tab, samples).as_u64().unwrap_or(0);
        if n > 0 && seen.last() != Some(&n) {
            seen.push(n);
        }
        assert!(Instant::now() < end, "the chart updated only {seen:?}");
        std::thread::sleep(Duration::from_millis(40));
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    // Enough samples for a chart worth a screenshot (4 s at 200 ms).
    wait_true(&tab, &format!("{samples} >= 20"), "20 dashboard samples");
    let points = eval(
        &tab,
        "document.querySelector('.dashboard polyline').getAttribute('points').split(' ').length",
    );
    assert!(
        points.as_u64().unwrap() >= 20,
        "the line has {points} points"
    );
    let shot = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    let shot_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    std::fs::write(&shot_path, &shot).unwrap();
    if std::env::var("TANDEM_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console.png");
        std::fs::write(docs, &shot).unwrap();
    }

    // Ctrl-C in the command line interrupts the dashboard.
    step("ctrl-c");
    tab.wait_for_element("#cmd").unwrap().click().unwrap();
    tab.press_key_with_modifiers("c", Some(&[ModifierKey::Ctrl]))
        .unwrap();
    wait_true(
        &tab,
        "document.querySelector('.dashboard').closest('.job').dataset.state === 'interrupted'",
        "the dashboard job marked interrupted",
    );

    // A second agent joins (through the console) and shows up; after its `leave`, `left`.
    step("join");
    let beta = Agent::start(Runtime::Smol, &["-node=beta"]);
    run_command(&tab, &format!("join 127.0.0.1:{}", beta.lan_port()));
    wait_true(
        &tab,
        &member_status("beta", "alive"),
        "beta alive in the panel",
    );
    step("leave");
    let left = beta.api(r#"{"action":"exec","command":"leave"}"#);
    assert_eq!(left["state"], "SUCCEEDED", "{left}");
    wait_true(&tab, &member_status("beta", "left"), "beta marked left");
    chrome.assert_no_errors();

    // Closing the tab closes its session (after the worker's grace for a reload).
    step("close");
    tab.close(true).unwrap();
    let info = format!(r#"{{"action":"session_info","sessionId":"{session}"}}"#);
    let end = Instant::now() + DEADLINE;
    while alpha.api(&info)["state"] == "SUCCEEDED" {
        assert!(Instant::now() < end, "the session outlived its tab");
        std::thread::sleep(Duration::from_millis(100));
    }
    step("done");
}

fn console_behind_http_auth_works_once_given_credentials() {
    let path = tools::chromium();
    let agent = Agent::start(Runtime::Mio, &["-node=gamma", "-http-auth=ops:s3cret"]);
    // Without credentials the page is refused with a Basic challenge, which a browser
    // answers by asking its user.
    let mut c = agent.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("WWW-Authenticate"), Some("Basic realm=\"tandem\""));
    let chrome = Chrome::launch(path);
    let tab = chrome.tab();
    // Headless Chromium has no dialog: the DevTools protocol answers the challenge, as a
    // user typing into the browser's prompt would.
    tab.enable_fetch(None, Some(true)).unwrap();
    tab.authenticate(Some("ops".into()), Some("s3cret".into()))
        .unwrap();
    open(&tab, &agent);
    wait_true(
        &tab,
        &member_status("gamma", "alive"),
        "the panel, through /api",
    );
    run_command(&tab, "version");
    wait_true(
        &tab,
        "document.querySelector('.job .version')?.textContent.startsWith('tandem ')",
        "the version",
    );

    // The renderers of items no single agent makes on demand: a `gap`, and results of a
    // cluster-wide job grouped by their `node`.
    let rendered = eval_async(
        &tab,
        "(async () => {
           const { Job, render } = await import('/console/render.js');
           const box = document.createElement('div');
           const job = new Job(9, 'x', box);
           render({ type: 'gap', dropped: 3, jobId: 9 }, job);
           render({ type: 'message', message: 'a1', jobId: 9, node: 'a' }, job);
           render({ type: 'message', message: 'b1', jobId: 9, node: 'b' }, job);
           render({ type: 'message', message: 'a2', jobId: 9, node: 'a' }, job);
           render({ type: 'status', statusCode: 0, interrupted: true, jobId: 9 }, job);
           return [box.querySelector('.gap[role=alert]')?.textContent,
             [...box.querySelectorAll('.node')].map(g => g.dataset.node + ':' +
               [...g.querySelectorAll('pre')].map(p => p.textContent).join(',')).join(' '),
             job.node.dataset.state];
         })()",
    );
    assert_eq!(
        rendered,
        serde_json::json!([
            "⚠ 3 results dropped here: this console read too slowly",
            "a:a1,a2 b:b1",
            "interrupted"
        ])
    );

    // Phone width: nothing wider than the screen, the command line still there.
    tab.call_method(Emulation::SetDeviceMetricsOverride {
        width: 390,
        height: 844,
        device_scale_factor: 1.0,
        mobile: true,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .unwrap();
    wait_true(
        &tab,
        "innerWidth === 390 && document.documentElement.scrollWidth <= 390 \
         && document.querySelector('#cmd').getBoundingClientRect().right <= 390",
        "a layout that fits 390 px",
    );
    chrome.assert_no_errors();
}

/// The value `expr` (a promise) resolves to in the page.
fn eval_async(tab: &Tab, expr: &str) -> serde_json::Value {
    let r = tab
        .call_method(Cdp::Evaluate {
            expression: expr.to_string(),
            return_by_value: Some(true),
            generate_preview: None,
            silent: None,
            await_promise: Some(true),
            include_command_line_api: None,
            user_gesture: None,
            object_group: None,
            context_id: None,
            throw_on_side_effect: None,
            timeout: None,
            disable_breaks: None,
            repl_mode: None,
            allow_unsafe_eval_blocked_by_csp: None,
            unique_context_id: None,
            serialization_options: None,
        })
        .unwrap();
    assert!(r.exception_details.is_none(), "{:?}", r.exception_details);
    r.result.value.unwrap_or(serde_json::Value::Null)
}
