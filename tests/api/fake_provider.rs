//! A scripted provider on 127.0.0.1: it answers every method and path from one script, and
//! records what it was sent (an OAuth2 token endpoint at `/token`, or any other API).

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer. `{refresh_token}` in the body is replaced by the one received.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub delay: Duration,
    /// Sent instead of `body`, with this content type.
    pub raw: Option<(&'static str, String)>,
    /// An answer that never ends (`body` is not sent).
    pub endless: bool,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            delay: Duration::ZERO,
            raw: None,
            endless: false,
        }
    }

    /// `body` as is (`{refresh_token}` replaced), with `content_type`.
    pub fn raw(status: u16, content_type: &'static str, body: impl Into<String>) -> Reply {
        Reply {
            raw: Some((content_type, body.into())),
            ..Reply::json(status, Value::Null)
        }
    }

    /// 200 with a JSON body that goes on for ever, 64 KiB at a time.
    pub fn endless() -> Reply {
        Reply {
            endless: true,
            ..Reply::json(200, Value::Null)
        }
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// What the provider received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub authorization: Option<String>,
    /// The body as a form (empty when it is not one).
    pub form: HashMap<String, String>,
    /// The body as JSON, when it is JSON.
    pub json: Option<Value>,
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    seen: Mutex<Vec<Seen>>,
    /// Bytes of endless answers sent so far.
    endless_sent: std::sync::atomic::AtomicUsize,
}

pub struct FakeProvider {
    pub url: String,
    state: Arc<State>,
}

async fn token(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect::<HashMap<_, _>>();
    state.seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        authorization: headers.get("authorization").cloned(),
        headers,
        form: form.clone(),
        json: serde_json::from_slice(&body).ok(),
    });
    let scripted = state.script.lock().unwrap().pop_front();
    let reply = scripted
        .or_else(|| state.default.lock().unwrap().clone())
        .expect("a reply is scripted");
    tokio::time::sleep(reply.delay).await;
    let refresh = form.get("refresh_token").cloned().unwrap_or_default();
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    response.insert_header(("Set-Cookie", "session=provider-session-secret"));
    if reply.endless {
        let state = state.into_inner();
        let opening = futures::stream::once(async {
            Ok::<_, std::io::Error>(web::Bytes::from_static(br#"{"pad":""#))
        });
        let chunk = web::Bytes::from(vec![b'x'; 64 * 1024]);
        let rest = futures::stream::repeat_with(move || {
            state
                .endless_sent
                .fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(chunk.clone())
        });
        use futures::StreamExt;
        return response
            .content_type("application/json")
            .streaming(opening.chain(rest));
    }
    let (content_type, body) = match reply.raw {
        Some((content_type, body)) => (content_type, body),
        None => ("application/json", reply.body.to_string()),
    };
    response
        .content_type(content_type)
        .body(body.replace("{refresh_token}", &refresh))
}

impl FakeProvider {
    pub async fn start(default: Reply) -> FakeProvider {
        let state = Arc::new(State::default());
        *state.default.lock().unwrap() = Some(default);
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(token))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        // Runs until the test's runtime ends.
        tokio::spawn(server.run());
        FakeProvider {
            url: format!("http://127.0.0.1:{port}/token"),
            state,
        }
    }

    /// Answers the next request with `reply` (before falling back to the default).
    pub fn then(&self, reply: Reply) {
        self.state.script.lock().unwrap().push_back(reply);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = Some(reply);
    }

    /// Bytes of endless answers sent so far (what the client read, give or take the socket's
    /// buffers).
    pub fn endless_sent(&self) -> usize {
        self.state
            .endless_sent
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}
