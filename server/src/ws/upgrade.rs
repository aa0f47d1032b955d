//! How `/ws` leaves HTTP. actix-http hands every request that asks to upgrade the connection
//! (`Upgrade: websocket`, `CONNECT`) to this service, together with the connection itself, instead
//! of answering it through its own dispatcher. The request still goes through the whole App
//! (routes, middleware, authentication, error bodies); only when the `/ws` handler accepted it
//! ([`accept`]: a 101 carrying the session) does the connection stop being HTTP: the handshake is
//! written and the socket is run by tokio-tungstenite with small buffers.
//!
//! Why not actix-ws: an upgraded connection there stays inside actix-http's dispatcher, which keeps
//! an 8 KiB read and an 8 KiB write buffer for the connection's whole life, most of what an idle
//! connection cost. Here the dispatcher gives both buffers up with the socket, and the HTTP
//! connection's task ends once the session runs in its own.

use std::rc::Rc;

use actix_codec::{Framed, FramedParts};
use actix_http::body::{self, BodySize, BoxBody, MessageBody};
use actix_http::h1::{Codec, Message};
use actix_http::{ConnectionType, Request, Response, ResponseBuilder};
use actix_service::{Service, ServiceFactory, fn_factory, fn_service};
use actix_web::HttpResponse;
use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::MAX_FRAME_BYTES;
use super::session::{self, SessionContext};
use crate::limits::ConnectionPermit;

/// Frames sent together are written to the socket once this many bytes are queued (and at the
/// end of the batch).
const WRITE_BUFFER_BYTES: usize = 4096;
/// The socket's read buffer, allocated for the connection's life. Client frames are small JSON;
/// a larger one is read in several steps (tungstenite grows the buffer to the frame's size).
const READ_BUFFER_BYTES: usize = 1024;

/// The session a `/ws` handler accepted, riding on its 101 response to this service, with its
/// place in the connection limits (held for the session's life).
struct Accepted(SessionContext, ConnectionPermit);

/// What the h1 codec writes: a response head, then body chunks.
type Outgoing = Message<(Response<()>, BodySize)>;

/// The handler's answer to a valid handshake: the 101 response, carrying the session to run once
/// it is written.
pub fn accept(
    mut handshake: ResponseBuilder,
    session: SessionContext,
    permit: ConnectionPermit,
) -> HttpResponse {
    let mut response = HttpResponse::from(handshake.finish().map_into_boxed_body());
    response.extensions_mut().insert(Accepted(session, permit));
    response
}

fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // A frame sent alone goes out at once (`send` flushes); frames sent together
        // (`Connection::send_ready`) are written in chunks of this size. The buffer keeps the
        // capacity it reached, so it stays small.
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .max_message_size(Some(MAX_FRAME_BYTES))
}

/// The upgrade service for `HttpServiceBuilder::upgrade`, serving through its own instance of
/// `app` (made once per worker, like the one serving ordinary requests).
pub fn service<S, B>(
    app: S,
) -> impl ServiceFactory<
    (Request, Framed<TcpStream, Codec>),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
>
where
    S: ServiceFactory<Request, Config = ()> + 'static,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    S::InitError: std::fmt::Debug,
    B: MessageBody + 'static,
{
    let app = Rc::new(app);
    fn_factory(move || {
        let app = app.clone();
        async move {
            let app = Rc::new(app.new_service(()).await.map_err(|err| {
                tracing::error!(error = ?err, "cannot start the WebSocket upgrade service");
            })?);
            Ok(fn_service(move |(request, framed)| {
                serve(app.clone(), request, framed)
            }))
        }
    })
}

async fn serve<S, B>(
    app: Rc<S>,
    request: Request,
    mut framed: Framed<TcpStream, Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request>,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    let mut response: Response<BoxBody> = match app.call(request).await {
        Ok(response) => response.into().map_into_boxed_body(),
        Err(response) => response.into(),
    };
    let accepted = response.extensions_mut().remove::<Accepted>();
    let Some(Accepted(session, permit)) = accepted else {
        return answer_and_close(framed, response).await;
    };
    framed
        .send(Outgoing::Item((response.drop_body(), BodySize::None)))
        .await?;
    let FramedParts { io, read_buf, .. } = framed.into_parts();
    // Whatever the client sent after its handshake was read along with it; the socket starts
    // from there. Both HTTP buffers are dropped here.
    let socket = WebSocketStream::from_partially_read(
        io,
        read_buf.to_vec(),
        Role::Server,
        Some(socket_config()),
    )
    .await;
    let session = session::run(session, socket);
    actix_web::rt::spawn(async move {
        session.await;
        drop(permit);
    });
    Ok(())
}

/// Writes an answer that does not switch protocols (a 401, a 400 for a malformed handshake, any
/// other path's response) and closes: actix-http has handed the connection over, and what the
/// client sends after an upgrade request is not necessarily HTTP.
async fn answer_and_close(
    mut framed: Framed<TcpStream, Codec>,
    mut response: Response<BoxBody>,
) -> Result<(), actix_web::Error> {
    response
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    let (head, body) = response.into_parts();
    let body = body::to_bytes(body)
        .await
        .map_err(|err| actix_web::error::ErrorInternalServerError(err.to_string()))?;
    let length = u64::try_from(body.len()).unwrap_or(u64::MAX);
    framed
        .feed(Outgoing::Item((head, BodySize::Sized(length))))
        .await?;
    if !body.is_empty() {
        framed.feed(Outgoing::Chunk(Some(body))).await?;
    }
    framed.send(Outgoing::Chunk(None)).await?;
    // Framed's close shuts the socket down without writing what it buffered: flushed above.
    SinkExt::<Outgoing>::close(&mut framed).await?;
    Ok(())
}
