//! The HTTP surface: routes for the three model APIs and the request log, and the
//! functions that serve them on a socket.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::exchange::{Answer, Exchange, Failure};
use crate::script::{Provider, Script};
use crate::state::{LoggedRequest, MockState};
use crate::wire::json_response;
use crate::{anthropic, gemini, openai};

/// Largest request body accepted; agent CLIs resend the whole history each turn, so
/// this is far above axum's 2 MB default.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The router serving every endpoint; test it with `tower::ServiceExt::oneshot`.
pub fn app(state: MockState) -> Router {
    Router::new()
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/messages/count_tokens", post(anthropic_count_tokens))
        .route("/v1/responses", post(openai_responses))
        .route("/responses", post(openai_responses))
        .route("/v1/models", get(openai_models))
        .route("/models", get(openai_models))
        .route("/v1beta/models/{model_action}", post(gemini_models))
        .route("/", get(root))
        .route("/_mock/requests", get(list_requests).delete(clear_requests))
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .with_state(state)
}

/// Serves `app(state)` on `listener` until the task is cancelled or the socket fails.
pub async fn serve(listener: TcpListener, state: MockState) -> std::io::Result<()> {
    axum::serve(listener, app(state)).await
}

/// A server started by [`start`]; dropping it stops the server.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    state: MockState,
    task: JoinHandle<std::io::Result<()>>,
}

impl MockServer {
    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, the base URL to give a CLI.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The state, for [`MockState::requests`].
    pub fn state(&self) -> &MockState {
        &self.state
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (use `127.0.0.1:0` in tests) and serves `script` on a background task.
pub async fn start(script: Script, addr: SocketAddr) -> std::io::Result<MockServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = MockState::new(script);
    #[allow(clippy::disallowed_methods)] // the model server is its own program, outside the engine's ports
    let task = tokio::spawn(serve(listener, state.clone()));
    tracing::info!(%addr, "baton mock-llm listening");
    Ok(MockServer { addr, state, task })
}

/// What one API needs to turn a request into a reply.
struct Api<'a> {
    provider: Provider,
    model: Option<String>,
    exchange: fn(&Value) -> Exchange,
    answer: &'a dyn Fn(&Answer, &str, &Value) -> Response,
    failure: fn(&Failure) -> Response,
}

/// Parses, chooses, renders and logs one model request.
fn respond(state: &MockState, method: &Method, uri: &Uri, raw: &Bytes, api: Api<'_>) -> Response {
    let (body, choice) = match serde_json::from_slice::<Value>(raw) {
        Ok(body) => {
            let choice = state.choose(api.provider, &(api.exchange)(&body));
            (body, Some(choice))
        }
        Err(_) => (Value::String(String::from_utf8_lossy(raw).into_owned()), None),
    };
    let model = api.model.or_else(|| body["model"].as_str().map(str::to_string)).unwrap_or_default();
    let response = match choice.as_ref().map(|choice| &choice.outcome) {
        Some(Ok(answer)) => (api.answer)(answer, &model, &body),
        Some(Err(failure)) => (api.failure)(failure),
        None => (api.failure)(&Failure::mock("the request body is not JSON".to_string())),
    };
    let (conversation, turn) = choice.map(|choice| (choice.conversation, choice.turn)).unwrap_or_default();
    let status = response.status().as_u16();
    tracing::info!(provider = api.provider.as_str(), path = %uri, status, ?conversation, ?turn, "mock-llm request");
    state.record(LoggedRequest {
        provider: Some(api.provider),
        method: method.to_string(),
        path: uri.to_string(),
        model: (!model.is_empty()).then_some(model),
        conversation,
        turn,
        status,
        body,
    });
    response
}

async fn anthropic_messages(State(state): State<MockState>, method: Method, uri: Uri, raw: Bytes) -> Response {
    let answer =
        |answer: &Answer, model: &str, body: &Value| anthropic::answer_response(answer, model, is_streaming(body));
    let api = Api {
        provider: Provider::Anthropic,
        model: None,
        exchange: anthropic::exchange,
        answer: &answer,
        failure: anthropic::failure,
    };
    respond(&state, &method, &uri, &raw, api)
}

async fn anthropic_count_tokens(State(state): State<MockState>, method: Method, uri: Uri, raw: Bytes) -> Response {
    let body = serde_json::from_slice::<Value>(&raw).unwrap_or(Value::Null);
    let response = anthropic::count_tokens(&body);
    log_plain(&state, Some(Provider::Anthropic), &method, &uri, body, &response);
    response
}

async fn openai_responses(State(state): State<MockState>, method: Method, uri: Uri, raw: Bytes) -> Response {
    let answer =
        |answer: &Answer, model: &str, body: &Value| openai::answer_response(answer, model, is_streaming(body));
    let api = Api {
        provider: Provider::Openai,
        model: None,
        exchange: openai::exchange,
        answer: &answer,
        failure: openai::failure,
    };
    respond(&state, &method, &uri, &raw, api)
}

async fn openai_models(State(state): State<MockState>, method: Method, uri: Uri) -> Response {
    let response = openai::models();
    log_plain(&state, Some(Provider::Openai), &method, &uri, Value::Null, &response);
    response
}

async fn gemini_models(
    State(state): State<MockState>,
    Path(model_action): Path<String>,
    method: Method,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let (model, action) = model_action.split_once(':').unwrap_or((model_action.as_str(), ""));
    let framing = match action {
        "generateContent" => gemini::Framing::Single,
        "streamGenerateContent" if query_has(&uri, "alt", "sse") => gemini::Framing::Sse,
        "streamGenerateContent" => gemini::Framing::JsonArray,
        "countTokens" => {
            let body = serde_json::from_slice::<Value>(&raw).unwrap_or(Value::Null);
            let response = gemini::count_tokens(&body);
            log_plain(&state, Some(Provider::Gemini), &method, &uri, body, &response);
            return response;
        }
        _ => return unknown_route(State(state), method, uri, raw).await,
    };
    let answer = |answer: &Answer, model: &str, _: &Value| gemini::answer_response(answer, model, framing);
    let api = Api {
        provider: Provider::Gemini,
        model: Some(model.to_string()),
        exchange: gemini::exchange,
        answer: &answer,
        failure: gemini::failure,
    };
    respond(&state, &method, &uri, &raw, api)
}

/// `GET /` (and `HEAD /`, which Claude Code sends as a connectivity probe).
async fn root(State(state): State<MockState>, method: Method, uri: Uri) -> Response {
    let response = json_response(&json!({"service": "baton mock-llm"}));
    log_plain(&state, None, &method, &uri, Value::Null, &response);
    response
}

async fn list_requests(State(state): State<MockState>) -> Response {
    json_response(&json!(state.requests()))
}

async fn clear_requests(State(state): State<MockState>) -> StatusCode {
    state.clear_requests();
    StatusCode::NO_CONTENT
}

/// Logs and refuses anything else, so a test can see what an unexpected client call was.
async fn unknown_route(State(state): State<MockState>, method: Method, uri: Uri, raw: Bytes) -> Response {
    let body = serde_json::from_slice::<Value>(&raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
    tracing::warn!(%method, path = %uri, "mock-llm: no route");
    let message = format!("baton mock-llm has no route for {method} {}", uri.path());
    let response =
        (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"code": 404, "message": message}}))).into_response();
    log_plain(&state, None, &method, &uri, body, &response);
    response
}

fn log_plain(
    state: &MockState,
    provider: Option<Provider>,
    method: &Method,
    uri: &Uri,
    body: Value,
    response: &Response,
) {
    state.record(LoggedRequest {
        provider,
        method: method.to_string(),
        path: uri.to_string(),
        model: body["model"].as_str().map(str::to_string),
        conversation: None,
        turn: None,
        status: response.status().as_u16(),
        body,
    });
}

fn is_streaming(body: &Value) -> bool {
    body["stream"] == true
}

fn query_has(uri: &Uri, key: &str, value: &str) -> bool {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair.split_once('=').is_some_and(|(name, found)| name == key && found == value))
}
