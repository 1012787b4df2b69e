//! A minimal HTTP/1.1 keep-alive client for the push API: one request at a
//! time per connection, `Content-Length` or chunked answers. Small on
//! purpose: the bench needs nothing more, and it keeps the binary lean.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Deadline on one request (connect, write, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer header block accepted.
const MAX_HEAD: usize = 16 * 1024;

/// One keep-alive connection to the push API; reconnects after an error.
#[derive(Debug)]
pub(crate) struct HttpConn {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    buf: BytesMut,
}

/// A push API answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: BytesMut,
}

impl Answer {
    /// Whether goim's envelope says the push was accepted: HTTP 200 and `"code": 0`.
    pub(crate) fn accepted(&self) -> bool {
        if self.status != 200 {
            return false;
        }
        #[derive(serde::Deserialize)]
        struct Envelope {
            code: i64,
        }
        serde_json::from_slice::<Envelope>(&self.body).is_ok_and(|e| e.code == 0)
    }

    /// A stored push's mailbox appends (`store=1`): `data.accepted` of an
    /// accepted answer; `None` when the push was refused or the answer has
    /// no count.
    pub(crate) fn stored(&self) -> Option<u64> {
        if self.status != 200 {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Data {
            accepted: u64,
        }
        #[derive(serde::Deserialize)]
        struct Envelope {
            code: i64,
            data: Option<Data>,
        }
        let e: Envelope = serde_json::from_slice(&self.body).ok()?;
        (e.code == 0).then_some(e.data?.accepted)
    }
}

impl HttpConn {
    pub(crate) fn new(addr: SocketAddr) -> HttpConn {
        HttpConn {
            addr,
            host: addr.to_string(),
            stream: None,
            buf: BytesMut::with_capacity(1024),
        }
    }

    /// `POST path` with `body`; on any error the connection is dropped and
    /// the next call reconnects.
    pub(crate) async fn post(&mut self, path: &str, body: &[u8]) -> anyhow::Result<Answer> {
        self.request("POST", path, body).await
    }

    /// `GET path`, as [`HttpConn::post`].
    pub(crate) async fn get(&mut self, path: &str) -> anyhow::Result<Answer> {
        self.request("GET", path, b"").await
    }

    async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Answer> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.request_inner(method, path, body)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                bail!("{method} {path}: no answer within {REQUEST_TIMEOUT:?}")
            }
        }
    }

    async fn request_inner(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<Answer> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connect to the push API at {}", self.addr))?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let Some(stream) = self.stream.as_mut() else {
            bail!("no connection");
        };
        let mut req = Vec::with_capacity(128 + path.len() + body.len());
        req.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                self.host,
                body.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(body);
        stream.write_all(&req).await.context("write request")?;
        read_answer(stream, &mut self.buf).await
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> anyhow::Result<()> {
    buf.reserve(4096);
    let n = stream.read_buf(buf).await.context("read answer")?;
    if n == 0 {
        bail!("the server closed the connection");
    }
    Ok(())
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

async fn read_answer(stream: &mut TcpStream, buf: &mut BytesMut) -> anyhow::Result<Answer> {
    // Header block.
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            bail!("answer header block over {MAX_HEAD} bytes");
        }
        fill(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("answer header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .with_context(|| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    buf.advance(head_end + 4);
    let body = if chunked {
        let mut body = BytesMut::new();
        loop {
            let line_end = loop {
                if let Some(p) = find_crlf(buf, 0) {
                    break p;
                }
                fill(stream, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[..line_end]).unwrap_or("");
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            buf.advance(line_end + 2);
            while buf.len() < size + 2 {
                fill(stream, buf).await?;
            }
            body.extend_from_slice(&buf[..size]);
            buf.advance(size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        let len = content_length.context("answer without Content-Length or chunked body")?;
        while buf.len() < len {
            fill(stream, buf).await?;
        }
        buf.split_to(len)
    };
    if close {
        bail!("the server closed the keep-alive connection (status {status})");
    }
    Ok(Answer { status, body })
}
