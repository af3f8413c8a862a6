//! One accepted connection: served by hyper's HTTP/1.1 with the server's limits, or, beyond
//! the connection limit, answered 503 and closed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::client_deadlines::{DeadlineStream, RequestPhase};
use crate::dispatch::{self, Shared};
use crate::Reply;

/// hyper's smallest read buffer.
const MIN_BUFFER_BYTES: usize = 8192;

/// How long a refused connection is given to read its 503 before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Serves `stream` until the client closes it, a limit ends it, or the server shuts down.
/// `place` is the connection's place under the connection limit, given back at the end.
pub fn serve(stream: TcpStream, shared: Arc<Shared>, graceful: &GracefulShutdown, place: OwnedSemaphorePermit) {
    let _ = stream.set_nodelay(true);
    let limits = &shared.limits;
    let phase = Arc::new(RequestPhase::default());
    let stream = DeadlineStream::new(stream, Arc::clone(&phase), limits.header_read_timeout, limits.send_timeout);
    let io = TokioIo::new(stream);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper times the whole wait for a request head, idle time included.
        .header_read_timeout(limits.idle_timeout.max(limits.header_read_timeout))
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUFFER_BYTES))
        .keep_alive(true);
    let service = {
        let shared = Arc::clone(&shared);
        service_fn(move |request| {
            phase.head_arrived();
            let (shared, phase) = (Arc::clone(&shared), Arc::clone(&phase));
            async move {
                let response = dispatch::answer(&shared, request).await;
                phase.answered();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let connection = graceful.watch(builder.serve_connection(io, service));
    tokio::spawn(async move {
        let _ = connection.await;
        drop(place);
    });
}

/// Answers 503 without reading a request and closes the connection, giving the client a
/// moment to read the answer. `place` bounds how many refused connections linger at once.
pub fn refuse(mut stream: TcpStream, place: OwnedSemaphorePermit) {
    let reply = Reply::api_error(503, "server_busy", "The server has too many connections open; retry shortly.");
    let mut bytes = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        reply.body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&reply.body);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await?;
            // Reading what the client sent before closing keeps the kernel from resetting the
            // connection, which could discard the answer before the client reads it.
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
        drop(place);
    });
}
