//! The HTTP API and the dashboard's files, as warp filters: JSON in and out, errors as
//! `{"error": {"code", "message"}}` with a fitting status, bodies size-limited, a bearer token when one
//! is configured. Database work runs on blocking threads; sales go through `orders`, exactly as the
//! command line makes them.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::AppState;
use super::feed::lock;
use crate::events::{now_ms, parse_time_arg};
use crate::export::{self, CsvFormat, ExportError, Filters, Kind};
use crate::money::{Price, parse_price};
use crate::orders::{self, NewSale, SaleChanges, SaleError, SaleErrorKind, SaleFilter, SaleStatus};
use crate::store::{Store, history};
use crate::webcast::normalise_username;

/// The largest request body accepted.
pub const MAX_BODY: u64 = 64 * 1024;
/// Events served by `/events` at most per request.
const MAX_EVENTS: u32 = 1000;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Nothing but the dashboard's own files may run or load on its page; avatars come from TikTok's CDN.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; \
                   connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// An API error: the status, a stable code for scripts, and a message for people.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn internal(message: impl std::fmt::Display) -> ApiError {
        tracing::error!("{message}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{message}"),
        )
    }
}

impl From<SaleError> for ApiError {
    fn from(err: SaleError) -> ApiError {
        let message = err.to_string();
        match (&err, err.kind()) {
            (SaleError::AlreadySold { .. } | SaleError::SoldAgain { .. }, _) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            (_, SaleErrorKind::Usage) => ApiError::bad_request(message),
            (_, SaleErrorKind::NotFound) => ApiError::not_found(message),
            (_, SaleErrorKind::Database) => ApiError::internal(message),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> ApiError {
        ApiError::internal(err)
    }
}

pub fn error_response(err: &ApiError) -> Response {
    let body = json!({"error": {"code": err.code, "message": err.message}});
    let mut response =
        warp::reply::with_status(warp::reply::json(&body), err.status).into_response();
    if err.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tiklive\""),
        );
    }
    response
}

/// The bearer token check, shared by the API and the WebSocket.
#[derive(Clone)]
pub struct Auth {
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Auth {
    pub fn new(token: Option<String>) -> Auth {
        Auth {
            token: token.filter(|t| !t.is_empty()).map(Into::into),
        }
    }

    /// Accepts `Authorization: Bearer TOKEN`, or the token as a query value where one is allowed.
    pub fn check(
        &self,
        authorization: Option<&str>,
        query_token: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let given = authorization
            .and_then(|h| {
                let (scheme, value) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
            })
            .or(query_token);
        match given {
            Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the API token is wrong",
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs its API token: send `Authorization: Bearer TOKEN`",
            )),
        }
    }
}

/// Compares without stopping at the first difference, so response times do not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Decodes `%XX` escapes and `+` of a query value; invalid escapes stay as they are.
pub fn percent_decode(text: &str) -> String {
    crate::oauth::flow::form_decode(text)
}

/// One query parameter's value, percent-decoded (the token of a WebSocket or an `/oauth` link).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

pub(super) fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

pub(super) fn reject(err: ApiError) -> Rejection {
    warp::reject::custom(err)
}

/// Runs database work on a blocking thread with the server's connection.
async fn with_store<T, F>(state: &Arc<AppState>, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
{
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || work(&mut lock(&state.store)))
        .await
        .map_err(ApiError::internal)?
}

/// Query values by name; a name the endpoint does not know is an error (most likely a typo).
struct Query(HashMap<String, String>);

impl Query {
    fn parse(raw: &str, known: &[&str]) -> Result<Query, ApiError> {
        let mut values = HashMap::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k);
            if !known.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {k:?}: this endpoint takes {}",
                    known.join(", ")
                )));
            }
            values.insert(k, percent_decode(v));
        }
        Ok(Query(values))
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_request(format!("{name}={v:?} is not a valid number"))
                })
            })
            .transpose()
    }

    fn time(&self, name: &str, now: i64) -> Result<Option<i64>, ApiError> {
        self.text(name)
            .map(|v| {
                parse_time_arg(v, now).map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
            })
            .transpose()
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.0.get(name).map(String::as_str) {
            None | Some("0" | "false" | "no") => Ok(false),
            Some("" | "1" | "true" | "yes") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "{name}={other:?}: use true or false"
            ))),
        }
    }
}

fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// A JSON body of at most [`MAX_BODY`] bytes.
fn json_body<T: DeserializeOwned + Send>() -> impl Filter<Extract = (T,), Error = Rejection> + Clone
{
    warp::body::content_length_limit(MAX_BODY)
        .and(warp::body::bytes())
        .and_then(|bytes: Bytes| async move {
            serde_json::from_slice::<T>(&bytes)
                .map_err(|e| reject(ApiError::bad_request(format!("invalid JSON body: {e}"))))
        })
}

/// A price as a decimal string ("12.50", "12,50 USD") or a number (12.5).
fn price_of(value: &Option<Value>, currency: &str) -> Result<Option<Price>, ApiError> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "price must be a decimal string or a number, not {other}"
            )));
        }
    };
    parse_price(&text, currency)
        .map(Some)
        .map_err(ApiError::bad_request)
}

/// A TikTok id given as a string or a number.
fn id_of(value: &Value, name: &str) -> Result<u64, ApiError> {
    let parsed = match value {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    parsed.ok_or_else(|| ApiError::bad_request(format!("{name} must be a numeric id, not {value}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsernameBody {
    username: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSaleBody {
    message_id: Option<Value>,
    buyer: Option<String>,
    live_id: Option<i64>,
    item: Option<String>,
    variant: Option<String>,
    quantity: Option<u32>,
    price: Option<Value>,
    currency: Option<String>,
    note: Option<String>,
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSaleBody {
    status: Option<String>,
    item: Option<String>,
    variant: Option<String>,
    quantity: Option<u32>,
    price: Option<Value>,
    currency: Option<String>,
    note: Option<String>,
}

fn status_of(text: &str) -> Result<SaleStatus, ApiError> {
    SaleStatus::from_sql(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown status {text:?}: use pending, confirmed, paid or cancelled"
        ))
    })
}

fn quantity_ok(quantity: Option<u32>) -> Result<Option<u32>, ApiError> {
    match quantity {
        Some(0) => Err(ApiError::bad_request("quantity must be at least 1")),
        q => Ok(q),
    }
}

fn currency_or(given: &Option<String>, default: &str) -> Result<String, ApiError> {
    match given {
        Some(code) => crate::money::parse_currency(code).map_err(ApiError::bad_request),
        None => Ok(default.to_owned()),
    }
}

/// Every route, with errors turned into JSON responses.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_state = {
        let state = Arc::clone(&state);
        warp::any().map(move || Arc::clone(&state))
    };
    let auth = {
        let auth = state.auth.clone();
        warp::header::optional::<String>("authorization")
            .and_then(move |header: Option<String>| {
                let result = auth.check(header.as_deref(), None).map_err(reject);
                async move { result }
            })
            .untuple_one()
    };

    let oauth = super::oauth_routes::routes(with_state.clone(), auth.clone());

    let file = |body: &'static str, content_type: &'static str| {
        move || {
            let mut response = Response::new(body.into());
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
    };
    let dashboard = warp::path::end()
        .and(warp::get())
        .map(file(INDEX_HTML, "text/html; charset=utf-8"))
        .or(warp::path!("app.js")
            .and(warp::get())
            .map(file(APP_JS, "text/javascript; charset=utf-8")))
        .unify()
        .or(warp::path!("style.css")
            .and(warp::get())
            .map(file(STYLE_CSS, "text/css; charset=utf-8")))
        .unify();

    let health = warp::path!("health")
        .and(warp::get())
        .and(with_state.clone())
        .then(health);
    let status = warp::path!("status")
        .and(warp::get())
        .and(auth.clone())
        .and(with_state.clone())
        .then(|state: Arc<AppState>| async move {
            json_response(
                StatusCode::OK,
                &json!({"lives": state.lives.statuses().await}),
            )
        });
    let connect = warp::path!("connect")
        .and(warp::post())
        .and(auth.clone())
        .and(json_body::<UsernameBody>())
        .and(with_state.clone())
        .and_then(|body: UsernameBody, state: Arc<AppState>| async move {
            let username = normalise_username(&body.username);
            if username.is_empty() {
                return Err(reject(ApiError::bad_request(format!(
                    "{:?} is not a TikTok username",
                    body.username
                ))));
            }
            let live = state.lives.connect(&username).await;
            Ok(json_response(StatusCode::ACCEPTED, &json!({"live": live})))
        });
    let disconnect = warp::path!("disconnect")
        .and(warp::post())
        .and(auth.clone())
        .and(json_body::<UsernameBody>())
        .and(with_state.clone())
        .and_then(|body: UsernameBody, state: Arc<AppState>| async move {
            let username = normalise_username(&body.username);
            match state.lives.disconnect(&username).await {
                Some(live) => Ok(json_response(StatusCode::OK, &json!({"live": live}))),
                None => Err(reject(ApiError::not_found(format!(
                    "@{username} is not followed: GET /status lists the lives"
                )))),
            }
        });
    let events = warp::path!("events")
        .and(warp::get())
        .and(auth.clone())
        .and(raw_query())
        .and(with_state.clone())
        .and_then(|query: String, state| async move { events(query, state).await.map_err(reject) });
    let claims = warp::path!("claims")
        .and(warp::get())
        .and(auth.clone())
        .and(raw_query())
        .and(with_state.clone())
        .and_then(|query: String, state: Arc<AppState>| async move {
            let query = Query::parse(&query, &["live", "limit"]).map_err(reject)?;
            let live = query.number::<i64>("live").map_err(reject)?;
            let limit = query
                .number::<u32>("limit")
                .map_err(reject)?
                .unwrap_or(100)
                .min(10_000);
            let claims = with_store(&state, move |store| {
                Ok(history::claims(store.conn(), live, None, limit)?)
            })
            .await
            .map_err(reject)?;
            Ok::<_, Rejection>(json_response(StatusCode::OK, &json!({"claims": claims})))
        });
    let list_sales = warp::path!("sales")
        .and(warp::get())
        .and(auth.clone())
        .and(raw_query())
        .and(with_state.clone())
        .and_then(
            |query: String, state| async move { list_sales(query, state).await.map_err(reject) },
        );
    let create_sale = warp::path!("sales")
        .and(warp::post())
        .and(auth.clone())
        .and(json_body::<CreateSaleBody>())
        .and(with_state.clone())
        .and_then(|body, state| async move { create_sale(body, state).await.map_err(reject) });
    let update_sale = warp::path!("sales" / i64)
        .and(warp::patch())
        .and(auth.clone())
        .and(json_body::<UpdateSaleBody>())
        .and(with_state.clone())
        .and_then(
            |id, body, state| async move { update_sale(id, body, state).await.map_err(reject) },
        );
    let cancel_sale = warp::path!("sales" / i64)
        .and(warp::delete())
        .and(auth.clone())
        .and(with_state.clone())
        .and_then(|id: i64, state: Arc<AppState>| async move {
            let feed = Arc::clone(&state.feed);
            let sale = with_store(&state, move |store| {
                Ok(orders::cancel(store, id, now_ms())?)
            })
            .await
            .map_err(reject)?;
            feed.announce_sale(&sale);
            Ok::<_, Rejection>(json_response(StatusCode::OK, &sale))
        });
    let buyer = warp::path!("buyers" / String)
        .and(warp::get())
        .and(auth.clone())
        .and(with_state.clone())
        .and_then(|spec: String, state: Arc<AppState>| async move {
            let spec = percent_decode(&spec);
            let found = with_store(&state, move |store| {
                let Some(id) = store.find_buyer(&spec)? else {
                    return Err(ApiError::not_found(format!(
                        "no buyer {spec:?} in the database"
                    )));
                };
                history::buyer(store.conn(), id)?.ok_or_else(|| {
                    ApiError::not_found(format!("no buyer {spec:?} in the database"))
                })
            })
            .await
            .map_err(reject)?;
            Ok::<_, Rejection>(json_response(StatusCode::OK, &found))
        });
    let export = warp::path!("export" / String)
        .and(warp::get())
        .and(auth)
        .and(raw_query())
        .and(with_state)
        .and_then(|file: String, query: String, state| async move {
            export_csv(file, query, state).await.map_err(reject)
        });

    let api = health
        .or(status)
        .unify()
        .or(connect)
        .unify()
        .or(disconnect)
        .unify()
        .or(events)
        .unify()
        .or(claims)
        .unify()
        .or(list_sales)
        .unify()
        .or(create_sale)
        .unify()
        .or(update_sale)
        .unify()
        .or(cancel_sale)
        .unify()
        .or(buyer)
        .unify()
        .or(export)
        .unify()
        .or(oauth)
        .unify()
        .or(dashboard)
        .unify()
        .boxed();

    let cors_origins = state.cors_origins.clone();
    let routes: warp::filters::BoxedFilter<(Response,)> = if cors_origins.is_empty() {
        api
    } else {
        let cors = warp::cors()
            .allow_origins(cors_origins.iter().map(String::as_str))
            .allow_methods(["GET", "POST", "PATCH", "DELETE"])
            .allow_headers(["authorization", "content-type"]);
        api.with(cors).map(Reply::into_response).boxed()
    };
    routes.recover(recover).unify()
}

async fn health(state: Arc<AppState>) -> Response {
    let writer_failure = state.writer.failure();
    let store_ok = writer_failure.is_none()
        && with_store(&state, |store| {
            store
                .conn()
                .query_row("SELECT count(*) FROM lives", [], |r| r.get::<_, i64>(0))
                .map_err(ApiError::internal)
        })
        .await
        .is_ok();
    let lives = state.lives.statuses().await;
    let connected = lives
        .iter()
        .filter(|l| l.state == super::lives::LiveState::Connected)
        .count();
    let body = json!({
        "status": if store_ok { "ok" } else { "unavailable" },
        "store": if store_ok { "ok" } else { "error" },
        "store_error": writer_failure,
        "lives": {"total": lives.len(), "connected": connected},
        "clients": state.feed.clients(),
    });
    let code = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, &body)
}

async fn events(query: String, state: Arc<AppState>) -> Result<Response, ApiError> {
    let query = Query::parse(&query, &["live", "type", "limit", "before"])?;
    let live = query.text("live").map(normalise_username);
    let type_name = query.text("type").map(str::to_owned);
    if let Some(t) = &type_name
        && !crate::events::EVENT_TYPES.contains(&t.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "unknown event type {t:?}: use one of {}",
            crate::events::EVENT_TYPES.join(", ")
        )));
    }
    let limit = query
        .number::<u32>("limit")?
        .unwrap_or(100)
        .clamp(1, MAX_EVENTS);
    let before = query.number::<u64>("before")?;
    // The recent events of a followed live are in memory, including those not yet committed (and its
    // connection lines, which are never stored).
    let ring = match (&live, before) {
        (Some(live), None) => state.feed.recent_of(live),
        _ => Vec::new(),
    };
    // (time, message id, text) of the ring's events of the type asked for, in the ring's order.
    let recent: Vec<(i64, u64, &str)> = ring
        .iter()
        .filter_map(|item| match item.kind {
            super::feed::FeedKind::Event {
                type_name: t,
                msg_id,
                ts_ms,
                ..
            } if type_name.as_deref().is_none_or(|want| want == t) => {
                Some((ts_ms, msg_id, item.text.as_str()))
            }
            _ => None,
        })
        .collect();
    if recent.len() >= limit as usize {
        let start = recent.len() - limit as usize;
        return Ok(events_response(
            recent[start..].iter().map(|&(_, _, text)| text),
        ));
    }
    // Older events come from the store: those of earlier runs (before a restart of serve, or lives
    // that ended) and those that have left the ring. Events in both are taken once, and the two are
    // merged by time (then message id): an event committed after the ring was read is in the store
    // only, and may be newer than some of the ring's.
    let stored = with_store(&state, move |store| {
        Ok(history::events_page(
            store.conn(),
            live.as_deref(),
            type_name.as_deref(),
            before,
            limit,
        )?)
    })
    .await?;
    let merged = merge_events(&recent, &stored, limit as usize);
    Ok(events_response(merged.into_iter()))
}

/// The last `limit` of `recent` (the ring of a live's events, in its order, as (time, message id,
/// text)) and `stored` (oldest first), each event once. The ring keeps its order; each stored event
/// goes before the first of its events that is later.
fn merge_events<'a>(
    recent: &[(i64, u64, &'a str)],
    stored: &'a [history::StoredEvent],
    limit: usize,
) -> Vec<&'a str> {
    let in_memory: HashSet<u64> = recent.iter().map(|&(_, id, _)| id).collect();
    let mut older = stored
        .iter()
        .filter(|e| !in_memory.contains(&e.msg_id))
        .peekable();
    let mut merged: Vec<&str> = Vec::with_capacity(stored.len() + recent.len());
    for &(ts, id, text) in recent {
        while let Some(e) = older.next_if(|e| (e.ts_ms, e.msg_id) < (ts, id)) {
            merged.push(&e.json);
        }
        merged.push(text);
    }
    merged.extend(older.map(|e| e.json.as_str()));
    let skip = merged.len().saturating_sub(limit);
    merged.split_off(skip)
}

/// `{"events": [...]}` from JSON texts, without parsing them again.
fn events_response<'a>(lines: impl Iterator<Item = &'a str> + Clone) -> Response {
    let mut body = String::with_capacity(lines.clone().map(|l| l.len() + 1).sum::<usize>() + 16);
    body.push_str("{\"events\":[");
    for (i, line) in lines.enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(line);
    }
    body.push_str("]}");
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn list_sales(query: String, state: Arc<AppState>) -> Result<Response, ApiError> {
    let query = Query::parse(&query, &["live", "buyer", "status", "since"])?;
    let status = query.text("status").map(status_of).transpose()?;
    let filter = SaleFilter {
        live: query.number("live")?,
        buyer: query.text("buyer").map(str::to_owned),
        status,
        since_ms: query.time("since", now_ms())?,
    };
    let sales = with_store(&state, move |store| Ok(orders::list(store, &filter)?)).await?;
    Ok(json_response(StatusCode::OK, &json!({"sales": sales})))
}

async fn create_sale(body: CreateSaleBody, state: Arc<AppState>) -> Result<Response, ApiError> {
    let currency = currency_or(&body.currency, &state.currency)?;
    let sale = NewSale {
        item: body.item,
        variant: body.variant,
        quantity: quantity_ok(body.quantity)?,
        price: price_of(&body.price, &currency)?,
        note: body.note,
    };
    let source = match (&body.message_id, &body.buyer) {
        (Some(Value::Null) | None, None) | (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give exactly one of message_id (a sale from a chat message) and buyer (a manual sale)",
            ));
        }
        (Some(message), None) => Ok(id_of(message, "message_id")?),
        (None, Some(buyer)) => Err(buyer.clone()),
    };
    if body.live_id.is_some() && source.is_ok() {
        return Err(ApiError::bad_request(
            "live_id is only for a manual sale (with buyer)",
        ));
    }
    let (force, live) = (body.force, body.live_id);
    let writer = Arc::clone(&state.writer);
    let created = with_store(&state, move |store| match source {
        Ok(msg_id) => {
            let created = match orders::create_from_message(store, msg_id, &sale, force, now_ms()) {
                // A claim seen on the feed a moment ago may still be in the writer's open batch.
                Err(SaleError::MessageNotFound(_)) => {
                    writer.flush()?;
                    orders::create_from_message(store, msg_id, &sale, force, now_ms())?
                }
                other => other?,
            };
            if !created.from_claim {
                tracing::info!(
                    msg_id,
                    kind = %created.message_type,
                    "sale {} made from a message that is not a claim",
                    created.sale.id
                );
            }
            Ok(created.sale)
        }
        Err(buyer) => Ok(orders::create_manual(store, &buyer, live, &sale, now_ms())?),
    })
    .await?;
    state.feed.announce_sale(&created);
    let mut response = json_response(StatusCode::CREATED, &created);
    if let Ok(location) = HeaderValue::from_str(&format!("/sales/{}", created.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn update_sale(
    id: i64,
    body: UpdateSaleBody,
    state: Arc<AppState>,
) -> Result<Response, ApiError> {
    let currency = currency_or(&body.currency, &state.currency)?;
    let status = body.status.as_deref().map(status_of).transpose()?;
    let changes = SaleChanges {
        status,
        item: body.item,
        variant: body.variant,
        quantity: quantity_ok(body.quantity)?,
        price: price_of(&body.price, &currency)?,
        note: body.note,
    };
    let sale = with_store(&state, move |store| {
        Ok(orders::update(store, id, &changes, now_ms())?)
    })
    .await?;
    state.feed.announce_sale(&sale);
    Ok(json_response(StatusCode::OK, &sale))
}

async fn export_csv(
    file: String,
    query: String,
    state: Arc<AppState>,
) -> Result<Response, ApiError> {
    let name = file.strip_suffix(".csv").unwrap_or(&file);
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.name() == name)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no export {file:?}: use one of {}",
                Kind::ALL.map(|k| format!("{k}.csv")).join(", ")
            ))
        })?;
    let query = Query::parse(
        &query,
        &[
            "since",
            "until",
            "live",
            "room",
            "user",
            "delimiter",
            "bom",
            "excel_fr",
        ],
    )?;
    let now = now_ms();
    let mut format = if query.flag("excel_fr")? {
        CsvFormat::excel_fr()
    } else {
        CsvFormat::default()
    };
    if let Some(d) = query.text("delimiter") {
        format.delimiter = export::parse_delimiter(d).map_err(ApiError::bad_request)?;
    }
    if query.flag("bom")? {
        format.bom = true;
    }
    let since_ms = query.time("since", now)?;
    let until_ms = query.time("until", now)?;
    let live = query.number::<i64>("live")?;
    let room = query.number::<u64>("room")?;
    let user = query.text("user").map(str::to_owned);
    let path = state.db_path.clone();
    let request = tokio::task::spawn_blocking(move || -> Result<export::Request, ApiError> {
        // Its own connection: a long export must not hold up sales.
        let store = Store::open(&path)?;
        let filters = Filters {
            since_ms,
            until_ms,
            live,
            room,
            user: None,
        };
        let filters = export::resolve_filters(&store, kind, filters, user.as_deref()).map_err(
            |e| match e {
                ExportError::Invalid(m) => ApiError::bad_request(m),
                ExportError::NotFound(m) => ApiError::not_found(m),
                other => ApiError::internal(other),
            },
        )?;
        let request = export::Request {
            kind,
            filters,
            format,
            after_id: 0,
        };
        Ok(request)
    })
    .await
    .map_err(ApiError::internal)??;
    // Checked here; the rows are streamed by the connection (see `stream::ExportJob`), so memory
    // stays flat however large the export.
    let mut response = Response::default();
    response.extensions_mut().insert(super::stream::ExportJob {
        db_path: state.db_path.clone(),
        request,
    });
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment; filename=\"tiklive-{}.csv\"",
        kind.name()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// Turns every rejection into a JSON error.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let err = if let Some(err) = rejection.find::<ApiError>() {
        err.clone()
    } else if rejection.is_not_found() {
        ApiError::not_found("no such endpoint: `tiklive serve --help` lists them")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "send a Content-Length",
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take that method",
        )
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send JSON",
        )
    } else if let Some(cors) = rejection.find::<warp::cors::CorsForbidden>() {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", cors.to_string())
    } else {
        ApiError::internal(format!("unhandled rejection: {rejection:?}"))
    };
    Ok(error_response(&err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use history::StoredEvent;

    fn stored(ts_ms: i64, msg_id: u64) -> StoredEvent {
        StoredEvent {
            ts_ms,
            msg_id,
            json: format!("s{msg_id}"),
        }
    }

    #[test]
    fn stored_events_go_before_the_ring_or_between_its_events_by_time_each_once() {
        // The ring: a connection line (no message id) and three events, one not yet committed (13).
        let recent = [
            (100, 0, "connection"),
            (101, 11, "r11"),
            (102, 12, "r12"),
            (104, 13, "r13"),
        ];
        // Earlier runs (1, 2), two events also in the ring, and 14, committed after the ring was read.
        let page = [
            stored(10, 1),
            stored(20, 2),
            stored(101, 11),
            stored(102, 12),
            stored(103, 14),
        ];
        assert_eq!(
            merge_events(&recent, &page, 100),
            ["s1", "s2", "connection", "r11", "r12", "s14", "r13"]
        );
        assert_eq!(merge_events(&recent, &page, 3), ["r12", "s14", "r13"]);
        assert_eq!(merge_events(&[], &page, 2), ["s12", "s14"]);
        assert_eq!(merge_events(&recent, &[], 2), ["r12", "r13"]);
    }
}
