//! pushgate's HTTP API: the only crate that knows HTTP and the JSON of our API.
//!
//! [`router`] builds the whole axum [`Router`]. Every answer, the framework's
//! own rejections included, is IMKIT's envelope (see [`error`]).

mod accept;
pub mod admin;
pub mod auth;
pub mod certificates;
pub mod channels;
pub mod client_auth;
mod document;
pub mod error;
pub mod extract;
pub mod limits;
pub mod metrics;
pub mod origin;
pub mod routes;

use crate::auth::{ApiKeyRing, Apps};
use crate::error::ApiError;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Request, Uri};
use axum::response::{IntoResponse, Response};
use pushgate_store::Store;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// The configured apps.
    pub apps: Arc<Apps>,
    /// API keys of every app.
    pub keys: Arc<ApiKeyRing>,
    /// The instance's metrics.
    pub metrics: Arc<Metrics>,
    /// What the routes need of the delivery side.
    pub delivery: Arc<dyn DeliveryStatus>,
    /// The admin console's history and recent accepts.
    pub console: Arc<admin::Console>,
    /// Certificates that expire, for `/readyz`.
    pub certificates: Arc<certificates::CertificateWatch>,
    /// Re-reads credentials (`POST /admin/api/reload`); the binary's.
    pub reload: Option<Arc<dyn Reload>>,
}

/// Re-reads the configuration's credential files and swaps them in without
/// a restart (`POST /admin/api/reload`, and SIGHUP in the binary).
#[async_trait::async_trait]
pub trait Reload: Send + Sync + std::fmt::Debug + 'static {
    /// Answers what was reloaded, or why nothing was (the old credentials stay).
    async fn reload(&self) -> Result<Vec<String>, String>;
}

/// What the API needs of the delivery side, and all it sees of it: the
/// binary wires the worker in behind this, so this crate never depends on it.
#[async_trait::async_trait]
pub trait DeliveryStatus: Send + Sync + std::fmt::Debug + 'static {
    /// A push was accepted: deliver it without waiting for the next poll.
    fn wake(&self);

    /// Whether a worker is running: `/readyz` fails without one, since
    /// accepted pushes would wait undelivered.
    fn is_running(&self) -> bool;

    /// Providers paused for an app because they refused its credentials or
    /// configuration, ordered by app and provider.
    fn paused_providers(&self) -> Vec<PausedProvider>;

    /// Providers this node's recent sends could not reach (several in a row),
    /// ordered by app and provider.
    fn unreachable_providers(&self) -> Vec<UnreachableProvider> {
        Vec::new()
    }

    /// Whether the process is stopping: `/readyz` fails so that a load
    /// balancer sends nothing more.
    fn is_draining(&self) -> bool {
        false
    }

    /// Ends the provider's pause for the app now, on every node sharing the
    /// store, and makes the deliveries it held due at once; answers whether
    /// it was paused.
    async fn resume(
        &self,
        app: &pushgate_domain::AppId,
        provider: pushgate_domain::ProviderKind,
    ) -> Result<bool, pushgate_store::StoreError>;
}

/// A provider recent sends could not reach, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnreachableProvider {
    /// The app.
    pub app: String,
    /// `apns`, `fcm` or `webpush`.
    pub provider: String,
    /// Sends in a row that did not reach it.
    pub sends: u32,
    /// Since when, Unix ms.
    #[serde(rename = "sinceMS")]
    pub since_ms: i64,
    /// Why the last one did not (`ConnectionFailed`, `Timeout`, …).
    pub reason: String,
}

/// One paused provider of an app, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PausedProvider {
    /// The app.
    pub app: String,
    /// `apns`, `fcm` or `webpush`.
    pub provider: String,
    /// What the provider answered.
    pub reason: String,
    /// When the next probe may go, Unix ms.
    #[serde(rename = "untilMS")]
    pub until_ms: i64,
}

/// Settings of the HTTP layer itself.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// Largest request body accepted; larger ones get 413 `PAYLOAD_TOO_LARGE`.
    pub max_body_bytes: usize,
    /// Only the operations routes (health, readiness, metrics, the OpenAPI
    /// document): a node that only delivers serves no API.
    pub operations_only: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pushgate",
        description = "Self-hosted push gateway for chat apps built on IMKIT. Every answer uses IMKIT's envelope."
    ),
    modifiers(&ApiKeySecurity),
    tags(
        (name = "devices", description = "Device registration, IMKIT-compatible"),
        (name = "pushes", description = "Sending and tracking pushes"),
        (name = "callbacks", description = "IMKIT's push callbacks (PUSH_GENERIC v2 and legacy v1): origin-verified, no API key"),
        (name = "badges", description = "Per-client badges: room unreads and cross-domain sources"),
        (name = "routing", description = "Per-client routing of chat pushes: room mutes, presence, quiet hours, preferences"),
        (name = "experiments", description = "A/B copy experiments on chat pushes"),
        (name = "channels", description = "APNs broadcast channels (iOS 18+): Apple's channel management API per app, and broadcasts of Live Activity updates to a channel's subscribers"),
        (name = "operations", description = "Health, readiness, metrics: no API key"),
        (name = "console", description = "What the admin console at /admin needs beyond the routes above: an app's key, or an admin key (with IM-APP-ID where an app is acted on)"),
    )
)]
struct ApiDoc;

struct ApiKeySecurity;

impl Modify for ApiKeySecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("IM-API-KEY"))));
        // IMKIT's client credentials, on the routes a client may call: both headers together.
        components.add_security_scheme(
            "client_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("IM-CLIENT-KEY"))),
        );
        components.add_security_scheme(
            "client_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("IM-Authorization"))),
        );
    }
}

/// The whole API, with the OpenAPI document generated from the handlers'
/// annotations served at `/openapi.json`.
pub fn router(state: AppState, options: &RouterOptions) -> Router {
    let mut api = OpenApiRouter::with_openapi(ApiDoc::openapi());
    if !options.operations_only {
        api = api_routes(api);
    }
    let (router, mut openapi) = api
        .routes(routes!(routes::ops::healthz))
        .routes(routes!(routes::ops::readyz))
        .routes(routes!(routes::ops::metrics))
        .split_for_parts();
    document::complete(&mut openapi);
    let openapi = Arc::new(openapi);
    let metrics = Arc::clone(&state.metrics);
    let router = if options.operations_only { router } else { console_pages(router) };
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let openapi = Arc::clone(&openapi);
                async move { axum::Json(openapi) }
            }),
        )
        // The API reference page, built into the binary (no asset from a CDN).
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json")))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        // The span carries the method and path only: query strings may hold
        // secrets (`?secret=` on the callback routes) and are never logged.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let request_id = request.headers().get("x-request-id").and_then(|id| id.to_str().ok()).unwrap_or_default();
            let span = tracing::info_span!("http", http.method = %request.method(), http.path = %request.uri().path(), request.id = %request_id);
            // A caller's W3C `traceparent` (IMKIT's, a proxy's): the request, and the push it makes, go on in its trace.
            let parent = request.headers().get("traceparent").and_then(|value| value.to_str().ok());
            pushgate_domain::trace::continue_from(&span, parent.and_then(pushgate_domain::TraceParent::parse).as_ref());
            span
        }))
        // Every answer carries `x-request-id` (the caller's, or a new UUID),
        // and so does every log line of the request: its span names it.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Every route but the operations routes.
fn api_routes(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router
        .routes(routes!(routes::me::subscribe))
        .routes(routes!(routes::me::unsubscribe))
        .routes(routes!(routes::clients::list_devices))
        .routes(routes!(routes::pushes::push2clients))
        .routes(routes!(routes::pushes::push_liveactivity))
        .routes(routes!(routes::channels::create_channel, routes::channels::list_channels))
        .routes(routes!(routes::channels::read_channel, routes::channels::delete_channel))
        .routes(routes!(routes::channels::broadcast))
        .routes(routes!(routes::pushes::push_status))
        .routes(routes!(routes::imkit::push_generic))
        .routes(routes!(routes::imkit::push_legacy))
        .routes(routes!(routes::badges::get_badge))
        .routes(routes!(routes::badges::set_source, routes::badges::add_to_source))
        .routes(routes!(routes::badges::mark_read))
        .routes(routes!(routes::pushes::push_opened))
        .routes(routes!(routes::prefs::put_room_pref))
        .routes(routes!(routes::prefs::put_presence))
        .routes(routes!(routes::prefs::put_prefs, routes::prefs::get_prefs))
        .routes(routes!(routes::experiments::put_experiment, routes::experiments::get_experiment))
        .routes(routes!(routes::experiments::experiment_stats))
        .routes(routes!(routes::webpush::vapid_public_key))
        .routes(routes!(admin::session))
        .routes(routes!(admin::overview))
        .routes(routes!(admin::recent_pushes))
        .routes(routes!(admin::resume))
        .routes(routes!(admin::reload))
}

/// The console's page and assets (not in the OpenAPI document: they are no API).
fn console_pages(router: Router<AppState>) -> Router<AppState> {
    use axum::routing::get;
    router
        .route("/admin", get(admin::page))
        .route("/admin/", get(admin::page))
        .route("/admin/app.js", get(admin::script))
        .route("/admin/app.css", get(admin::style))
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error").into_response()
}

/// The current time in Unix milliseconds.
/// The id of a push accepted now: a UUIDv7, so it carries its acceptance time.
pub(crate) fn new_push_id() -> pushgate_domain::PushId {
    pushgate_domain::PushId::from_uuid(uuid::Uuid::now_v7())
}

pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
