//! A fault-injecting TCP proxy on 127.0.0.1 between a till and the server.
//!
//! It reads each HTTP/1.1 request off the till's connection and, by a
//! seeded draw, either forwards it and relays the answer, forwards it and
//! then closes the till's connection *after* the server answered (the server
//! committed; the till never hears so), or sends it twice (a copy first on a
//! connection of its own, whose answer is thrown away, then the request
//! itself). Bytes are relayed as they are: the faults happen on real
//! sockets, not inside the client.
//!
//! The server behind it is an [`Upstream`]: when the server restarts on a
//! new port, every proxy follows it, so tills keep their configuration.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The address (`host:port`) of the server the proxies forward to.
#[derive(Debug, Clone)]
pub struct Upstream(Arc<Mutex<String>>);

impl Upstream {
    /// Forwards to the server at `url` (`http://host:port`).
    pub fn new(url: &str) -> Upstream {
        Upstream(Arc::new(Mutex::new(host_port(url))))
    }

    /// Points every proxy sharing this upstream at the server at `url`.
    pub fn set(&self, url: &str) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = host_port(url);
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let addr = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Pass,
    DropResponse,
    Duplicate,
}

/// How many requests met each fault.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Relayed untouched.
    pub passed: AtomicUsize,
    /// Answered by the server, the answer never delivered.
    pub dropped: AtomicUsize,
    /// Of those, pushes: committed by the server, unknown to the till.
    pub dropped_pushes: AtomicUsize,
    /// Sent to the server twice.
    pub duplicated: AtomicUsize,
}

#[derive(Debug)]
struct Shared {
    upstream: Upstream,
    /// (drop rate, duplicate rate), each a probability per request.
    rates: Mutex<(f64, f64)>,
    rng: Mutex<StdRng>,
    counts: FaultCounts,
    stopping: AtomicBool,
}

impl Shared {
    fn draw(&self) -> Fault {
        let (drop, duplicate) = *self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        let roll: f64 = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        let (fault, counter) = if roll < drop {
            (Fault::DropResponse, &self.counts.dropped)
        } else if roll < drop + duplicate {
            (Fault::Duplicate, &self.counts.duplicated)
        } else {
            (Fault::Pass, &self.counts.passed)
        };
        counter.fetch_add(1, Ordering::Relaxed);
        fault
    }
}

/// A running proxy; dropping it stops accepting (open connections end when
/// their till closes them).
#[derive(Debug)]
pub struct Proxy {
    /// `http://127.0.0.1:port`, the address tills are given.
    pub url: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to `upstream` whose faults are drawn from `seed`; it starts
    /// with no faults.
    pub fn start(upstream: Upstream, seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let shared = Arc::new(Shared {
            upstream,
            rates: Mutex::new((0.0, 0.0)),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counts: FaultCounts::default(),
            stopping: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if accepting.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let shared = Arc::clone(&accepting);
                std::thread::spawn(move || {
                    // A broken connection is what the till sees as a network
                    // error; there is nothing to report here.
                    let _ = relay(conn, &shared);
                });
            }
        });
        Proxy {
            url,
            shared,
            accept: Some(accept),
        }
    }

    /// From now on, each request's answer is dropped with probability
    /// `drop` and the request sent twice with probability `duplicate`.
    pub fn set_faults(&self, drop: f64, duplicate: f64) {
        *self
            .shared
            .rates
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (drop, duplicate);
    }

    /// The faults injected so far.
    pub fn counts(&self) -> &FaultCounts {
        &self.shared.counts
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One till connection: request by request, as HTTP/1.1 without pipelining
/// (which is how the till's client speaks) allows.
fn relay(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let mut upstream: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let result = (|| loop {
        let Some(request) = read_message(&mut from_client, Kind::Request)? else {
            return Ok(());
        };
        let fault = shared.draw();
        if fault == Fault::Duplicate {
            let mut copy = shared.upstream.connect()?;
            copy.write_all(&request)?;
            read_message(&mut BufReader::new(copy), Kind::Response)?;
        }
        // A server restart closes the upstream connection while the till's
        // stays open: open a new one rather than fail the next request.
        if upstream.as_ref().is_some_and(|(up, _)| !is_open(up)) {
            upstream = None;
        }
        let (up, from_up) = match &mut upstream {
            Some(pair) => pair,
            None => {
                let up = shared.upstream.connect()?;
                let reader = BufReader::new(up.try_clone()?);
                upstream.insert((up, reader))
            }
        };
        up.write_all(&request)?;
        let Some(response) = read_message(from_up, Kind::Response)? else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        };
        if fault == Fault::DropResponse {
            if request.starts_with(b"POST ") {
                shared.counts.dropped_pushes.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        to_client.write_all(&response)?;
    })();
    // Closing both ends is the fault the till sees for a dropped answer,
    // and the clean end of a connection otherwise.
    let _ = to_client.shutdown(Shutdown::Both);
    if let Some((up, _)) = upstream {
        let _ = up.shutdown(Shutdown::Both);
    }
    result
}

/// Whether the server still holds its end of `stream` open.
fn is_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let open = match stream.peek(&mut [0u8; 1]) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    open && stream.set_nonblocking(false).is_ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request,
    Response,
}

/// Reads one whole HTTP/1.1 message (head and body, framed by
/// `Content-Length` or chunked encoding) as raw bytes; `None` at a clean
/// end of stream before it.
fn read_message(reader: &mut impl BufRead, kind: Kind) -> io::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    loop {
        let start = message.len();
        if reader.read_until(b'\n', &mut message)? == 0 {
            return match message.is_empty() {
                true => Ok(None),
                false => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
        if message[start..] == *b"\r\n" {
            break;
        }
    }
    let framing = framing(&message, kind)?;
    match framing {
        Framing::Length(n) => {
            let start = message.len();
            message.resize(start + n, 0);
            reader.read_exact(&mut message[start..])?;
        }
        Framing::Chunked => loop {
            let start = message.len();
            reader.read_until(b'\n', &mut message)?;
            let size = match httparse::parse_chunk_size(&message[start..]) {
                Ok(httparse::Status::Complete((_, size))) => size,
                _ => return Err(invalid("bad chunk size")),
            };
            if size == 0 {
                // Trailers, if any, then the closing empty line.
                loop {
                    let start = message.len();
                    if reader.read_until(b'\n', &mut message)? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    if message[start..] == *b"\r\n" {
                        break;
                    }
                }
                break;
            }
            let start = message.len();
            let size = usize::try_from(size).map_err(|_| invalid("chunk too large"))?;
            message.resize(start + size + 2, 0);
            reader.read_exact(&mut message[start..])?;
        },
        Framing::UntilClose => {
            reader.read_to_end(&mut message)?;
        }
    }
    Ok(Some(message))
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// How the body of the message whose head is `head` is delimited.
fn framing(head: &[u8], kind: Kind) -> io::Result<Framing> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let (parsed, status) = match kind {
        Kind::Request => {
            let mut req = httparse::Request::new(&mut headers);
            (req.parse(head), None)
        }
        Kind::Response => {
            let mut resp = httparse::Response::new(&mut headers);
            let parsed = resp.parse(head);
            let code = resp.code;
            (parsed, code)
        }
    };
    if !matches!(parsed, Ok(httparse::Status::Complete(_))) {
        return Err(invalid("unparsable HTTP head"));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if header("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        return Ok(Framing::Chunked);
    }
    if let Some(length) = header("content-length") {
        return length
            .parse()
            .map(Framing::Length)
            .map_err(|_| invalid("bad content-length"));
    }
    Ok(match (kind, status) {
        (Kind::Request, _) | (_, Some(100..=199 | 204 | 304)) => Framing::Length(0),
        (Kind::Response, _) => Framing::UntilClose,
    })
}
