//! A running server: its own tokio runtime on a thread of its own (so it starts from any plain
//! thread), the accept loop with the connection limit, and the graceful stop on drop or on a
//! signal.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::runtime::{Handle, Runtime};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Semaphore};

use crate::connection;
use crate::dispatch::{Handler, Shared};
use crate::{Limits, Reply, Request};

/// Threads that run the connections (handlers run on the blocking pool, not on these).
const IO_THREADS: usize = 2;

/// After an accept error (such as running out of file descriptors), the pause before the next
/// accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// How long handler calls still running after the shutdown grace may keep the runtime.
const RUNTIME_STOP: Duration = Duration::from_millis(200);

/// A running server; dropping it stops it gracefully (see [`Limits::shutdown_grace`]).
pub struct Server {
    addr: SocketAddr,
    stop: Arc<watch::Sender<bool>>,
    runtime: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `bind` (such as `127.0.0.1:0` for any free port) and answers every request
    /// with `handler`, within the default [`Limits`].
    pub fn start<H>(bind: &str, handler: H) -> io::Result<Server>
    where
        H: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        Server::start_with(bind, Limits::default(), handler)
    }

    /// Listens on `bind` and answers every request with `handler`, within `limits`. The handler
    /// may block (it runs on a thread of the server's blocking pool).
    pub fn start_with<H>(bind: &str, limits: Limits, handler: H) -> io::Result<Server>
    where
        H: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let listener = StdListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(IO_THREADS)
            .max_blocking_threads(limits.handler_threads.max(1))
            .thread_name("http-endpoint")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = watch::channel(false);
        let handler: Arc<Handler> = Arc::new(handler);
        let shared = Arc::new(Shared::new(limits, handler));
        let thread = std::thread::Builder::new()
            .name("http-endpoint-accept".into())
            .spawn(move || run(runtime, listener, shared, stopped))?;
        Ok(Server {
            addr,
            stop: Arc::new(stop),
            runtime: handle,
            thread: Some(thread),
        })
    }

    /// `http://HOST:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on SIGTERM and SIGINT stop the server gracefully: it stops accepting, lets the
    /// requests under way finish (within [`Limits::shutdown_grace`]), and [`Server::wait`]
    /// returns. Only for a process of its own: the signals are the server's from then on.
    pub fn stop_on_signals(&self) -> io::Result<()> {
        let _runtime = self.runtime.enter();
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let stop = Arc::clone(&self.stop);
        self.runtime.spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            stop.send_replace(true);
        });
        Ok(())
    }

    /// Blocks until the server has stopped: after a signal (see [`Server::stop_on_signals`]),
    /// otherwise never.
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server's thread: accepts until told to stop, then lets the connections finish.
fn run(runtime: Runtime, listener: StdListener, shared: Arc<Shared>, stopped: watch::Receiver<bool>) {
    let grace = shared.limits.shutdown_grace;
    runtime.block_on(async move {
        let graceful = GracefulShutdown::new();
        if let Ok(listener) = TcpListener::from_std(listener) {
            accept_until_stopped(listener, shared, &graceful, stopped).await;
        }
        let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
    });
    runtime.shutdown_timeout(RUNTIME_STOP);
}

async fn accept_until_stopped(
    listener: TcpListener,
    shared: Arc<Shared>,
    graceful: &GracefulShutdown,
    mut stopped: watch::Receiver<bool>,
) {
    let max_connections = shared.limits.max_connections.max(1);
    let connections = Arc::new(Semaphore::new(max_connections));
    let refusals = Arc::new(Semaphore::new(max_connections));
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        if let Ok(place) = Arc::clone(&connections).try_acquire_owned() {
            connection::serve(stream, Arc::clone(&shared), graceful, place);
        } else if let Ok(place) = Arc::clone(&refusals).try_acquire_owned() {
            connection::refuse(stream, place);
        }
    }
}
