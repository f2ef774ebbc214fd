//! A minimal PostgreSQL client: the startup handshake (trust or cleartext-password
//! authentication) and the simple query protocol, over TCP.
//!
//! Used for the readiness probe (a real startup handshake, not only a TCP connect), for
//! creating and dropping the per-environment databases of the postgres pool and for `sql`
//! hooks. The simple query protocol runs a string of several `;`-separated statements in one
//! round trip, which is what a migration file is.

use std::fmt;
use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

/// The protocol version sent in the startup message (3.0).
const PROTOCOL_VERSION: i32 = 196_608;

/// Messages larger than this are refused (a guard against a garbage length field).
const MAX_MESSAGE: usize = 64 << 20;

/// Why a PostgreSQL exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection could not be made, or broke.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server answered with an `ErrorResponse`.
    #[error("{0}")]
    Server(ServerError),
    /// The server asked for an authentication method this client does not speak.
    #[error("authentication method {0} is not supported (use trust or password authentication)")]
    UnsupportedAuth(i32),
    /// The server sent something that is not the PostgreSQL protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The SQL ran `COPY ... FROM STDIN`, which waits for data this client does not send
    /// (the copy was refused and the server's error read, so the connection is usable).
    #[error("{COPY_IN_REFUSED}")]
    CopyFromStdin,
}

/// Why a `COPY ... FROM STDIN` is refused: sent to the server in `CopyFail` (it comes back in
/// the server's error) and the text of [`PgError::CopyFromStdin`].
pub const COPY_IN_REFUSED: &str = "COPY FROM STDIN is not supported in sql hooks (rigd has no \
                                   data to send): use INSERT statements (pg_dump --inserts \
                                   writes them), or an exec hook running psql (psql -f <file>)";

impl PgError {
    /// The SQLSTATE code of a server error (`57P03`: the server is starting up).
    pub fn code(&self) -> Option<&str> {
        match self {
            PgError::Server(e) => Some(&e.code),
            _ => None,
        }
    }
}

/// The fields of an `ErrorResponse` that matter to a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL`, ...
    pub severity: String,
    /// The SQLSTATE code.
    pub code: String,
    /// The primary message.
    pub message: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        )
    }
}

/// Who to connect as.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// The role.
    pub user: &'a str,
    /// The password, sent only if the server asks for a cleartext password.
    pub password: &'a str,
    /// The database.
    pub database: &'a str,
}

/// One result row: each column's text, `None` for SQL NULL.
pub type Row = Vec<Option<String>>;

/// An open, authenticated connection.
pub struct Connection {
    stream: BufStream<TcpStream>,
}

impl Connection {
    /// Connects to `hostport` and completes the startup handshake (until `ReadyForQuery`).
    pub async fn connect(hostport: &str, login: Login<'_>) -> Result<Connection, PgError> {
        let tcp = TcpStream::connect(hostport).await?;
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            stream: BufStream::new(tcp),
        };
        conn.startup(login).await?;
        Ok(conn)
    }

    async fn startup(&mut self, login: Login<'_>) -> Result<(), PgError> {
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        for (key, value) in [
            ("user", login.user),
            ("database", login.database),
            ("application_name", "rigd"),
        ] {
            push_cstr(&mut body, key);
            push_cstr(&mut body, value);
        }
        body.push(0);
        let len = i32::try_from(body.len() + 4)
            .map_err(|_| PgError::Protocol("startup message too long".into()))?;
        self.stream.write_all(&len.to_be_bytes()).await?;
        self.stream.write_all(&body).await?;
        self.stream.flush().await?;
        loop {
            let (tag, body) = self.read_message().await?;
            match tag {
                b'R' => {
                    let method = read_i32(&body, 0)?;
                    match method {
                        0 => {}
                        3 => {
                            let mut pw = Vec::new();
                            push_cstr(&mut pw, login.password);
                            self.send(b'p', &pw).await?;
                        }
                        other => return Err(PgError::UnsupportedAuth(other)),
                    }
                }
                b'E' => return Err(PgError::Server(parse_error(&body))),
                b'Z' => return Ok(()),
                // ParameterStatus, BackendKeyData, NoticeResponse, NegotiateProtocolVersion.
                _ => {}
            }
        }
    }

    /// Runs `sql` (one or more `;`-separated statements) with the simple query protocol and
    /// returns the rows of every statement, in order. The first error fails the whole string
    /// (the server stops at it; statements before it in an implicit transaction roll back).
    ///
    /// `COPY ... FROM STDIN` is refused at once ([`PgError::CopyFromStdin`]) rather than left
    /// waiting for data; what a `COPY ... TO STDOUT` sends is read and discarded.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, PgError> {
        let mut body = Vec::with_capacity(sql.len() + 1);
        push_cstr(&mut body, sql);
        self.send(b'Q', &body).await?;
        let mut rows = Vec::new();
        let mut error = None;
        let mut copy_in = false;
        loop {
            let (tag, body) = self.read_message().await?;
            match tag {
                b'D' => rows.push(parse_row(&body)?),
                b'E' => error = Some(parse_error(&body)),
                b'Z' => break,
                // CopyInResponse: the server waits for CopyData; CopyFail ends the copy with
                // an ErrorResponse, then ReadyForQuery, read on by this loop.
                b'G' => {
                    copy_in = true;
                    let mut reason = Vec::with_capacity(COPY_IN_REFUSED.len() + 1);
                    push_cstr(&mut reason, COPY_IN_REFUSED);
                    self.send(b'f', &reason).await?;
                }
                // RowDescription, CommandComplete, EmptyQueryResponse, notices, and
                // CopyOutResponse with its CopyData and CopyDone (the data is not kept).
                _ => {}
            }
        }
        match error {
            Some(_) if copy_in => Err(PgError::CopyFromStdin),
            Some(e) => Err(PgError::Server(e)),
            None => Ok(rows),
        }
    }

    /// Says goodbye (`Terminate`) and closes the connection.
    pub async fn close(mut self) {
        let _ = self.send(b'X', &[]).await;
        let _ = self.stream.shutdown().await;
    }

    async fn send(&mut self, tag: u8, body: &[u8]) -> Result<(), PgError> {
        let len = i32::try_from(body.len() + 4)
            .map_err(|_| PgError::Protocol("message too long".into()))?;
        self.stream.write_u8(tag).await?;
        self.stream.write_all(&len.to_be_bytes()).await?;
        self.stream.write_all(body).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn read_message(&mut self) -> Result<(u8, Vec<u8>), PgError> {
        let tag = self.stream.read_u8().await?;
        let len = self.stream.read_i32().await?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| (4..=MAX_MESSAGE).contains(&l))
            .ok_or_else(|| {
                PgError::Protocol(format!(
                    "bad message length {len} for message {:?}",
                    tag as char
                ))
            })?;
        let mut body = vec![0; len - 4];
        self.stream.read_exact(&mut body).await?;
        Ok((tag, body))
    }
}

/// Quotes `name` as an SQL identifier (`"a""b"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes `text` as an SQL string literal (`'it''s'`).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn push_cstr(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

fn read_i32(body: &[u8], at: usize) -> Result<i32, PgError> {
    body.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_be_bytes)
        .ok_or_else(|| PgError::Protocol("message too short".into()))
}

fn parse_error(body: &[u8]) -> ServerError {
    let mut e = ServerError {
        severity: String::new(),
        code: String::new(),
        message: String::new(),
    };
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match field {
            b'S' if e.severity.is_empty() => e.severity = value,
            b'V' => e.severity = value,
            b'C' => e.code = value,
            b'M' => e.message = value,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    e
}

fn parse_row(body: &[u8]) -> Result<Row, PgError> {
    let short = || PgError::Protocol("DataRow too short".into());
    let count = u16::from_be_bytes(
        body.get(0..2)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    let mut at = 2;
    let mut row = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = read_i32(body, at)?;
        at += 4;
        if len < 0 {
            row.push(None);
            continue;
        }
        let end = at + len as usize;
        let value = body.get(at..end).ok_or_else(short)?;
        row.push(Some(String::from_utf8_lossy(value).into_owned()));
        at = end;
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_parse_their_fields() {
        let body = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0";
        let e = parse_error(body);
        assert_eq!(e.code, "57P03");
        assert_eq!(e.severity, "FATAL");
        assert_eq!(
            e.to_string(),
            "FATAL: the database system is starting up (SQLSTATE 57P03)"
        );
        // Truncated input does not panic.
        assert_eq!(parse_error(b"C57").code, "57");
    }

    #[test]
    fn rows_parse_nulls_and_text() {
        let mut body = vec![0, 2];
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(b"hi");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(parse_row(&body).unwrap(), vec![Some("hi".into()), None]);
        assert!(parse_row(&body[..5]).is_err());
        assert!(parse_row(&[0]).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
