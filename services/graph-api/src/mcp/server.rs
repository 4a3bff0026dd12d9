//! One MCP session: what the server says it can do, its resources and their subscriptions. The tools are in
//! `tools.rs` (the same type, its `#[tool_router]` block).

use std::{borrow::Cow, sync::Arc};

use codegraph_shared::auth::{bearer_token, Denial, Scope};
use rmcp::{
    handler::server::router::tool::ToolRouter,
    model::{
        Implementation, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams, ProtocolVersion,
        ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig, SubscribeRequestParams,
        SubscriptionFilter, UnsubscribeRequestParams,
    },
    service::{RequestContext, SubscriptionContext},
    tool_handler, ErrorData, RoleServer, ServerHandler,
};

use super::{
    resources,
    watch::{Subscriber, Watches, MAX_SUBSCRIPTIONS},
};
use crate::state::AppState;

/// What the client of a session may do beyond reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Everything (stdio: the process runs with the operator's own configuration).
    Full,
    /// What the bearer token of each HTTP request holds (the `/mcp` route already required `read`).
    PerRequest,
}

/// The MCP server of one session. Cheap to clone; its subscriptions end when the last clone is dropped.
#[derive(Clone)]
pub struct CodeGraphMcp {
    pub(super) state: AppState,
    access: Access,
    pub(super) tool_router: ToolRouter<Self>,
    watches: Arc<Watches>,
}

impl CodeGraphMcp {
    pub fn new(state: AppState, access: Access) -> Self {
        Self {
            state,
            access,
            tool_router: Self::tool_router() + Self::intel_router(),
            watches: Arc::new(Watches::default()),
        }
    }

    /// Refuses a request whose caller lacks `scope`, with the REST API's words. Over HTTP the token is read
    /// from the request that carried this MCP message, so a session cannot keep a scope its token lost.
    pub(super) fn require(&self, scope: Scope, ctx: &RequestContext<RoleServer>) -> Result<(), Denial> {
        match self.access {
            Access::Full => Ok(()),
            Access::PerRequest => {
                let presented = ctx
                    .extensions
                    .get::<axum::http::request::Parts>()
                    .and_then(|parts| parts.headers.get(axum::http::header::AUTHORIZATION))
                    .and_then(|v| v.to_str().ok())
                    .and_then(bearer_token);
                self.state.tokens.authorize(presented, scope)
            }
        }
    }
}

const INSTRUCTIONS: &str = "Code Graph Live: the code graph of analysed repositories, fresh to the last change. \
Every tool takes `project` (default `default`; `list_projects` names them). Find a symbol with `search_symbols`, \
then ask `get_symbol_context`, `find_callers`, `find_callees`, `impact_analysis` or `find_path` with its id (or a \
name: the first search hit is used). `cypher_query` runs read-only Cypher on the graph database. `reanalyze` runs \
an analysis with progress notifications and stops when cancelled. Resources `codegraph://<project>/schema` and \
`codegraph://<project>/stats` can be subscribed to: `notifications/resources/updated` follows each change.";

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CodeGraphMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder().enable_tools().enable_resources().enable_resources_subscribe().build(),
        )
        .with_server_info(Implementation::new("codegraph", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    /// Every version rmcp knows up to 2026-07-28: clients of the handshake versions subscribe with
    /// `resources/subscribe`, those of 2026-07-28 with `subscriptions/listen`.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2026_07_28))
    }

    /// `subscriptions/listen`: the resource URIs of ours (at most [`MAX_SUBSCRIPTIONS`]); no list-changed
    /// notifications (the tool and resource lists do not change).
    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        let uris = requested.resource_subscriptions.iter().flatten();
        let ours = uris.filter(|uri| resources::ResourceUri::parse(uri).is_ok()).take(MAX_SUBSCRIPTIONS);
        Some(SubscriptionFilter::builder().resource_subscriptions(ours.cloned().collect::<Vec<_>>()).build())
    }

    /// Follows the accepted URIs until the client ends the listen request. rmcp acknowledges the listen before
    /// this runs, so a change can fall between the acknowledgment and the Pub/Sub subscription: once subscribed,
    /// each URI gets one `notifications/resources/updated` (read it now), and every change after it gets its own.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let watches = Watches::default();
        let uris = context.accepted().resource_subscriptions.clone().unwrap_or_default();
        for uri in &uris {
            let uri = resources::ResourceUri::parse(uri)?;
            watches.subscribe(&self.state, uri, Subscriber::Listen(context.sink().clone())).await?;
        }
        for uri in &uris {
            if context.sink().notify_resource_updated(uri.as_str()).await.is_err() {
                return Ok(());
            }
        }
        context.cancelled().await;
        Ok(())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = resources::list(&self.state).await.map_err(resources::api_error)?;
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(resources::templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = resources::ResourceUri::parse(&request.uri)?;
        Ok(resources::read(&self.state, &uri).await?.into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let uri = resources::ResourceUri::parse(&request.uri)?;
        self.watches.subscribe(&self.state, uri, Subscriber::Session(context.peer.clone())).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.watches.unsubscribe(&request.uri);
        Ok(())
    }
}
