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
/// A chunk-size line, bytes.
const MAX_CHUNK_LINE: usize = 1024;

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
enum Framing {
    /// Neither `Content-Length` nor `Transfer-Encoding`: no body (RFC 9112 §6.3).
    Missing,
    Length(u64),
    Chunked,
}

struct Head {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    http10: bool,
    framing: Framing,
    /// What the client asked for; the answer may still close (a body left unread).
    keep_alive: bool,
    expect_continue: bool,
}

enum HeadError {
    /// Closed by the client, idle too long, or a read error: nothing to answer.
    Closed,
    /// Answer this status and close.
    Refused(u16, &'static str),
}

enum ReadError {
    Closed,
    TooLong,
}

/// Reads one line (CRLF or LF, removed) into `line`, using up `budget` bytes.
fn read_line(
    r: &mut impl BufRead,
    budget: &mut usize,
    line: &mut Vec<u8>,
) -> Result<(), ReadError> {
    line.clear();
    let n = r
        .by_ref()
        .take(*budget as u64)
        .read_until(b'\n', line)
        .map_err(|_| ReadError::Closed)?;
    *budget -= n;
    if line.last() != Some(&b'\n') {
        return Err(if n > 0 && *budget == 0 {
            ReadError::TooLong
        } else {
            ReadError::Closed
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(())
}

/// RFC 9110 `tchar`: what a method or a header name is made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn read_head(r: &mut impl BufRead) -> Result<Head, HeadError> {
    let mut budget = MAX_HEAD_BYTES;
    let mut line = Vec::with_capacity(256);
    let mut next = |line: &mut Vec<u8>| match read_line(r, &mut budget, line) {
        Ok(()) => Ok(()),
        Err(ReadError::Closed) => Err(HeadError::Closed),
        Err(ReadError::TooLong) => Err(HeadError::Refused(431, "request head too large")),
    };
    let bad = |why| HeadError::Refused(400, why);
    // Empty lines before a request are ignored (RFC 9112 §2.2).
    while line.is_empty() {
        next(&mut line)?;
    }
    let request_line = std::str::from_utf8(&line).map_err(|_| bad("malformed request line"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(url), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if !is_token(method) || url.is_empty() {
        return Err(bad("malformed request line"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v if v.starts_with("HTTP/") => {
            return Err(HeadError::Refused(505, "only HTTP/1.1 and HTTP/1.0"))
        }
        _ => return Err(bad("malformed request line")),
    };
    let (method, url) = (method.to_owned(), url.to_owned());
    let mut headers = Vec::new();
    loop {
        next(&mut line)?;
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            return Err(bad("obsolete line folding"));
        }
        let text = String::from_utf8_lossy(&line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(bad("malformed header"));
        };
        if !is_token(name) {
            return Err(bad("malformed header"));
        }
        headers.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
    }
    let tokens = |name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    };
    let codings = tokens("transfer-encoding");
    let lengths = tokens("content-length");
    let connection = tokens("connection");
    let mut keep_alive = if http10 {
        connection.iter().any(|t| t == "keep-alive") && !connection.iter().any(|t| t == "close")
    } else {
        !connection.iter().any(|t| t == "close")
    };
    let framing = if !codings.is_empty() {
        // With both, Transfer-Encoding wins and the connection is not reused (RFC 9112 §6.1).
        if !lengths.is_empty() {
            keep_alive = false;
        }
        match codings.as_slice() {
            [only] if only == "chunked" => Framing::Chunked,
            [.., last] if last == "chunked" => {
                return Err(HeadError::Refused(501, "only the chunked transfer coding"))
            }
            _ => return Err(bad("the last transfer coding must be chunked")),
        }
    } else if let Some(first) = lengths.first() {
        let valid =
            |t: &String| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit());
        if !lengths.iter().all(|t| valid(t) && t == first) {
            return Err(bad("invalid Content-Length"));
        }
        Framing::Length(first.parse().map_err(|_| bad("invalid Content-Length"))?)
    } else {
        Framing::Missing
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
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        let mut budget = MAX_CHUNK_LINE;
        read_line(r, &mut budget, &mut line).map_err(|_| BodyError::Io)?;
        // `size[;extension…]`
        let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
        let size = std::str::from_utf8(&line[..end])
            .ok()
            .map(|s| s.trim_matches([' ', '\t']))
            .filter(|s| !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or(BodyError::Io)?;
        if size == 0 {
            break;
        }
        if body.len() as u64 + size > limit as u64 {
            return Err(BodyError::TooLarge);
        }
        let start = body.len();
        body.resize(start + size as usize, 0);
        r.read_exact(&mut body[start..])
            .map_err(|_| BodyError::Io)?;
        read_line(r, &mut 2, &mut line).map_err(|_| BodyError::Io)?;
        if !line.is_empty() {
            return Err(BodyError::Io);
        }
    }
    // Trailer fields, ignored.
    let mut budget = MAX_HEAD_BYTES;
    loop {
        read_line(r, &mut budget, &mut line).map_err(|_| BodyError::Io)?;
        if line.is_empty() {
            return Ok(body);
        }
    }
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
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
    let mut out = Vec::with_capacity(256 + body.len());
    write!(
        out,
        "HTTP/1.1 {status} {}\r\nDate: {date}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    )?;
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
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        let h = h.unwrap();
        assert!(h.framing == Framing::Chunked && !h.keep_alive);
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n").err(),
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
        assert_eq!(head("GET / HTTP/2.0\r\n\r\n").err(), Some(505));
        assert_eq!(head("GET /\r\n\r\n").err(), Some(400));
        assert_eq!(
            head("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            head("GET / HTTP/1.1\r\nA: x\r\n folded\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(head("GET / HTTP/1.1\r\nHost: x\r\n").err(), Some(0));
        assert_eq!(head("").err(), Some(0));
        let big = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(head(&big).err(), Some(431));
    }

    #[test]
    fn chunked_bodies() {
        let body = |text: &str, limit| read_chunked(&mut text.as_bytes(), limit);
        assert_eq!(
            body("5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: x\r\n\r\n", 100).unwrap(),
            b"hello!"
        );
        assert_eq!(body("0\r\n\r\n", 0).unwrap(), b"");
        assert_eq!(body("5\r\nhello\r\n0\r\n\r\n", 4), Err(BodyError::TooLarge));
        assert_eq!(body("5\r\nhelloX\r\n0\r\n\r\n", 100), Err(BodyError::Io));
        assert_eq!(body("zz\r\n", 100), Err(BodyError::Io));
        assert_eq!(body("5\r\nhel", 100), Err(BodyError::Io));
    }
}
