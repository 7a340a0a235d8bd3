//! The HTTP server loop: hyper's HTTP/1.1 connection driver under the node's resource
//! limits, so hostile or broken clients cannot exhaust the node.
//!
//! - **Connection cap.** At most [`ConnLimits::max_connections`] connections are served
//!   at once. The loop accepts only while a slot is free; beyond the cap, new connections
//!   wait in the kernel's listen backlog (bounded: the kernel refuses or drops what does
//!   not fit) and are accepted as soon as a slot frees. Nothing is held per waiting client.
//! - **Header timeout.** A request head must be complete within
//!   [`ConnLimits::header_timeout`], counted from the connection for its first request
//!   and from the first byte of each later one (a slowloris client is dropped).
//! - **Idle timeout.** A connection with no request in flight is closed after
//!   [`ConnLimits::idle_timeout`] without traffic (kept-alive connections do not hold
//!   slots for ever). A request in flight is not idle, however long it lasts: event
//!   streams stay open while their client reads them. It is dropped only when it is
//!   stalled on its client for the same time: the client stopped reading the answer, or
//!   stopped sending a body the handler is waiting for.
//! - **Shutdown.** On the stop signal the loop stops accepting and every connection is
//!   asked to finish its request in flight and close; whatever still runs after
//!   [`SHUTDOWN_GRACE`] (an event stream, say) is dropped.
//!
//! Accepted sockets get `TCP_NODELAY`: small JSON answers and event-stream frames must
//! leave at once, not wait for Nagle's algorithm to meet the client's delayed ACK.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long connections get to finish after the stop signal before they are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long the loop pauses after an accept error that is not about one connection
/// (out of file descriptors, say), so it does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The limits one server runs under; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections served at once (at least 1).
    pub max_connections: usize,
    /// Longest quiet time with no request in flight, and longest stall of a request in
    /// flight on its client.
    pub idle_timeout: Duration,
    /// Longest time to receive a complete request head.
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` under `limits` until `stop` completes, then shuts down as
/// described in the module docs and returns once every connection is closed.
///
/// Connections are asked to close when this future is dropped as well (an aborted server
/// task): they then finish within [`SHUTDOWN_GRACE`] on their own.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stop: impl Future<Output = ()>,
) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let closing = CancellationToken::new();
    let _close_on_drop = closing.clone().drop_guard();
    let mut stop = pin!(stop);
    let mut saturated = false;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !saturated {
                    tracing::warn!(
                        max_connections = max,
                        "HTTP connection limit reached; new connections wait in the listen backlog until one closes"
                    );
                }
                saturated = true;
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut stop => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => {
                tracing::debug!("an incoming connection failed before it was accepted: {e}");
                continue;
            }
            Err(e) => {
                tracing::error!("accepting HTTP connections failed: {e}; retrying shortly");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    () = &mut stop => break,
                }
            }
        };
        if saturated && slots.available_permits() > 0 {
            saturated = false;
        }
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
        tokio::spawn(connection(
            tcp,
            peer,
            app.clone(),
            limits,
            closing.clone(),
            slot,
        ));
    }
    // The port stops accepting (new clients are refused) while the open connections wind
    // down; each holds its slot until it is gone.
    drop(listener);
    closing.cancel();
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Errors of one incoming connection (the client gave up before the accept), not of the
/// listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until it ends, breaks a limit, or the server stops.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnLimits,
    closing: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = TokioIo::new(Tracked {
        inner: tcp,
        activity: activity.clone(),
    });
    let router = TowerToHyperService::new(app);
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = InFlight::start(requests.clone());
        let req = req.map(|inner| WatchedBody {
            inner,
            activity: requests.clone(),
        });
        let answer = hyper::service::Service::call(&router, req);
        async move {
            let response: Response<Body> = answer.await?;
            Ok::<_, Infallible>(response.map(|inner| GuardedBody {
                inner,
                _in_flight: in_flight,
            }))
        }
    });
    let mut builder = http1::Builder::new();
    // The header deadline is enforced below, with the idle one; hyper's own starts
    // between kept-alive requests too, which would make it a second idle timeout.
    builder.keep_alive(true).header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut shutdown_deadline: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let next_check = match activity.verdict(now, &limits) {
            Verdict::Keep(until) => until,
            Verdict::Close(reason) => {
                tracing::debug!(%peer, "closing HTTP connection: {reason}");
                return;
            }
        };
        let wake = shutdown_deadline.map_or(next_check, |d| d.min(next_check));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "HTTP connection ended: {e}");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                if shutdown_deadline.is_some_and(|d| Instant::now() >= d) {
                    tracing::debug!(%peer, "closing HTTP connection: the node is stopping");
                    return;
                }
            }
            () = activity.changed.notified() => {}
            () = closing.cancelled(), if shutdown_deadline.is_none() => {
                conn.as_mut().graceful_shutdown();
                shutdown_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
            }
        }
    }
}

/// What a connection's I/O and requests have been doing, for its limits.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
    /// Wakes the connection's watcher when its next deadline may have moved earlier: the
    /// last request in flight finished, or a new request head began.
    changed: Notify,
}

#[derive(Debug)]
struct ActivityState {
    /// When bytes last moved either way.
    last_io: Instant,
    /// Requests handed to the router whose answer is not finished.
    in_flight: usize,
    /// When the pending request head began: the connection's start, or the first byte
    /// read while no request was in flight.
    head_since: Option<Instant>,
    /// Since when the socket has refused the answer's bytes (the client does not read).
    write_blocked_since: Option<Instant>,
    /// Since when a handler has been waiting for request body bytes that do not come.
    body_waiting_since: Option<Instant>,
}

/// What a connection's limits say now.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Within its limits; look again at this time.
    Keep(Instant),
    /// Over a limit, for this reason.
    Close(&'static str),
}

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                last_io: now,
                in_flight: 0,
                head_since: Some(now),
                write_blocked_since: None,
                body_waiting_since: None,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self, now: Instant) {
        let mut s = self.state();
        s.last_io = now;
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(now);
            self.changed.notify_one();
        }
    }

    fn wrote(&self, now: Instant) {
        let mut s = self.state();
        s.last_io = now;
        s.write_blocked_since = None;
    }

    fn write_blocked(&self, now: Instant) {
        self.state().write_blocked_since.get_or_insert(now);
    }

    fn body_waiting(&self, waiting: bool, now: Instant) {
        let mut s = self.state();
        if waiting {
            s.body_waiting_since.get_or_insert(now);
        } else {
            s.body_waiting_since = None;
        }
    }

    fn verdict(&self, now: Instant, limits: &ConnLimits) -> Verdict {
        let s = self.state();
        if s.in_flight > 0 {
            let stalled = [s.write_blocked_since, s.body_waiting_since]
                .into_iter()
                .flatten()
                .min();
            return match stalled {
                Some(since) if now >= since + limits.idle_timeout => {
                    Verdict::Close("a request stalled on a client that stopped reading or sending")
                }
                Some(since) => Verdict::Keep(since + limits.idle_timeout),
                None => Verdict::Keep(now + limits.idle_timeout),
            };
        }
        if let Some(since) = s.head_since {
            if now >= since + limits.header_timeout {
                return Verdict::Close(
                    "the request head was not complete within the header timeout",
                );
            }
            return Verdict::Keep(since + limits.header_timeout);
        }
        if now >= s.last_io + limits.idle_timeout {
            return Verdict::Close("idle past the idle timeout");
        }
        Verdict::Keep(s.last_io + limits.idle_timeout)
    }
}

/// Counts a request as in flight from the router call until its answer is finished or
/// abandoned.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> InFlight {
        {
            let mut s = activity.state();
            s.in_flight += 1;
            s.head_since = None;
        }
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.body_waiting_since = None;
            s.last_io = Instant::now();
            self.0.changed.notify_one();
        }
    }
}

/// The socket, noting when bytes move and when the client stops taking them.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read(Instant::now());
        }
        polled
    }
}

impl Tracked {
    fn note_write(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.wrote(Instant::now()),
            Poll::Pending => self.activity.write_blocked(Instant::now()),
            Poll::Ready(_) => {}
        }
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that notes when its handler waits for bytes the client does not send.
struct WatchedBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.activity
            .body_waiting(polled.is_pending(), Instant::now());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        // A handler that dropped the body no longer waits for it.
        self.activity.body_waiting(false, Instant::now());
    }
}

/// An answer's body that keeps its request counted as in flight until it is done.
struct GuardedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnLimits = ConnLimits {
        max_connections: 4,
        idle_timeout: Duration::from_millis(1_000),
        header_timeout: Duration::from_millis(100),
    };

    #[test]
    fn a_new_connection_must_send_its_head_within_the_header_timeout() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        assert_eq!(
            a.verdict(t0, &LIMITS),
            Verdict::Keep(t0 + LIMITS.header_timeout)
        );
        a.read(t0 + Duration::from_millis(50));
        assert!(matches!(
            a.verdict(t0 + Duration::from_millis(100), &LIMITS),
            Verdict::Close(_)
        ));
    }

    #[test]
    fn between_requests_the_idle_timeout_applies_until_a_byte_arrives() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        drop(InFlight::start(a.clone()));
        let done = a.state().last_io;
        // Quiet for longer than the header timeout: still only idle, not a slow head.
        assert_eq!(
            a.verdict(done + Duration::from_millis(500), &LIMITS),
            Verdict::Keep(done + LIMITS.idle_timeout)
        );
        assert!(matches!(
            a.verdict(done + LIMITS.idle_timeout, &LIMITS),
            Verdict::Close(_)
        ));
        // The first byte of the next request starts its header clock.
        let t1 = done + Duration::from_millis(200);
        a.read(t1);
        assert_eq!(
            a.verdict(t1, &LIMITS),
            Verdict::Keep(t1 + LIMITS.header_timeout)
        );
        assert!(matches!(
            a.verdict(t1 + LIMITS.header_timeout, &LIMITS),
            Verdict::Close(_)
        ));
    }

    #[test]
    fn a_request_in_flight_is_never_idle_but_may_stall() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        let request = InFlight::start(a.clone());
        let late = t0 + 100 * LIMITS.idle_timeout;
        assert_eq!(
            a.verdict(late, &LIMITS),
            Verdict::Keep(late + LIMITS.idle_timeout)
        );
        a.write_blocked(late);
        assert_eq!(
            a.verdict(late, &LIMITS),
            Verdict::Keep(late + LIMITS.idle_timeout)
        );
        a.wrote(late + Duration::from_millis(10));
        assert!(matches!(
            a.verdict(late + LIMITS.idle_timeout, &LIMITS),
            Verdict::Keep(_)
        ));
        a.body_waiting(true, late);
        assert!(matches!(
            a.verdict(late + LIMITS.idle_timeout, &LIMITS),
            Verdict::Close(_)
        ));
        drop(request);
        assert_eq!(a.state().body_waiting_since, None);
    }
}
