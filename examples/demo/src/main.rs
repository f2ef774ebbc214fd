//! `rig-demo`: the small services of rig's demo environment (`examples/demo/spec.json`).
//!
//! ```text
//!   shopper ──► gateway ──► orders ──► inventory
//! ```
//!
//! Each role reads its wiring the way any service under rig does, from environment variables:
//! its own address from `HOST`/`PORT` and each dependency from `<EGRESS>_HOST`/`<EGRESS>_PORT`.
//! Only the standard library is used, so the example is easy to read and quick to build.
//!
//! Roles:
//! - `inventory`: `GET /stock/<item>` → `{"item": ..., "available": n}`
//! - `orders`: `POST /orders/<item>` → asks inventory, answers 201 (placed) or 409 (out of stock)
//! - `gateway`: `GET /buy/<item>` → places the order through orders
//! - `shopper` (no ingress): buys something through the gateway every second and prints it
//!
//! Every HTTP role answers `GET /health` with 200.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn main() {
    let role = std::env::args().nth(1).unwrap_or_default();
    let result = match role.as_str() {
        "inventory" => serve(inventory),
        "orders" => serve(orders),
        "gateway" => serve(gateway),
        "shopper" => shopper(),
        _ => Err(format!(
            "usage: rig-demo <inventory|orders|gateway|shopper> (got {role:?})"
        )),
    };
    if let Err(e) = result {
        eprintln!("rig-demo {role}: {e}");
        std::process::exit(1);
    }
}

/// An HTTP response: status and JSON body.
struct Response(u16, String);

fn inventory(method: &str, path: &str) -> Response {
    match (method, path.strip_prefix("/stock/")) {
        ("GET", Some(item)) => {
            // A deterministic stock level, so the demo shows both outcomes.
            let available = item.bytes().map(u32::from).sum::<u32>() % 4;
            Response(
                200,
                format!("{{\"item\":\"{item}\",\"available\":{available}}}"),
            )
        }
        _ => not_found(),
    }
}

fn orders(method: &str, path: &str) -> Response {
    let Some(item) = path.strip_prefix("/orders/").filter(|_| method == "POST") else {
        return not_found();
    };
    match call("INVENTORY", "GET", &format!("/stock/{item}")) {
        Ok((200, body)) if !body.contains("\"available\":0") => Response(
            201,
            format!("{{\"item\":\"{item}\",\"status\":\"placed\"}}"),
        ),
        Ok((200, _)) => Response(
            409,
            format!("{{\"item\":\"{item}\",\"status\":\"out of stock\"}}"),
        ),
        Ok((status, _)) => Response(
            502,
            format!("{{\"error\":\"inventory answered {status}\"}}"),
        ),
        Err(e) => Response(502, format!("{{\"error\":\"inventory: {e}\"}}")),
    }
}

fn gateway(method: &str, path: &str) -> Response {
    let Some(item) = path.strip_prefix("/buy/").filter(|_| method == "GET") else {
        return not_found();
    };
    match call("ORDERS", "POST", &format!("/orders/{item}")) {
        Ok((status, body)) => Response(status, body),
        Err(e) => Response(502, format!("{{\"error\":\"orders: {e}\"}}")),
    }
}

fn shopper() -> Result<(), String> {
    let items = ["apple", "pear", "plum", "fig", "kiwi"];
    for n in 0.. {
        let item = items[n % items.len()];
        match call("GATEWAY", "GET", &format!("/buy/{item}")) {
            Ok((status, body)) => println!("buy {item}: {status} {body}"),
            Err(e) => println!("buy {item}: {e}"),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

fn not_found() -> Response {
    Response(404, "{\"error\":\"not found\"}".to_string())
}

/// Serves HTTP/1.1 on `HOST:PORT`, one thread per connection, one request per connection.
fn serve(handler: fn(&str, &str) -> Response) -> Result<(), String> {
    let addr = format!("{}:{}", env("HOST")?, env("PORT")?);
    let listener = TcpListener::bind(&addr).map_err(|e| format!("listen on {addr}: {e}"))?;
    eprintln!("listening on {addr}");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            if let Err(e) = handle(stream, handler) {
                eprintln!("connection: {e}");
            }
        });
    }
    Ok(())
}

fn handle(stream: TcpStream, handler: fn(&str, &str) -> Response) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    // Skip the headers; none of the demo's requests carry a body worth reading.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let Response(status, body) = if path == "/health" {
        Response(200, "{\"status\":\"ok\"}".to_string())
    } else {
        handler(method, path)
    };
    if path != "/health" {
        println!("{method} {path} -> {status}");
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    )?;
    stream.flush()
}

/// Calls a dependency named by its egress (`ORDERS` → `ORDERS_HOST`/`ORDERS_PORT`).
fn call(egress: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    let addr = format!(
        "{}:{}",
        env(&format!("{egress}_HOST"))?,
        env(&format!("{egress}_PORT"))?
    );
    let mut stream = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("malformed response from {addr}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Bad Gateway",
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (is this running under rig?)"))
}
