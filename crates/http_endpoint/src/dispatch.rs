//! One request through the server's checks to its handler: the API key, the declared body
//! size, a place in the queue, the body read within its limits, then the handler on a thread
//! of the blocking pool.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::Response;
use tokio::sync::Semaphore;

use crate::{api_key, Limits, Reply, Request};

/// The handler every request is answered by.
pub type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// What all of a server's connections share.
pub struct Shared {
    pub limits: Limits,
    pub handler: Arc<Handler>,
    /// Places for handler calls running or waiting ([`Limits::max_queue`]).
    pub queue: Arc<Semaphore>,
    /// Threads for handler calls ([`Limits::handler_threads`]).
    pub threads: Arc<Semaphore>,
}

impl Shared {
    pub fn new(limits: Limits, handler: Arc<Handler>) -> Shared {
        let queue = Arc::new(Semaphore::new(limits.max_queue.max(1)));
        let threads = Arc::new(Semaphore::new(limits.handler_threads.max(1)));
        Shared {
            limits,
            handler,
            queue,
            threads,
        }
    }
}

/// The answer to one request.
pub async fn answer(shared: &Shared, request: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    run(shared, request).await.unwrap_or_else(Reply::into_response)
}

async fn run(shared: &Shared, request: hyper::Request<Incoming>) -> Result<Response<Full<Bytes>>, Reply> {
    let limits = &shared.limits;
    let (parts, body) = request.into_parts();
    if let Some(key) = &limits.api_key {
        if !api_key::admits(&parts, key) {
            return Err(Reply::api_error(401, "invalid_api_key", "Incorrect or missing API key."));
        }
    }
    if body.size_hint().lower() > limits.max_body_bytes as u64 {
        return Err(too_large(limits.max_body_bytes));
    }
    let Ok(place) = Arc::clone(&shared.queue).try_acquire_owned() else {
        return Err(
            Reply::api_error(503, "server_busy", "The server is busy with other requests; retry shortly.")
                .with_header("Retry-After", "1"),
        );
    };
    let body = read_body(body, limits).await?;
    let request = Request::from_parts(&parts, body);
    let thread = Arc::clone(&shared.threads)
        .acquire_owned()
        .await
        .map_err(|_| Reply::api_error(503, "server_busy", "The server is stopping."))?;
    let handler = Arc::clone(&shared.handler);
    let call = tokio::task::spawn_blocking(move || {
        // The places are given back when the handler returns, even if the client has gone.
        let _held = (place, thread);
        handler(&request)
    });
    match call.await {
        Ok(reply) => Ok(reply.into_response()),
        Err(_) => Err(Reply::api_error(500, "server_error", "The request could not be served.")),
    }
}

/// The whole body, as long as it stays within the size limit and arrives in time.
async fn read_body(body: Incoming, limits: &Limits) -> Result<Vec<u8>, Reply> {
    let collect = Limited::new(body, limits.max_body_bytes).collect();
    match tokio::time::timeout(limits.body_read_timeout, collect).await {
        Err(_) => Err(Reply::api_error(
            408,
            "request_timeout",
            "The request body did not arrive in time.",
        )),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large(limits.max_body_bytes)),
        Ok(Err(e)) => Err(Reply::api_error(
            400,
            "invalid_body",
            &format!("The request body could not be read: {e}"),
        )),
        Ok(Ok(collected)) => Ok(Vec::from(collected.to_bytes())),
    }
}

fn too_large(max: usize) -> Reply {
    Reply::api_error(
        413,
        "request_too_large",
        &format!("The request body is larger than this server accepts ({max} bytes)."),
    )
}
