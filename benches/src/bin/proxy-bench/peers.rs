//! The reference proxies found on the machine: haproxy and nginx, run with configs generated
//! into the run's temporary directory on loopback ports (no system config is read or
//! changed).
//!
//! Both are configured as a user wanting a fast reverse proxy would: keep-alive on both legs,
//! connection reuse towards the origin, no access log, response buffers large enough for a
//! 64 KiB body to stay in memory, and as many threads/workers as the harness's `--threads`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::children::{find_program, free_port, Child};

/// Where the origin listens.
#[derive(Clone, Copy, Debug)]
pub struct OriginAddrs {
    /// HTTP/1.1 + h2c.
    pub http: SocketAddr,
    /// TCP sink/echo.
    pub tcp: SocketAddr,
}

/// The loopback ports a reference proxy listens on.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// HTTP/1.1.
    pub http: SocketAddr,
    /// h2c with prior knowledge.
    pub h2c: SocketAddr,
    /// TCP, if the proxy can relay raw TCP.
    pub tcp: Option<SocketAddr>,
}

/// A running reference proxy.
pub struct Running {
    /// The process (its children are counted too when measuring memory).
    pub child: Child,
    /// Where it listens.
    pub ports: Ports,
    /// Its version line.
    pub version: String,
    /// What it cannot do here, if anything (e.g. nginx without its stream module).
    pub note: Option<String>,
}

/// Starts haproxy if it is installed; `Ok(None)` if it is not.
pub fn haproxy(dir: &Path, origin: OriginAddrs, threads: usize) -> Result<Option<Running>> {
    let Some(program) = find_program("haproxy") else {
        return Ok(None);
    };
    let ports = Ports {
        http: free_port()?,
        h2c: free_port()?,
        tcp: Some(free_port()?),
    };
    let config = dir.join("haproxy.cfg");
    write(&config, &haproxy_config(ports, origin, threads))?;
    let mut command = Command::new(&program);
    // -db: stay in the foreground; -f: our config only.
    command.arg("-db").arg("-f").arg(&config);
    let mut child = Child::spawn("haproxy", command, Some(&dir.join("haproxy.log")))?;
    child.wait_for_port(ports.http)?;
    let version = version_line(&program, "-v");
    Ok(Some(Running {
        child,
        ports,
        version,
        note: None,
    }))
}

/// haproxy's config: HTTP mode with keep-alive and `http-reuse always` towards the origin
/// (HTTP/1.1 upstream, also for h2c clients), and a TCP-mode listener.
pub fn haproxy_config(ports: Ports, origin: OriginAddrs, threads: usize) -> String {
    let tcp = match ports.tcp {
        Some(tcp) => format!(
            "\nlisten tcp_in\n    mode tcp\n    bind {tcp}\n    server origin {}\n",
            origin.tcp
        ),
        None => String::new(),
    };
    format!(
        "global
    nbthread {threads}
    maxconn 8000

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend http_in
    bind {http}
    bind {h2c} proto h2
    default_backend origin_http

backend origin_http
    http-reuse always
    server origin {origin_http}
{tcp}",
        http = ports.http,
        h2c = ports.h2c,
        origin_http = origin.http,
    )
}

/// Starts nginx if it is installed; `Ok(None)` if it is not.
pub fn nginx(dir: &Path, origin: OriginAddrs, threads: usize) -> Result<Option<Running>> {
    let Some(program) = find_program("nginx") else {
        return Ok(None);
    };
    let stream = stream_module(&program);
    let ports = Ports {
        http: free_port()?,
        h2c: free_port()?,
        tcp: match stream {
            StreamModule::Missing => None,
            _ => Some(free_port()?),
        },
    };
    // nginx's workers run as an unprivileged user and must reach their temp directories.
    make_traversable(dir)?;
    let config = dir.join("nginx.conf");
    write(&config, &nginx_config(dir, ports, origin, threads, &stream))?;
    let error_log = dir.join("nginx-error.log");
    let mut command = Command::new(&program);
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&config)
        .arg("-e")
        .arg(&error_log);
    let mut child = Child::spawn("nginx", command, Some(&dir.join("nginx.out")))?;
    child.wait_for_port(ports.http)?;
    let note = matches!(stream, StreamModule::Missing).then(|| {
        "nginx has no stream module here, so no TCP relay (apt-get install libnginx-mod-stream)"
            .to_string()
    });
    Ok(Some(Running {
        child,
        ports,
        version: version_line(&program, "-v"),
        note,
    }))
}

/// Whether nginx can relay raw TCP, and how its stream module is loaded.
#[derive(Debug)]
pub enum StreamModule {
    /// Compiled in.
    BuiltIn,
    /// A dynamic module at this path.
    Dynamic(PathBuf),
    /// Not available.
    Missing,
}

fn stream_module(program: &Path) -> StreamModule {
    let configure = Command::new(program)
        .arg("-V")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stderr).into_owned())
        .unwrap_or_default();
    let dynamic = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
    if configure
        .split_whitespace()
        .any(|flag| flag == "--with-stream")
    {
        StreamModule::BuiltIn
    } else if dynamic.is_file() {
        StreamModule::Dynamic(dynamic.to_path_buf())
    } else {
        StreamModule::Missing
    }
}

/// nginx's config: an upstream keep-alive pool (HTTP/1.1 to the origin, also for h2c
/// clients), unlimited keep-alive requests, buffers that hold a 64 KiB body in memory, and a
/// stream (TCP) server with half-close when the module is there.
pub fn nginx_config(
    dir: &Path,
    ports: Ports,
    origin: OriginAddrs,
    threads: usize,
    stream: &StreamModule,
) -> String {
    let dir = dir.display();
    let load = match stream {
        StreamModule::Dynamic(path) => format!("load_module {};\n", path.display()),
        _ => String::new(),
    };
    let tcp = match ports.tcp {
        Some(tcp) => format!(
            "\nstream {{\n    server {{\n        listen {tcp};\n        proxy_pass {};\n        proxy_half_close on;\n    }}\n}}\n",
            origin.tcp
        ),
        None => String::new(),
    };
    format!(
        "{load}daemon off;
master_process on;
worker_processes {threads};
worker_rlimit_nofile 16384;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;

events {{
    worker_connections 8192;
}}

http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;

    upstream origin_http {{
        server {origin_http};
        keepalive 512;
    }}

    server {{
        listen {http};
        listen {h2c} http2;
        location / {{
            proxy_pass http://origin_http;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
{tcp}",
        http = ports.http,
        h2c = ports.h2c,
        origin_http = origin.http,
    )
}

fn make_traversable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} readable for nginx's workers", dir.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The first line a program prints for its version flag (stdout or stderr).
pub fn version_line(program: &Path, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .and_then(|out| {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Ports, OriginAddrs) {
        (
            Ports {
                http: "127.0.0.1:1001".parse().unwrap(),
                h2c: "127.0.0.1:1002".parse().unwrap(),
                tcp: Some("127.0.0.1:1003".parse().unwrap()),
            },
            OriginAddrs {
                http: "127.0.0.1:2001".parse().unwrap(),
                tcp: "127.0.0.1:2002".parse().unwrap(),
            },
        )
    }

    #[test]
    fn haproxy_config_listens_where_asked_and_reuses_upstream_connections() {
        let (ports, origin) = sample();
        let config = haproxy_config(ports, origin, 2);
        assert!(config.contains("nbthread 2"));
        assert!(config.contains("bind 127.0.0.1:1001\n"));
        assert!(config.contains("bind 127.0.0.1:1002 proto h2"));
        assert!(config.contains("http-reuse always"));
        assert!(config.contains("server origin 127.0.0.1:2001"));
        assert!(config.contains("bind 127.0.0.1:1003\n    server origin 127.0.0.1:2002"));
    }

    #[test]
    fn nginx_config_keeps_alive_and_loads_the_stream_module_when_dynamic() {
        let (ports, origin) = sample();
        let module = StreamModule::Dynamic("/m/ngx_stream_module.so".into());
        let config = nginx_config(Path::new("/tmp/x"), ports, origin, 2, &module);
        assert!(config.starts_with("load_module /m/ngx_stream_module.so;"));
        assert!(config.contains("worker_processes 2;"));
        assert!(config.contains("listen 127.0.0.1:1002 http2;"));
        assert!(config.contains("keepalive 512;"));
        assert!(config.contains("proxy_pass 127.0.0.1:2002;"));

        let without_tcp = Ports { tcp: None, ..ports };
        let config = nginx_config(
            Path::new("/tmp/x"),
            without_tcp,
            origin,
            1,
            &StreamModule::Missing,
        );
        assert!(!config.contains("stream {"));
        assert!(!config.contains("load_module"));
    }
}
