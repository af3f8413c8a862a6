//! Deadlines for slow clients on a connection's socket: a request head must arrive within the
//! header timeout of its first byte, and an answer must be taken by the client at some pace
//! (no write may wait longer than the send timeout). hyper's own timer, which starts as soon as
//! the connection waits for a request, serves as the idle keep-alive limit.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Where a connection is between requests, shared by its stream and its service: even while
/// it waits for a request head, odd while a request is being answered. Each change is a new
/// number, so a deadline set for one request head never applies to the next.
#[derive(Default)]
pub struct RequestPhase(AtomicU64);

impl RequestPhase {
    /// A request head has arrived.
    pub fn head_arrived(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// The request is answered; the connection waits for the next head.
    pub fn answered(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A TCP stream whose reads fail once a request head takes too long, and whose writes fail
/// once the client has taken nothing for too long.
pub struct DeadlineStream {
    stream: TcpStream,
    phase: Arc<RequestPhase>,
    header_timeout: Duration,
    send_timeout: Duration,
    /// The phase the head deadline belongs to, and the deadline (none until a byte came).
    head_phase: u64,
    head_deadline: Option<Pin<Box<Sleep>>>,
    /// Set while a write waits for the client to take bytes.
    send_deadline: Option<Pin<Box<Sleep>>>,
}

impl DeadlineStream {
    /// The first request head must be complete within `header_timeout` of now.
    pub fn new(stream: TcpStream, phase: Arc<RequestPhase>, header_timeout: Duration, send_timeout: Duration) -> Self {
        let head_phase = phase.current();
        let head_deadline = Some(Box::pin(tokio::time::sleep(header_timeout)));
        DeadlineStream {
            stream,
            phase,
            header_timeout,
            send_timeout,
            head_phase,
            head_deadline,
            send_deadline: None,
        }
    }

    /// Turns a pending write into an error once it has waited longer than the send timeout.
    fn check_send<T>(&mut self, cx: &mut Context<'_>, write: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if write.is_ready() {
            self.send_deadline = None;
            return write;
        }
        let timeout = self.send_timeout;
        let deadline = self
            .send_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped taking the answer",
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let phase = this.phase.current();
        if phase != this.head_phase {
            this.head_phase = phase;
            this.head_deadline = None;
        }
        let waiting_for_head = phase.is_multiple_of(2);
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if !waiting_for_head {
            return read;
        }
        match &read {
            Poll::Ready(Ok(())) if buf.filled().len() > before && this.head_deadline.is_none() => {
                this.head_deadline = Some(Box::pin(tokio::time::sleep(this.header_timeout)));
            }
            Poll::Pending => {
                if let Some(deadline) = this.head_deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the request head came too slowly",
                        )));
                    }
                }
            }
            _ => {}
        }
        read
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let write = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.check_send(cx, write)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let write = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.check_send(cx, write)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
