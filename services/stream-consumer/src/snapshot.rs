//! A snapshot of a project's graph with the stream ID it is consistent with: from graph-api
//! (`GET /api/graph/snapshot?project=&cursor=`, pages of `{"since","nodes","relationships","next_cursor"}`), or,
//! without graph-api, read from the graph hashes in Redis in one `MULTI` (so state and ID agree).

use anyhow::{bail, Context};
use redis::aio::ConnectionLike;
use serde::Deserialize;

use codegraph_shared::{
    event::{Change, ChangeSet, EntityRef, EventType, StreamId},
    graph::{Node, Relationship},
    names::RedisNames,
    stream::{newest_entry_cmd, newest_entry_id, StreamInfo},
};

#[derive(Debug, Default)]
pub struct Snapshot {
    pub since: StreamId,
    /// Entries the stream had received up to `since`, when known (read from Redis in the same `MULTI`).
    pub entries_read: Option<u64>,
    pub nodes: Vec<Node>,
    pub relationships: Vec<Relationship>,
}

#[derive(Deserialize)]
struct Page {
    since: Option<StreamId>,
    #[serde(default)]
    nodes: Vec<Node>,
    #[serde(default)]
    relationships: Vec<Relationship>,
    next_cursor: Option<String>,
}

/// Most pages read from graph-api (a guard against a cursor that never ends).
const MAX_PAGES: usize = 1_000_000;

pub async fn from_graph_api(api: &str, project: &str, mut on_page: impl FnMut(usize)) -> anyhow::Result<Snapshot> {
    let client = reqwest::Client::new();
    let url = format!("{}/api/graph/snapshot", api.trim_end_matches('/'));
    let mut snapshot = Snapshot::default();
    let mut cursor: Option<String> = None;
    for page_no in 0..MAX_PAGES {
        let mut req = client.get(&url).query(&[("project", project)]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c.as_str())]);
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            bail!("GET {url}: {} {}", resp.status(), resp.text().await.unwrap_or_default());
        }
        let page: Page = resp.json().await.with_context(|| format!("GET {url}: not a snapshot page"))?;
        if page_no == 0 {
            snapshot.since = page.since.context("the first snapshot page has no `since`")?;
        }
        on_page(page.nodes.len() + page.relationships.len());
        snapshot.nodes.extend(page.nodes);
        snapshot.relationships.extend(page.relationships);
        match page.next_cursor {
            Some(c) if !c.is_empty() && c != "0" => cursor = Some(c),
            _ => return Ok(snapshot),
        }
    }
    bail!("graph-api snapshot did not end after {MAX_PAGES} pages")
}

/// Nodes, relationships, versions (field → version), the newest stream entry and `XINFO STREAM`, in one `MULTI`.
type GraphHashes = (Vec<(String, String)>, Vec<(String, String)>, Vec<(String, u64)>, redis::Value, redis::Value);

pub async fn from_redis<C: ConnectionLike + Send>(conn: &mut C, names: &RedisNames) -> anyhow::Result<Snapshot> {
    // XINFO STREAM fails for a project without a stream, which has nothing to snapshot.
    let (nodes, rels, versions, last, info): GraphHashes = redis::pipe()
        .atomic()
        .hgetall(names.nodes())
        .hgetall(names.relationships())
        .hgetall(names.versions())
        .add_command(newest_entry_cmd(&names.cdc_stream()))
        .cmd("XINFO")
        .arg("STREAM")
        .arg(names.cdc_stream())
        .query_async(conn)
        .await?;
    let versions: std::collections::HashMap<String, u64> = versions.into_iter().collect();
    let since = newest_entry_id(last).unwrap_or_default();
    let info = StreamInfo::parse(info);
    let entries_read = (info.last_generated == since).then_some(info.entries_added);
    let mut snapshot = Snapshot { since, entries_read, ..Default::default() };
    for (id, json) in nodes {
        let mut node: Node = serde_json::from_str(&json).with_context(|| format!("node {id}"))?;
        node.version = versions.get(&format!("n:{id}")).copied();
        snapshot.nodes.push(node);
    }
    for (id, json) in rels {
        let mut rel: Relationship = serde_json::from_str(&json).with_context(|| format!("relationship {id}"))?;
        rel.version = versions.get(&format!("r:{id}")).copied();
        snapshot.relationships.push(rel);
    }
    Ok(snapshot)
}

impl Snapshot {
    /// The snapshot as `*_added` changes at `since`, each an entry of its own (so one the sink refuses is left out
    /// alone): first every node, then every relationship (whose endpoints must exist when it is written).
    pub fn into_sets(self, project: &str) -> (Vec<ChangeSet>, Vec<ChangeSet>) {
        let since = self.since;
        let set = |t: EventType, kind: &str, id: String, version: Option<u64>, data: serde_json::Value| ChangeSet {
            id: since,
            project: project.to_owned(),
            ts: String::new(),
            trace: None,
            changes: vec![Change {
                index: None,
                event_type: t,
                entity: EntityRef { kind: kind.to_owned(), id },
                version: version.unwrap_or(1),
                data,
            }],
            single: true,
        };
        let nodes = self
            .nodes
            .into_iter()
            .map(|mut n| {
                let version = n.version.take();
                let data = serde_json::to_value(&n).expect("a node serializes");
                set(EventType::NodeAdded, "node", n.id, version, data)
            })
            .collect();
        let rels = self
            .relationships
            .into_iter()
            .map(|mut r| {
                let version = r.version.take();
                let data = serde_json::to_value(&r).expect("a relationship serializes");
                set(EventType::RelationshipAdded, "relationship", r.id, version, data)
            })
            .collect();
        (nodes, rels)
    }
}
