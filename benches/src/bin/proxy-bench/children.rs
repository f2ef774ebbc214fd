//! The processes the harness runs: its own server subcommands, haproxy, nginx, pingora.
//!
//! Every child gets `PR_SET_PDEATHSIG(SIGTERM)`, so none outlives a harness that dies, and is
//! stopped with SIGTERM (then SIGKILL after a grace period) when its [`Child`] is dropped.
//! The harness's own subcommands also stop when their standard input closes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a child may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running child process.
pub struct Child {
    name: String,
    process: std::process::Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    /// Where its diagnostics go, named in errors.
    log: Option<std::path::PathBuf>,
}

impl Child {
    /// Starts `command` as `name`. Its stdin is a pipe kept by the [`Child`]. With a `log`
    /// (haproxy, nginx) its stdout and stderr go to that file; without one its stdout is a
    /// pipe read by [`Child::read_listening`] and [`Child::finish`] and its stderr is the
    /// harness's.
    pub fn spawn(name: &str, mut command: Command, log: Option<&std::path::Path>) -> Result<Child> {
        command.stdin(Stdio::piped());
        match log {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                command.stdout(file.try_clone()?).stderr(file);
            }
            None => {
                command.stdout(Stdio::piped()).stderr(Stdio::inherit());
            }
        }
        // SAFETY: the closure only calls prctl, which is async-signal-safe, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut process = command
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        Ok(Child {
            name: name.to_string(),
            stdin: process.stdin.take(),
            stdout: process.stdout.take(),
            process,
            log: log.map(|p| p.to_path_buf()),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Reads the child's `listening NAME=ADDR ...` line (the harness's own subcommands print
    /// one when ready) and returns the addresses by name.
    pub fn read_listening(&mut self) -> Result<HashMap<String, SocketAddr>> {
        let line = self.read_line(START_TIMEOUT)?;
        parse_listening(&line).with_context(|| format!("{} announced {line:?}", self.name))
    }

    /// Waits until `addr` accepts a TCP connection (for children that do not announce
    /// themselves), failing early if the child exits.
    pub fn wait_for_port(&mut self, addr: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.process.try_wait()? {
                bail!(
                    "{} exited with {status} before listening{}",
                    self.name,
                    self.log_hint()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not listen on {addr} within {START_TIMEOUT:?}{}",
                    self.name,
                    self.log_hint()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes the child's stdin (the harness's subcommands stop then), waits for it to exit
    /// and returns what it printed after its `listening` line.
    pub fn finish(mut self) -> Result<String> {
        drop(self.stdin.take());
        let rest = match self.stdout.take() {
            Some(stdout) => read_to_end_within(stdout, STOP_GRACE)?,
            None => String::new(),
        };
        self.stop();
        Ok(rest)
    }

    fn read_line(&mut self, limit: Duration) -> Result<String> {
        let stdout = self
            .stdout
            .take()
            .with_context(|| format!("{}: stdout already consumed", self.name))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let result = reader.read_line(&mut line).map(|_| line);
            // The rest of stdout stays readable through the returned reader.
            let _ = tx.send((result, reader.into_inner()));
        });
        match rx.recv_timeout(limit) {
            Ok((Ok(line), stdout)) if !line.is_empty() => {
                self.stdout = Some(stdout);
                Ok(line.trim_end().to_string())
            }
            Ok((Ok(_), _)) => bail!(
                "{} closed its stdout without announcing its ports",
                self.name
            ),
            Ok((Err(error), _)) => Err(error).context(format!("reading {}'s stdout", self.name)),
            Err(_) => bail!("{} did not start within {limit:?}", self.name),
        }
    }

    /// SIGTERM, then SIGKILL if the child has not exited within [`STOP_GRACE`].
    fn stop(&mut self) {
        if matches!(self.process.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.process.id()) {
            // SAFETY: kill(2) on the pid of a child this process has not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.process.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "proxy-bench: {} did not stop within {STOP_GRACE:?} of SIGTERM; killing it",
            self.name
        );
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    fn log_hint(&self) -> String {
        match &self.log {
            Some(path) => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!(" (log {}: {})", path.display(), tail.join(" | "))
            }
            None => String::new(),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        drop(self.stdin.take());
        self.stop();
    }
}

/// Parses `listening NAME=ADDR ...`.
pub fn parse_listening(line: &str) -> Result<HashMap<String, SocketAddr>> {
    let mut words = line.split_whitespace();
    if words.next() != Some("listening") {
        bail!("expected a line starting with `listening`");
    }
    words
        .map(|word| {
            let (name, addr) = word
                .split_once('=')
                .with_context(|| format!("{word:?} is not NAME=ADDR"))?;
            let addr = addr
                .parse()
                .with_context(|| format!("{addr:?} is not an address"))?;
            Ok((name.to_string(), addr))
        })
        .collect()
}

fn read_to_end_within(mut stdout: ChildStdout, limit: Duration) -> Result<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = tx.send(stdout.read_to_string(&mut text).map(|_| text));
    });
    match rx.recv_timeout(limit) {
        Ok(result) => Ok(result?),
        Err(_) => Ok(String::new()),
    }
}

/// A loopback address with a port that was free a moment ago, for programs that take their
/// listen address in a config file (haproxy, nginx, pingora).
pub fn free_port() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// The full path of `program` if it is installed (searching `PATH` and the sbin directories,
/// where Debian puts haproxy and nginx).
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(Into::into))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines() {
        let addrs = parse_listening("listening http=127.0.0.1:80 tcp=127.0.0.1:81").unwrap();
        assert_eq!(addrs["http"], "127.0.0.1:80".parse().unwrap());
        assert_eq!(addrs["tcp"], "127.0.0.1:81".parse().unwrap());
        assert!(parse_listening("ready http=127.0.0.1:80").is_err());
        assert!(parse_listening("listening http").is_err());
        assert!(parse_listening("listening http=nowhere").is_err());
    }
}
