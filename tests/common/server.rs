//! A real `edge serve` process on 127.0.0.1 for the server tests, a raw HTTP/1.1
//! client (so tests control every byte and can drop a connection mid-stream), and the
//! real Python clients (`openai`, `ollama`) from the test data's pylib.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{edge, test_data};

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `edge serve MODEL --port 0 ARGS` and waits until it is ready.
    pub fn start(model: &Path, args: &[&str]) -> Server {
        Self::start_with(model, args, &[])
    }

    pub fn start_with(model: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = edge();
        cmd.arg("serve")
            .arg(model)
            .args(["--port", "0", "-t", "2"])
            .args(args)
            .env("EDGE_HOME", super::scratch().join("serve-home"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start edge serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix("edge: listening on http://") {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(Some(addr));
                    }
                    if line.starts_with("edge: ready:") {
                        let _ = tx.send(None);
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let mut addr = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Some(a)) => addr = Some(a),
                Ok(None) => break,
                Err(_) => panic!("edge serve did not become ready: {}", log.lock().unwrap()),
            }
        }
        Server {
            child,
            addr: addr.expect("listening line"),
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A request with `Connection: close`; the whole response.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut s = self.connect();
        send(&mut s, method, path, headers, body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        Response::parse(&raw)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> Response {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s
    }

    /// A counter or gauge from /metrics.
    pub fn metric(&self, name: &str) -> f64 {
        let m = self.get("/metrics");
        m.body_text()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in /metrics: {}", m.body_text()))
            .trim()
            .parse()
            .unwrap()
    }

    /// Runs a Python client script with the server's base URL; asserts it succeeds.
    pub fn python(&self, script: &str, args: &[&str]) -> Output {
        let pylib = test_data().join("pylib");
        assert!(
            pylib.join("openai").exists() && pylib.join("ollama").exists(),
            "the Python clients are missing in {}: run scripts/fetch-test-data.sh",
            pylib.display()
        );
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/serve_clients")
            .join(script);
        let o = Command::new("python3")
            .arg(path)
            .arg(self.url())
            .args(args)
            .env("PYTHONPATH", pylib)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .output()
            .expect("run python3");
        assert!(
            o.status.success(),
            "{script} failed:\n{}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        o
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn send(s: &mut TcpStream, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn parse(raw: &[u8]) -> Response {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        Response {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body_text()))
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}
