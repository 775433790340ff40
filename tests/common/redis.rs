//! A real `redis-server` for the cluster tests: started on a free loopback port in its own
//! temporary directory, stopped (and the directory removed) on drop. Nothing depends on a
//! Redis already running. `.ci/test` installs Debian's `redis-server`; without it these tests
//! fail with a clear message rather than pass.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a redis-server may take to answer its first PING.
const REDIS_START: Duration = Duration::from_secs(10);

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// `--appendonly yes`: data survives a restart.
    persistent: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Redis {
    /// A redis-server without persistence.
    pub fn start() -> Redis {
        Redis::start_with(false)
    }

    /// A redis-server that writes an append-only file (data survives [`Redis::restart`]).
    pub fn start_persistent() -> Redis {
        Redis::start_with(true)
    }

    fn start_with(persistent: bool) -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-redis-{}-{}",
            std::process::id(),
            super::random_u64()
        ));
        std::fs::create_dir_all(&dir).expect("create the redis temp dir");
        // A port can be taken between choosing and binding it: try a few.
        for _ in 0..5 {
            let mut r = Redis {
                child: None,
                port: free_port(),
                dir: dir.clone(),
                persistent,
            };
            if r.spawn() {
                return r;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts the server (again) on its port and directory; false if it did not come up.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--dir"])
            .arg(&self.dir)
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .args(["--appendfsync", "always", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run redis-server ({e}): install it (Debian: apt-get install redis-server; \
                 .ci/test does)"
            ),
        };
        self.child = Some(child);
        let deadline = Instant::now() + REDIS_START;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            if self.try_cmd(&["PING"]).as_deref() == Some("+PONG") {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: what is not written is lost).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): its sockets stay open and nothing answers, which is how
    /// a hung Redis, or a network that drops packets without a reset, looks to a client.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`Redis::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis is running").id();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// Stops and starts it again on the same port (with its data if persistent).
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
    }

    fn try_cmd(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_millis(200),
        )
        .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end().to_string();
        if let Some(n) = line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            let mut body = vec![0u8; n + 2];
            r.read_exact(&mut body).ok()?;
            body.truncate(n);
            return Some(String::from_utf8_lossy(&body).into_owned());
        }
        Some(line)
    }

    /// Runs one command and returns its reply's first line (a bulk reply's body).
    pub fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args)
            .unwrap_or_else(|| panic!("redis on port {} did not answer {args:?}", self.port))
    }

    /// How many times Redis ran `command` (from `INFO commandstats`), e.g. `evalsha`.
    pub fn calls(&self, command: &str) -> u64 {
        let stats = self.cmd(&["INFO", "commandstats"]);
        let key = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
