//! The HTTP surface, composed per area. Each file is one resource; handlers are thin: extract, call the
//! Function library or the store, answer. The OpenAPI document is collected from the same handlers, and
//! `declared_limits` writes into it the limits the checks behind them enforce.

pub mod admin;
pub mod batch;
pub mod cypher;
mod declared_limits;
pub mod intel;
pub mod nodes;
pub mod ops;
pub mod queries;
pub mod relationships;
pub mod watch;

use axum::{extract::DefaultBodyLimit, middleware};
use codegraph_shared::auth::Scope;
use serde::Serialize;
use utoipa::{
    openapi::{
        request_body::{RequestBody, RequestBodyBuilder},
        schema::{AdditionalProperties, ObjectBuilder, Type},
        security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
        ContentBuilder, OpenApi as OpenApiDoc, Ref, RefOr, Required, ResponseBuilder,
    },
    OpenApi,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{guard_state_change, require_scope, BodyRule},
    limits::limit_requests,
    observe::observe,
    state::AppState,
};

/// The name of the bearer security scheme in the OpenAPI document.
const BEARER: &str = "bearer";

/// The JSON error shape every failure has.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_json`, `not_found`, `dangling_relationship`, `unavailable`.
    pub code: String,
    pub message: String,
    /// Extra facts, on some errors only (e.g. `error_id`, what part of a batch was applied).
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Code Graph Live — graph-api", description = "Mutations and queries of the code graph. Every mutation and its CDC event happen in one atomic Redis Function call. Every route takes `?project=` (default `default`)."),
    tags(
        (name = "nodes"), (name = "relationships"), (name = "batch"), (name = "queries"), (name = "intel"), (name = "admin"), (name = "ops")
    ),
    components(schemas(ErrorBody, ErrorDetail))
)]
struct ApiDoc;

/// The whole application: routes grouped by the scope they need (the middleware and the OpenAPI document's
/// security both come from that grouping, so they cannot disagree), the CSRF guard on state-changing routes, the
/// request limits, traces and metrics. `/health`, `/ready` and `/metrics` are open and outside the limits.
pub fn app(state: AppState) -> axum::Router {
    let reads = OpenApiRouter::new()
        .routes(routes!(nodes::get_node))
        .routes(routes!(relationships::get_relationship))
        .routes(routes!(queries::stats))
        .routes(routes!(queries::search))
        .routes(routes!(queries::neighbors))
        .routes(routes!(queries::subgraph))
        .routes(routes!(queries::snapshot))
        .routes(routes!(queries::projects))
        .routes(routes!(intel::callers))
        .routes(routes!(intel::callees))
        .routes(routes!(intel::impact))
        .routes(routes!(intel::path))
        .routes(routes!(intel::dependencies))
        .routes(routes!(intel::context))
        .routes(routes!(admin::list_jobs))
        .routes(routes!(admin::get_job))
        .routes(routes!(watch::status));
    let writes = OpenApiRouter::new()
        .routes(routes!(nodes::create_node))
        .routes(routes!(nodes::patch_node, nodes::delete_node))
        .routes(routes!(relationships::create_relationship))
        .routes(routes!(relationships::patch_relationship, relationships::delete_relationship))
        .routes(routes!(batch::batch))
        .routes(routes!(admin::reanalyze))
        .routes(routes!(watch::start, watch::stop));
    let cancels = OpenApiRouter::new().routes(routes!(admin::cancel_job));
    let resets = OpenApiRouter::new().routes(routes!(admin::reset));
    // A read sent as a POST: the read scope, and the CSRF guard all the same (routes/cypher.rs says why).
    let posted_reads = OpenApiRouter::new().routes(routes!(cypher::query));

    let api = guarded(&state, reads, Scope::Read, None)
        .merge(guarded(&state, writes, Scope::Write, Some(BodyRule::Json)))
        .merge(guarded(&state, cancels, Scope::Write, Some(BodyRule::EmptyJson)))
        .merge(guarded(&state, posted_reads, Scope::Read, Some(BodyRule::Json)))
        .merge(guarded(&state, resets, Scope::Admin, Some(BodyRule::EmptyJson)))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_requests));
    let ops =
        OpenApiRouter::new().routes(routes!(ops::health)).routes(routes!(ops::ready)).routes(routes!(ops::metrics));

    let (router, mut doc) =
        OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/graph", api).merge(ops).split_for_parts();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(BEARER, SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    let mut doc = serde_json::to_value(&doc).expect("the OpenAPI document serializes");
    declared_limits::declare(&mut doc, &state.settings);
    let doc = std::sync::Arc::new(doc);
    let openapi = axum::Router::new()
        .route("/openapi.json", axum::routing::get(move || ops::openapi(doc.clone())))
        .route_layer(middleware::from_fn_with_state((state.clone(), Scope::Read), require_scope))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_requests));
    router
        .merge(openapi)
        .merge(crate::mcp::router(&state))
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.settings.api.max_body_bytes))
        .fallback(ops::not_found)
        .with_state(state)
}

/// `routes` behind a token with `scope` and, for state-changing routes (`body` given), the CSRF guard; their
/// OpenAPI operations say so (security requirement, 401/403/415/503 answers).
fn guarded(
    state: &AppState,
    routes: OpenApiRouter<AppState>,
    scope: Scope,
    body: Option<BodyRule>,
) -> OpenApiRouter<AppState> {
    let mut routes = match body {
        Some(rule) => routes.route_layer(middleware::from_fn_with_state((state.clone(), rule), guard_state_change)),
        None => routes,
    };
    routes = routes.route_layer(middleware::from_fn_with_state((state.clone(), scope), require_scope));
    declare_access(routes.get_openapi_mut(), scope, body);
    routes
}

/// Writes a group's access rule into its operations: the bearer scheme with the scope (OpenAPI 3.1 lets a
/// non-OAuth scheme list role names), a sentence in the description, and the refusals it can answer with.
fn declare_access(doc: &mut OpenApiDoc, scope: Scope, body: Option<BodyRule>) {
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put];
        for op in operations.into_iter().flatten() {
            op.security = Some(vec![SecurityRequirement::new(BEARER, [scope.as_str()])]);
            let rule = format!(
                "Needs `Authorization: Bearer <token>` with the `{scope}` scope whenever the service has tokens \
                 configured."
            );
            op.description = Some(match op.description.take() {
                Some(d) if !d.is_empty() => format!("{d}\n\n{rule}"),
                _ => rule,
            });
            let mut refusals = vec![
                ("400", "A malformed query or `?project=` name (`invalid_query`, `invalid_project`, ...)."),
                ("401", "No token, or an unknown one (`unauthorized`)."),
                ("503", "Redis unavailable (`unavailable`), too many requests in flight (`overloaded`) or too slow (`timeout`); see `Retry-After`."),
            ];
            match body {
                None => refusals.push(("403", "The token lacks the scope (`forbidden`).")),
                Some(rule) => {
                    refusals.push(("403", "The token lacks the scope (`forbidden`), or a browser `Origin` that is neither the API's own nor allowed (`forbidden_origin`)."));
                    if rule == BodyRule::EmptyJson {
                        op.request_body.get_or_insert_with(|| RefOr::T(empty_json_body()));
                        refusals.push(("415", "Not `Content-Type: application/json` (`unsupported_media_type`); the body must be empty or `{}`."));
                        refusals.push(("422", "A body other than `{}` (`invalid_body`)."));
                    } else {
                        refusals.push(("415", "Not `Content-Type: application/json` (`unsupported_media_type`)."));
                    }
                }
            }
            for (status, description) in refusals {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::T(error_response(description)));
            }
        }
    }
}

/// The body of a bodyless POST as the document states it: `{}` as `application/json`. Declared required because
/// the content type is (a POST without one is what a foreign page can send); an empty body sent with it is
/// accepted too.
fn empty_json_body() -> RequestBody {
    let empty = ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(0))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .build();
    RequestBodyBuilder::new()
        .description(Some("`{}` (or an empty body), always with `Content-Type: application/json`."))
        .required(Some(Required::True))
        .content("application/json", ContentBuilder::new().schema(Some(empty)).build())
        .build()
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build()
}
