//! The sandbox's HTTP/1.1 server, on `std` only: one thread per connection, which reads each
//! request head, runs the handler (which reads the body and answers) and goes on with the next
//! request of the connection (keep-alive).
//!
//! No thread pool: an idle keep-alive connection holds its own thread and nothing else, so it
//! cannot keep a new connection waiting (tiny_http's pool could leave one queued for good).
//! At most [`MAX_CONNECTIONS`] are open at once; one more is answered 503 and closed.
//!
//! Request bodies come with `Content-Length` or `Transfer-Encoding: chunked`; a `POST` that
//! announces content (`Content-Type`) without either is answered 411. Answers always carry
//! `Content-Length`. [`Server::stop`] closes every connection, so a client holding an idle one
//! sees it closed at once instead of waiting for an answer that never comes.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::wire;

/// Open connections at most (each has a thread).
const MAX_CONNECTIONS: usize = 512;
/// Request line plus headers (and, apart, chunked trailers), bytes; more is answered 431.
const MAX_HEAD_BYTES: usize = 64 << 10;
/// How long a read may wait: an idle keep-alive connection is closed after this.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write may wait for a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// After an answer that closes the connection while the client may still be sending (a body
/// not read), what is read and thrown away so that the close does not reset the connection
/// before the client has read the answer.
const LINGER_BYTES: u64 = 4 << 20;
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

type Handler = dyn Fn(&mut Request<'_>) + Send + Sync;

/// A listening server. [`Server::stop`] (or dropping it) closes the listener and every
/// connection and joins the threads.
pub(super) struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    /// None once stopped.
    accept: Option<JoinHandle<()>>,
}

struct State {
    stopping: AtomicBool,
    /// Open connections by number: a clone of the socket (to close it from [`Server::stop`])
    /// and the thread serving it (set just after the thread starts).
    conns: Mutex<HashMap<u64, Conn>>,
    handler: Box<Handler>,
}

struct Conn {
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Server {
    /// Serves `listener` from a new thread; `handler` runs on each connection's thread and must
    /// call [`Request::respond`] or [`Request::drop_connection`] (else the answer is a 500).
    pub fn start(
        listener: TcpListener,
        handler: impl Fn(&mut Request<'_>) + Send + Sync + 'static,
    ) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            handler: Box::new(handler),
        });
        let st = state.clone();
        let accept = std::thread::Builder::new()
            .name("ibr-sandbox-accept".into())
            .spawn(move || accept_loop(&listener, &st))?;
        Ok(Server {
            addr,
            state,
            accept: Some(accept),
        })
    }

    /// Stops accepting, shuts down every open connection without answering what it is waiting
    /// for, and joins the threads (a request being handled is finished first; its answer is
    /// lost). Idempotent.
    pub fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.state.stopping.store(true, Ordering::SeqCst);
        // `accept` blocks: a connection of our own wakes it up to see the flag.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(5)).is_ok() {
            let _ = accept.join();
        }
        // Else the accept thread is left behind (it stops at its next connection); the
        // connections it still starts see the flag after their first request.
        let conns: Vec<Conn> = lock(&self.state.conns).drain().map(|(_, c)| c).collect();
        for c in &conns {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        for c in conns {
            if let Some(t) = c.thread {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<State>) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if state.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors and the like: wait for some to be freed.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let Ok(registered) = stream.try_clone() else {
            continue;
        };
        let mut conns = lock(&state.conns);
        if conns.len() >= MAX_CONNECTIONS {
            drop(conns);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let body = br#"{"errors":[{"code":"err.service.unavailable","message":"too many connections"}]}"#;
            let _ = write_response(&stream, 503, &[], body, Some("close"), true);
            let _ = stream.shutdown(Shutdown::Write);
            continue;
        }
        next_id += 1;
        let id = next_id;
        conns.insert(
            id,
            Conn {
                stream: registered,
                thread: None,
            },
        );
        drop(conns);
        let st = state.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ibr-sandbox-conn-{id}"))
            .spawn(move || connection(&st, id, stream));
        let mut conns = lock(&state.conns);
        match spawned {
            // Absent when the thread has already finished: dropping the handle detaches it.
            Ok(thread) => {
                if let Some(c) = conns.get_mut(&id) {
                    c.thread = Some(thread);
                }
            }
            Err(_) => {
                if let Some(c) = conns.remove(&id) {
                    let _ = c.stream.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// Removes the connection from the registry when its thread ends, however it ends.
struct Registered<'a> {
    state: &'a State,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.state.conns).remove(&self.id);
    }
}

/// The life of one connection: requests one after the other until one of the sides closes.
fn connection(state: &State, id: u64, stream: TcpStream) {
    let _registered = Registered { state, id };
    // Without TCP_NODELAY an answer written in two segments waits for the client's delayed
    // ACK (~40 ms).
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut conn = BufReader::with_capacity(16 << 10, stream);
    while !state.stopping.load(Ordering::SeqCst) {
        let head = match read_head(&mut conn) {
            Ok(head) => head,
            Err(HeadError::Closed) => return,
            Err(HeadError::Refused(status, why)) => {
                let body =
                    format!(r#"{{"errors":[{{"code":"err.request.bad","message":"{why}"}}]}}"#);
                let _ = write_response(
                    conn.get_ref(),
                    status,
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                    Some("close"),
                    true,
                );
                return linger(conn);
            }
        };
        let mut rq = Request {
            head,
            conn: &mut conn,
            body: BodyState::Unread,
            outcome: Outcome::Pending,
        };
        (state.handler)(&mut rq);
        if rq.outcome == Outcome::Pending {
            rq.respond(500, &[], b"");
        }
        match rq.outcome {
            Outcome::Pending | Outcome::KeepAlive => {}
            Outcome::Close => return linger(conn),
            Outcome::Gone => return,
        }
    }
}

/// Closes after an answer: stops sending, then reads what the client may still be sending
/// (for a while), so the kernel does not answer it with a reset that can destroy the answer
/// before the client has read it.
fn linger(conn: BufReader<TcpStream>) {
    let stream = conn.get_ref();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(LINGER_TIMEOUT));
    let _ = io::copy(&mut conn.take(LINGER_BYTES), &mut io::sink());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// Neither `Content-Length` nor `Transfer-Encoding`: no body (RFC 9112 §6.3).
    Missing,
    Length(u64),
    Chunked,
}

pub(super) struct Head {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    http10: bool,
    framing: Framing,
    /// What the client asked for; the answer may still close (a body left unread).
    keep_alive: bool,
    expect_continue: bool,
}

pub(super) enum HeadError {
    /// Closed by the client, idle too long, or a read error: nothing to answer.
    Closed,
    /// Answer this status and close.
    Refused(u16, &'static str),
}

/// Header fields in a request head, at most; more is answered 431.
const MAX_HEADERS: usize = 128;

/// RFC 9110 `tchar`: what a header name is made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Reads one request head off the connection and parses it (`httparse`). The head is read line
/// by line up to its empty line, so nothing of the body or of a pipelined request is consumed.
fn read_head(r: &mut impl BufRead) -> Result<Head, HeadError> {
    let mut raw = Vec::with_capacity(512);
    match wire::read_head_bytes(r, MAX_HEAD_BYTES, &mut raw) {
        Ok(()) => parse_head(&raw),
        Err(wire::LineError::Closed) => Err(HeadError::Closed),
        Err(wire::LineError::TooLong) => Err(HeadError::Refused(431, "request head too large")),
    }
}

/// Parses a whole request head (request line, header fields, empty line) with `httparse` and
/// decides the framing of its body (RFC 9112 §6).
pub(super) fn parse_head(raw: &[u8]) -> Result<Head, HeadError> {
    let bad = |why| HeadError::Refused(400, why);
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("malformed request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Refused(431, "too many header fields"))
        }
        Err(httparse::Error::Version) => {
            // A well-formed request line of another HTTP version is 505, anything else 400.
            let line = raw
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .find(|l| !l.is_empty())
                .unwrap_or_default();
            let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            return Err(match parts.as_slice() {
                [_, _, v] if v.starts_with(b"HTTP/") => {
                    HeadError::Refused(505, "only HTTP/1.1 and HTTP/1.0")
                }
                _ => bad("malformed request line"),
            });
        }
        Err(httparse::Error::Token) => return Err(bad("malformed request line")),
        Err(_) => return Err(bad("malformed header")),
    }
    let (Some(method), Some(url), Some(version)) = (req.method, req.path, req.version) else {
        return Err(bad("malformed request line"));
    };
    if url.is_empty() {
        return Err(bad("malformed request line"));
    }
    let http10 = version == 0;
    let (method, url) = (method.to_owned(), url.to_owned());
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value);
            (
                h.name.to_owned(),
                value.trim_matches([' ', '\t']).to_owned(),
            )
        })
        .collect();
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let tokens = |name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    };
    let connection = tokens("connection");
    let keep_alive = if http10 {
        connection.iter().any(|t| t == "keep-alive") && !connection.iter().any(|t| t == "close")
    } else {
        !connection.iter().any(|t| t == "close")
    };
    let framing = match (has("transfer-encoding"), has("content-length")) {
        // Two framings that a proxy in front may read differently: the way to smuggle a
        // request (RFC 9112 §6.1 lets a server refuse it).
        (true, true) => return Err(bad("both Content-Length and Transfer-Encoding")),
        (true, false) => match tokens("transfer-encoding").as_slice() {
            [only] if only == "chunked" => Framing::Chunked,
            [.., last] if last == "chunked" => {
                return Err(HeadError::Refused(501, "only the chunked transfer coding"))
            }
            _ => return Err(bad("the last transfer coding must be chunked")),
        },
        (false, true) => {
            let lengths = tokens("content-length");
            let valid = |t: &String| t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit());
            match lengths.first() {
                Some(first) if lengths.iter().all(|t| valid(t) && t == first) => {
                    Framing::Length(first.parse().map_err(|_| bad("invalid Content-Length"))?)
                }
                _ => return Err(bad("invalid Content-Length")),
            }
        }
        (false, false) => Framing::Missing,
    };
    let expect_continue = !http10 && tokens("expect").iter().any(|t| t == "100-continue");
    Ok(Head {
        method,
        url,
        headers,
        http10,
        framing,
        keep_alive,
        expect_continue,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyState {
    Unread,
    Read,
    /// Not read in full (too large, malformed, cut): the connection cannot be reused.
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pending,
    /// Answered; the next request may follow on the connection.
    KeepAlive,
    /// Answered with `Connection: close`.
    Close,
    /// Dropped, or the answer could not be written.
    Gone,
}

/// Why a body could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyError {
    /// Longer than the limit (413).
    TooLarge,
    /// A `POST` with a `Content-Type` but neither `Content-Length` nor chunked (411).
    LengthRequired,
    /// Cut, timed out or malformed (400).
    Io,
}

/// One request on a connection.
pub(super) struct Request<'a> {
    head: Head,
    conn: &'a mut BufReader<TcpStream>,
    body: BodyState,
    outcome: Outcome,
}

impl Request<'_> {
    pub fn method(&self) -> &str {
        &self.head.method
    }

    /// The request target as sent: path and query.
    pub fn url(&self) -> &str {
        &self.head.url
    }

    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The whole body, at most `limit` bytes. A second call gives an empty body.
    pub fn read_body(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        if self.body != BodyState::Unread {
            return Ok(Vec::new());
        }
        let body = self.read_body_once(limit);
        self.body = if body.is_ok() {
            BodyState::Read
        } else {
            BodyState::Failed
        };
        body
    }

    fn read_body_once(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        match self.head.framing {
            Framing::Missing
                if matches!(self.method(), "POST" | "PUT" | "PATCH")
                    && self.header("Content-Type").is_some() =>
            {
                // hyper (reqwest) sends a POST without a body with neither header, so only
                // a request that announces content is refused.
                Err(BodyError::LengthRequired)
            }
            Framing::Missing | Framing::Length(0) => Ok(Vec::new()),
            Framing::Length(n) if n > limit as u64 => Err(BodyError::TooLarge),
            Framing::Length(n) => {
                self.send_continue()?;
                let mut body = vec![0; n as usize];
                self.conn.read_exact(&mut body).map_err(|_| BodyError::Io)?;
                Ok(body)
            }
            Framing::Chunked => {
                self.send_continue()?;
                read_chunked(self.conn, limit)
            }
        }
    }

    fn send_continue(&mut self) -> Result<(), BodyError> {
        if self.head.expect_continue {
            self.head.expect_continue = false;
            let mut stream = self.conn.get_ref();
            stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .map_err(|_| BodyError::Io)?;
        }
        Ok(())
    }

    /// Whether the connection can carry another request after this one.
    fn reusable(&self) -> bool {
        self.head.keep_alive
            && match self.body {
                BodyState::Read => true,
                BodyState::Unread => {
                    matches!(self.head.framing, Framing::Missing | Framing::Length(0))
                }
                BodyState::Failed => false,
            }
    }

    /// Writes the answer (`Content-Length` and `Connection` are added; headers with a line
    /// break are left out). Only the first answer of a request is written.
    pub fn respond(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        if self.outcome != Outcome::Pending {
            return;
        }
        let keep = self.reusable();
        let connection = match (keep, self.head.http10) {
            (false, _) => Some("close"),
            (true, true) => Some("keep-alive"),
            (true, false) => None,
        };
        let with_body = self.head.method != "HEAD";
        let written = write_response(
            self.conn.get_ref(),
            status,
            headers,
            body,
            connection,
            with_body,
        );
        self.outcome = match (written, keep) {
            (Err(_), _) => Outcome::Gone,
            (Ok(()), true) => Outcome::KeepAlive,
            (Ok(()), false) => Outcome::Close,
        };
    }

    /// Closes the connection without an answer (the client sees it cut).
    pub fn drop_connection(&mut self) {
        if self.outcome == Outcome::Pending {
            let _ = self.conn.get_ref().shutdown(Shutdown::Both);
            self.outcome = Outcome::Gone;
        }
    }
}

fn read_chunked(r: &mut impl BufRead, limit: usize) -> Result<Vec<u8>, BodyError> {
    wire::read_chunked(r, limit, MAX_HEAD_BYTES).map_err(|e| match e {
        wire::ChunkError::TooLarge => BodyError::TooLarge,
        wire::ChunkError::Malformed => BodyError::Io,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        // The reason phrase is optional (RFC 9112 §4).
        _ => "",
    }
}

/// Writes a whole answer in one write (head and body together: one segment for small ones).
fn write_response(
    mut stream: &TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    connection: Option<&str>,
    with_body: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + body.len());
    write!(out, "HTTP/1.1 {status} {}\r\n", reason(status))?;
    // The caller's Date, when it gives one (a skewed clock), else now.
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("date")) {
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
        write!(out, "Date: {date}\r\n")?;
    }
    write!(out, "Content-Length: {}\r\n", body.len())?;
    if let Some(c) = connection {
        write!(out, "Connection: {c}\r\n")?;
    }
    for (name, value) in headers {
        let framing = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|f| name.eq_ignore_ascii_case(f));
        if framing || !is_token(name) || value.contains(['\r', '\n']) {
            continue;
        }
        write!(out, "{name}: {value}\r\n")?;
    }
    out.extend_from_slice(b"\r\n");
    if with_body {
        out.extend_from_slice(body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Head, u16> {
        read_head(&mut text.as_bytes()).map_err(|e| match e {
            HeadError::Closed => 0,
            HeadError::Refused(status, _) => status,
        })
    }

    #[test]
    fn heads_and_framing() {
        let h =
            head("\r\nPOST /a?b=1 HTTP/1.1\r\nHost: x\r\ncontent-length:  12 \r\n\r\n").unwrap();
        assert_eq!((h.method.as_str(), h.url.as_str()), ("POST", "/a?b=1"));
        assert_eq!(
            (h.framing, h.keep_alive, h.http10),
            (Framing::Length(12), true, false)
        );
        let h = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(h.keep_alive && h.http10 && h.framing == Framing::Missing);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            !head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert!(h.framing == Framing::Chunked && h.keep_alive);
        assert!(head("POST / HTTP/1.1\nContent-Length: 0\n\n").is_ok());
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n")
                .unwrap()
                .framing,
            Framing::Length(3)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").err(),
            Some(501)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n").err(),
            Some(400)
        );
    }

    #[test]
    fn content_length_with_transfer_encoding_is_refused() {
        // Request smuggling: whichever framing a proxy in front chose, the other is refused.
        for text in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 0\r\ntransfer-encoding: identity\r\n\r\n",
            "POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(head(text).err(), Some(400), "{text:?}");
        }
    }

    #[test]
    fn malformed_heads_are_refused() {
        assert_eq!(head("GET / HTTP/2.0\r\n\r\n").err(), Some(505));
        assert_eq!(head("GET / HTTP/1.2\r\n\r\n").err(), Some(505));
        for text in [
            "GET /\r\n\r\n",
            "GET / FTP/1.1\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 extra\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            "GET / HTTP/1.1\r\n: no name\r\n\r\n",
            "GET / HTTP/1.1\r\nA: x\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nA: x\u{1}y\r\n\r\n",
            "GET / HTTP/1.1\rA: b\r\n\r\n",
        ] {
            assert_eq!(head(text).err(), Some(400), "{text:?}");
        }
        assert_eq!(head("GET / HTTP/1.1\r\nHost: x\r\n").err(), Some(0));
        assert_eq!(head("").err(), Some(0));
    }

    #[test]
    fn oversized_heads_are_refused() {
        let big = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(head(&big).err(), Some(431));
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(head(&long_line).err(), Some(431));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            head(&format!("GET / HTTP/1.1\r\n{many}\r\n")).err(),
            Some(431)
        );
        let enough: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(head(&format!("GET / HTTP/1.1\r\n{enough}\r\n")).is_ok());
    }

    #[test]
    fn pipelined_heads_are_read_one_at_a_time() {
        let text = "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /c HTTP/1.1\r\n\r\n";
        let mut r = text.as_bytes();
        assert_eq!(read_head(&mut r).ok().unwrap().url, "/a");
        let h = read_head(&mut r).ok().unwrap();
        assert_eq!((h.url.as_str(), h.framing), ("/b", Framing::Length(2)));
        assert_eq!(&r[..2], b"{}");
        r = &r[2..];
        assert_eq!(read_head(&mut r).ok().unwrap().url, "/c");
    }
}
