//! Headless Chromium driven over the DevTools protocol (a WebSocket of
//! JSON commands), for tests of the pages Switchboard serves. Chromium
//! comes from `SWITCHBOARD_TEST_CHROMIUM` (`scripts/test-env.sh` installs
//! Debian's `chromium`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

const WAIT: Duration = Duration::from_secs(30);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running headless Chromium; killed when dropped.
pub struct Browser {
    child: Child,
    port: u16,
    /// The browser's own DevTools path (`/devtools/browser/<id>`).
    browser_path: String,
}

impl Browser {
    /// Starts `chromium` with its profile in `dir`.
    pub async fn launch(chromium: &str, dir: &Path) -> Browser {
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).expect("profile dir");
        let child = Command::new(chromium)
            .args([
                "--headless=new",
                // Tests run as root in CI, where the sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1000,800",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        // Chromium writes its port and its DevTools path to this file once
        // it listens.
        let active_port = profile.join("DevToolsActivePort");
        let deadline = tokio::time::Instant::now() + WAIT;
        let (port, browser_path) = loop {
            let written = std::fs::read_to_string(&active_port).unwrap_or_default();
            let mut lines = written.lines();
            if let (Some(Ok(port)), Some(path)) = (lines.next().map(str::parse), lines.next()) {
                break (port, path.to_owned());
            }
            assert!(tokio::time::Instant::now() < deadline, "chromium never opened its DevTools port");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Browser { child, port, browser_path }
    }

    /// A new page (tab).
    pub async fn page(&self) -> Page {
        let browser_url = format!("ws://127.0.0.1:{}{}", self.port, self.browser_path);
        let (socket, _) = tokio_tungstenite::connect_async(browser_url).await.expect("DevTools socket");
        let mut browser = Page { socket, next_id: 1 };
        let created = browser.command("Target.createTarget", json!({"url": "about:blank"})).await;
        let target = created["targetId"].as_str().expect("a target id");
        let page_url = format!("ws://127.0.0.1:{}/devtools/page/{target}", self.port);
        let (socket, _) = tokio_tungstenite::connect_async(page_url).await.expect("page DevTools socket");
        Page { socket, next_id: 1 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab, commanded over its DevTools socket.
pub struct Page {
    socket: Socket,
    next_id: u64,
}

impl Page {
    /// Sends a command and returns its `result`; fails the test on an error.
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let command = json!({"id": id, "method": method, "params": params});
        self.socket.send(Frame::Text(command.to_string().into())).await.expect("command sent");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("DevTools socket open")
                .expect("DevTools frame");
            let Frame::Text(text) = frame else { continue };
            let answer: Value = serde_json::from_str(&text).expect("JSON");
            if answer["id"] != id {
                continue; // an event
            }
            assert!(answer.get("error").is_none(), "{method} failed: {answer}");
            return answer["result"].clone();
        }
    }

    pub async fn navigate(&mut self, url: &str) {
        self.command("Page.navigate", json!({"url": url})).await;
    }

    pub async fn reload(&mut self) {
        self.command("Page.reload", json!({})).await;
    }

    /// The value of a JavaScript expression in the page.
    pub async fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.command("Runtime.evaluate", json!({"expression": expression, "returnByValue": true})).await;
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    pub async fn until(&mut self, what: &str, expression: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.evaluate(expression).await != Value::Bool(true) {
            assert!(tokio::time::Instant::now() < deadline, "the page never showed {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the focused element, as a keyboard would.
    pub async fn type_text(&mut self, text: &str) {
        self.command("Input.insertText", json!({"text": text})).await;
    }

    /// Presses Enter on the focused element.
    pub async fn press_enter(&mut self) {
        for kind in ["keyDown", "keyUp"] {
            let key = json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"});
            self.command("Input.dispatchKeyEvent", key).await;
        }
    }

    /// Saves a PNG of the page to `path` (a test artifact).
    pub async fn screenshot(&mut self, path: &PathBuf) {
        let shot = self.command("Page.captureScreenshot", json!({"format": "png"})).await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("data")).expect("png");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("artifact dir");
        }
        std::fs::write(path, png).expect("screenshot written");
    }
}
