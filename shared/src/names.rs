//! The one place that spells Redis keys and channels.
//!
//! Every key of a project carries the hash tag `{<project>}`, so one project's keys share one Redis Cluster slot
//! and a Function can touch them atomically. Keys outside a project are spelled here too.

use crate::project::ProjectName;

/// Set of every project that has had a mutation.
pub const PROJECTS_KEY: &str = "code_graph:projects";
/// Stream of analysis jobs.
pub const JOBS_STREAM: &str = "code_graph:jobs";
/// Consumer group of the analysis workers on [`JOBS_STREAM`].
pub const JOBS_GROUP: &str = "analysis-workers";
/// Channel on which graph-api announces a cancel request (message: the job id), so a worker stops within a
/// second; the request is also recorded in the job hash, which the worker checks, so a missed message only delays.
pub const JOBS_CANCEL_CHANNEL: &str = "code_graph:jobs:cancel";
/// Hash of job id → project, so a job can be found by its id alone.
pub const JOB_PROJECTS_KEY: &str = "code_graph:job_projects";

/// Set of the projects whose folder is watched (the index; each watch itself is [`RedisNames::watch`]). Its own
/// slot on a Redis Cluster: written by a command of its own, never in one transaction with a project's keys.
pub const WATCHES_KEY: &str = "code_graph:watches";
/// Sorted set of the live analysis-workers that can watch (member: consumer name, score: the time in ms until
/// which it counts as alive), so they share the watches out and graph-api knows someone will take one.
pub const WATCH_WORKERS_KEY: &str = "code_graph:watch:workers";
/// Hash of analysis-worker consumer name → JSON list of the roots it may analyse, for graph-api's check of a
/// watch request (read for the live workers of [`WATCH_WORKERS_KEY`] only).
pub const WATCH_ROOTS_KEY: &str = "code_graph:watch:roots";

/// String holding an MCP session's `initialize` parameters, so any graph-api replica can restore the session. Outside
/// any project (a key, and a slot on a cluster, of its own per session).
pub fn mcp_session(session_id: &str) -> String {
    format!("code_graph:mcp:session:{session_id}")
}

/// Sorted set of the live stream-consumer processes of a sink (member: consumer name, score: last heartbeat in
/// ms), so they can share the projects out evenly.
pub fn sink_consumers(sink: &str) -> String {
    format!("code_graph:cdc:consumers:{sink}")
}

/// A generation of a project's adjacency keys: every reset starts a new one, so that the old graph can be removed
/// in bounded steps after the reset (DESIGN.md, "The Function library").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u64);

/// Keys and channels of one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisNames {
    project: ProjectName,
    prefix: String,
}

impl RedisNames {
    pub fn new(project: &ProjectName) -> Self {
        Self { project: project.clone(), prefix: format!("code_graph:{{{project}}}") }
    }

    pub fn project(&self) -> &ProjectName {
        &self.project
    }

    /// Prefix of every graph-state key of the project; the Function library derives its keys from it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The durable, replayable CDC stream.
    pub fn cdc_stream(&self) -> String {
        format!("{}:cdc", self.prefix)
    }

    /// The live Pub/Sub channel.
    pub fn events_channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Hash recording that a consumer group holds the CDC stream above its length cap (written by the Function
    /// library's cap, read with `functions::cap_hold`).
    pub fn cdc_held(&self) -> String {
        format!("{}:cdc:held", self.prefix)
    }

    /// Dead letters of one sink.
    pub fn dead_letters(&self, sink: &str) -> String {
        format!("{}:cdc:dlq:{sink}", self.prefix)
    }

    /// Lease naming the one stream-consumer process that applies this project's stream to a sink.
    pub fn cdc_owner(&self, sink: &str) -> String {
        format!("{}:cdc:owner:{sink}", self.prefix)
    }

    /// Counter of the hand-overs of [`RedisNames::cdc_owner`]: each owner's generation, its fencing token in the
    /// sink.
    pub fn cdc_owner_generation(&self, sink: &str) -> String {
        format!("{}:cdc:owner:{sink}:generation", self.prefix)
    }

    /// Hash of node id → node JSON (without version).
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Hash of relationship id → relationship JSON (without version).
    pub fn relationships(&self) -> String {
        format!("{}:rels", self.prefix)
    }

    /// Hash of `n:<id>` / `r:<id>` / `j:<id>` → the entity's last version; kept after deletes so versions only grow.
    pub fn versions(&self) -> String {
        format!("{}:versions", self.prefix)
    }

    /// Hash of node kind → count.
    pub fn node_kinds(&self) -> String {
        format!("{}:node_kinds", self.prefix)
    }

    /// Hash of relationship type → count.
    pub fn relationship_types(&self) -> String {
        format!("{}:rel_types", self.prefix)
    }

    /// Set of the ids of the relationships leaving a node, in generation `generation` (read it with
    /// `functions::read_at_generation`, so the read and the generation are of one moment).
    pub fn outgoing(&self, generation: Generation, node_id: &str) -> String {
        format!("{}:out:{node_id}", self.adjacency_prefix(generation))
    }

    /// Set of the ids of the relationships entering a node, in generation `generation`.
    pub fn incoming(&self, generation: Generation, node_id: &str) -> String {
        format!("{}:in:{node_id}", self.adjacency_prefix(generation))
    }

    /// What the adjacency keys of a generation begin with: the prefix itself for generation 0 (the layout before
    /// generations, so a graph written by library 7 needs no migration), `<prefix>:g<n>` after.
    fn adjacency_prefix(&self, generation: Generation) -> String {
        match generation.0 {
            0 => self.prefix.clone(),
            n => format!("{}:g{n}", self.prefix),
        }
    }

    /// String: the current generation of the adjacency keys (absent: 0). Grown by every reset (`cg_reset`).
    pub fn generation(&self) -> String {
        format!("{}:generation", self.prefix)
    }

    /// Hash of the generations a reset left behind → the position of `cg_sweep` in their nodes; empty once swept.
    pub fn sweep(&self) -> String {
        format!("{}:sweep", self.prefix)
    }

    /// Where `cg_reset` moved one of the graph's big keys (`nodes`, `rels`, `node_kinds`, `rel_types`,
    /// `file_hashes`) of an old generation, until `cg_sweep` removes it.
    pub fn moved_aside(&self, generation: Generation, key: &str) -> String {
        format!("{}:old:{}:{key}", self.prefix, generation.0)
    }

    /// Hash describing one analysis job of the project.
    pub fn job(&self, job_id: &str) -> String {
        format!("{}:job:{job_id}", self.prefix)
    }

    /// Sorted set of the project's job ids, scored by when each was queued or first emitted an event (Unix ms);
    /// the newest [`crate::functions::RECENT_JOBS_KEPT`] are kept, and ids whose job hash expired are dropped
    /// when listed.
    pub fn recent_jobs(&self) -> String {
        format!("{}:recent_jobs", self.prefix)
    }

    /// Hash describing the watch of the project's folder as requested (`path`, `requested_ms`); absent when
    /// not watched.
    pub fn watch(&self) -> String {
        format!("{}:watch", self.prefix)
    }

    /// Hash of what the worker holding the watch reports (state, last change, pending changes, last run).
    pub fn watch_status(&self) -> String {
        format!("{}:watch:status", self.prefix)
    }

    /// Lease naming the one analysis-worker that watches the project's folder.
    pub fn watch_owner(&self) -> String {
        format!("{}:watch:owner", self.prefix)
    }

    /// Counter of the hand-overs of [`RedisNames::watch_owner`] (the holder's generation).
    pub fn watch_owner_generation(&self) -> String {
        format!("{}:watch:owner:generation", self.prefix)
    }

    /// Hash of file path → content hash, kept by the analysis-worker for incremental runs.
    pub fn file_hashes(&self) -> String {
        format!("{}:file_hashes", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_project_hash_tag() {
        let n = RedisNames::new(&ProjectName::parse("demo").unwrap());
        assert_eq!(n.cdc_stream(), "code_graph:{demo}:cdc");
        assert_eq!(n.events_channel(), "code_graph:{demo}:events");
        assert_eq!(n.dead_letters("falkordb"), "code_graph:{demo}:cdc:dlq:falkordb");
        let g0 = Generation(0);
        for key in [
            n.nodes(),
            n.relationships(),
            n.versions(),
            n.outgoing(g0, "a"),
            n.job("j"),
            n.generation(),
            n.watch(),
            n.watch_status(),
            n.watch_owner(),
            n.watch_owner_generation(),
        ] {
            assert!(key.starts_with("code_graph:{demo}:"), "{key}");
        }
    }

    #[test]
    fn generation_zero_is_the_layout_before_generations() {
        let n = RedisNames::new(&ProjectName::parse("demo").unwrap());
        assert_eq!(n.outgoing(Generation(0), "a"), "code_graph:{demo}:out:a");
        assert_eq!(n.incoming(Generation(3), "a"), "code_graph:{demo}:g3:in:a");
        assert_eq!(n.moved_aside(Generation(3), "nodes"), "code_graph:{demo}:old:3:nodes");
    }
}
