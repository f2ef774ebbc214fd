//! A minimal Redis (RESP2) client: send a command, read one reply.
//!
//! Used for the readiness probe (`PING` → `+PONG`) and for administering the pooled Redis
//! backend (`SELECT` + `FLUSHDB` when an environment gives its database back).

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

/// Bulk strings and arrays larger than this are refused.
const MAX_LEN: usize = 64 << 20;

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the server's error text.
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$n` data, `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*n` elements, `None` for the null array.
    Array(Option<Vec<Reply>>),
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    /// The connection could not be made, or broke.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server sent something that is not RESP.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// An open connection.
pub struct Connection {
    stream: BufStream<TcpStream>,
}

impl Connection {
    /// Connects to `hostport`.
    pub async fn connect(hostport: &str) -> Result<Connection, RespError> {
        let tcp = TcpStream::connect(hostport).await?;
        let _ = tcp.set_nodelay(true);
        Ok(Connection {
            stream: BufStream::new(tcp),
        })
    }

    /// Sends `args` as one command and reads its reply.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Reply, RespError> {
        self.stream
            .write_all(format!("*{}\r\n", args.len()).as_bytes())
            .await?;
        for arg in args {
            self.stream
                .write_all(format!("${}\r\n", arg.len()).as_bytes())
                .await?;
            self.stream.write_all(arg).await?;
            self.stream.write_all(b"\r\n").await?;
        }
        self.stream.flush().await?;
        self.read_reply(0).await
    }

    fn read_reply(
        &mut self,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, RespError>> + Send + '_>>
    {
        Box::pin(async move {
            if depth > 8 {
                return Err(RespError::Protocol("replies nested too deeply".into()));
            }
            let line = self.read_line().await?;
            let (kind, rest) = line
                .split_first()
                .ok_or_else(|| RespError::Protocol("empty reply line".into()))?;
            let text = String::from_utf8_lossy(rest).into_owned();
            Ok(match kind {
                b'+' => Reply::Simple(text),
                b'-' => Reply::Error(text),
                b':' => Reply::Integer(parse_int(&text)?),
                b'$' => match length(&text)? {
                    None => Reply::Bulk(None),
                    Some(n) => {
                        let mut data = vec![0; n + 2];
                        self.stream.read_exact(&mut data).await?;
                        data.truncate(n);
                        Reply::Bulk(Some(data))
                    }
                },
                b'*' => match length(&text)? {
                    None => Reply::Array(None),
                    Some(n) => {
                        let mut items = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            items.push(self.read_reply(depth + 1).await?);
                        }
                        Reply::Array(Some(items))
                    }
                },
                other => {
                    return Err(RespError::Protocol(format!(
                        "unexpected reply type {:?}",
                        *other as char
                    )))
                }
            })
        })
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, RespError> {
        let mut line = Vec::new();
        let n = (&mut self.stream)
            .take(MAX_LEN as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(RespError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        if !line.ends_with(b"\r\n") {
            return Err(RespError::Protocol("reply line not ended by CRLF".into()));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }
}

fn parse_int(text: &str) -> Result<i64, RespError> {
    text.parse()
        .map_err(|_| RespError::Protocol(format!("bad integer {text:?}")))
}

/// A length field: `-1` means null.
fn length(text: &str) -> Result<Option<usize>, RespError> {
    match parse_int(text)? {
        -1 => Ok(None),
        n if (0..=MAX_LEN as i64).contains(&n) => Ok(Some(n as usize)),
        n => Err(RespError::Protocol(format!("bad length {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn answer(reply: &'static [u8]) -> Reply {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"*1\r\n$4\r\nPING\r\n");
            s.write_all(reply).await.unwrap();
        });
        let mut c = Connection::connect(&addr).await.unwrap();
        let r = c.command(&[b"PING"]).await.unwrap();
        server.await.unwrap();
        r
    }

    #[tokio::test]
    async fn replies_decode() {
        assert_eq!(answer(b"+PONG\r\n").await, Reply::Simple("PONG".into()));
        assert_eq!(
            answer(b"-LOADING x\r\n").await,
            Reply::Error("LOADING x".into())
        );
        assert_eq!(
            answer(b"*2\r\n$2\r\nhi\r\n:5\r\n").await,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"hi".to_vec())),
                Reply::Integer(5)
            ]))
        );
        assert_eq!(answer(b"$-1\r\n").await, Reply::Bulk(None));
    }
}
