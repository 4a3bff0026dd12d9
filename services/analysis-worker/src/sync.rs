//! Brings the graph in Redis in line with an analysis: decides which owners (files, directories) to compare,
//! reads their current state, computes the [`Delta`] and writes it through the Function library in chunks,
//! then records the content hashes. Only differences are written, so an unchanged repository writes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use codegraph_shared::functions::{
    change_size, GraphWriter, Mutation, MutationError, MAX_CHANGE_SET_BYTES, MAX_OPS_PER_CALL,
};
use redis::aio::ConnectionLike;

use crate::{
    analysis::Analysis,
    current::{self, is_structural},
    delta::{diff, Delta},
    desired::{dir_owner, file_owner, parent_dir, Owner},
};

/// How much of the repository is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every owner in the analysis or in Redis (also removes what no analysis produced).
    Full,
    /// Files whose content hash changed, and the files and directories that depend on them.
    Incremental,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "full" => Some(Mode::Full),
            "incremental" | "" => Some(Mode::Incremental),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Incremental => "incremental",
        }
    }
}

/// What a sync will do.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    pub delta: Delta<'a>,
    /// Files whose content changed, appeared or disappeared since the last sync.
    pub changed_files: Vec<String>,
    pub set_hashes: Vec<(String, String)>,
    pub delete_hashes: Vec<String>,
}

/// Decides what to write for `analysis` under `mode`.
pub async fn plan<'a, C: ConnectionLike + Send>(
    conn: &mut C,
    writer: &GraphWriter,
    analysis: &'a Analysis,
    mode: Mode,
) -> redis::RedisResult<Plan<'a>> {
    let names = writer.names();
    let stored: HashMap<String, String> = redis::cmd("HGETALL").arg(names.file_hashes()).query_async(conn).await?;
    let mut changed: Vec<String> =
        analysis.hashes.iter().filter(|(p, h)| stored.get(*p) != Some(*h)).map(|(p, _)| p.clone()).collect();
    // Files that could not be analysed and of which nothing is known: what Redis holds of them stays.
    let untouched: BTreeSet<Owner> = analysis
        .report
        .failed
        .iter()
        .filter(|(p, _)| !analysis.hashes.contains_key(p))
        .map(|(p, _)| file_owner(p))
        .collect();
    let deleted: Vec<String> = stored
        .keys()
        .filter(|p| !analysis.hashes.contains_key(*p) && !untouched.contains(&file_owner(p)))
        .cloned()
        .collect();
    let set_hashes = changed.iter().map(|p| (p.clone(), analysis.hashes[p].clone())).collect();
    changed.extend(deleted.iter().cloned());
    changed.sort();
    let full = mode == Mode::Full || stored.is_empty();
    let (owners, current) = if full {
        let current = current::read_all(conn, names).await?;
        let owners: BTreeSet<Owner> =
            analysis.graph.owners.keys().chain(current.keys()).filter(|o| !untouched.contains(*o)).cloned().collect();
        (owners, current)
    } else {
        if changed.is_empty() {
            return Ok(Plan::default());
        }
        incremental_scope(conn, writer, analysis, &changed, &stored, &untouched).await?
    };
    let delta = diff(&analysis.graph, &current, &owners);
    let set_hashes =
        if full { analysis.hashes.iter().map(|(p, h)| (p.clone(), h.clone())).collect() } else { set_hashes };
    Ok(Plan { delta, changed_files: changed, set_hashes, delete_hashes: deleted })
}

/// The owners an incremental sync compares, and their current state: the changed files, the directories
/// whose content changed, and every file with an edge into (or, now, towards) a changed file.
async fn incremental_scope<C: ConnectionLike + Send>(
    conn: &mut C,
    writer: &GraphWriter,
    analysis: &Analysis,
    changed: &[String],
    stored: &HashMap<String, String>,
    untouched: &BTreeSet<Owner>,
) -> redis::RedisResult<(BTreeSet<Owner>, BTreeMap<Owner, crate::desired::Owned>)> {
    let names = writer.names();
    let mut owners: BTreeSet<Owner> = changed.iter().map(|p| file_owner(p)).collect();
    // Files whose types get bases from a changed file (Rust `impl Trait for Type` elsewhere).
    for p in changed {
        owners.extend(analysis.foreign_targets.get(p).into_iter().flatten().map(|t| file_owner(t)));
    }
    for p in changed {
        let added_or_deleted = !stored.contains_key(p) || !analysis.hashes.contains_key(p);
        if added_or_deleted {
            let mut d = parent_dir(p);
            loop {
                owners.insert(dir_owner(d));
                if d == "." {
                    break;
                }
                d = parent_dir(d);
            }
        }
    }
    let mut current = current::read_owned(conn, names, &owners).await?;
    let mut more = current::outside_referrers(conn, names, &current).await?;
    // Edges the analysis now wants from other files into the changed ones.
    let targets: BTreeSet<&str> = owners
        .iter()
        .flat_map(|o| {
            let now = analysis.graph.owners.get(o).into_iter().flat_map(|w| w.nodes.keys());
            let before = current.get(o).into_iter().flat_map(|w| w.nodes.keys());
            now.chain(before).map(String::as_str)
        })
        .collect();
    for (owner, owned) in &analysis.graph.owners {
        if !owners.contains(owner)
            && owned.rels.values().any(|r| !is_structural(&r.rel_type) && targets.contains(r.target.as_str()))
        {
            more.insert(owner.clone());
        }
    }
    let extra: BTreeSet<Owner> = more.difference(&owners).filter(|o| !untouched.contains(*o)).cloned().collect();
    if !extra.is_empty() {
        current.extend(current::read_owned(conn, names, &extra).await?);
        owners.extend(extra);
    }
    Ok((owners, current))
}

/// How a write ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Mutations sent (each chunk is atomic).
    pub written: usize,
    /// Mutations that produced an event.
    pub events: usize,
    pub cancelled: bool,
}

/// Writes the plan chunk by chunk, checking `cancelled` between chunks, then records the hashes (only when
/// everything was written, so an interrupted sync is redone next time).
///
/// Each chunk is one atomic call and so one change set (one stream entry, one WebSocket frame): as many operations
/// as fit [`MAX_OPS_PER_CALL`] and about 256 KiB of changes (`functions::calls`). A watched edit's delta fits one,
/// so it reaches clients and sinks as one set; a fresh analysis packs many files into each. The operations keep
/// the delta's order (relationship deletes, node upserts, relationship upserts, node deletes), which references
/// across files need: a call of relationships comes after the calls that create both their ends.
pub async fn apply<C: ConnectionLike + Send>(
    conn: &mut C,
    writer: &GraphWriter,
    plan: &Plan<'_>,
    traceparent: Option<&str>,
    cancelled: &(dyn Fn() -> bool + Sync),
    on_chunk: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Applied, MutationError> {
    let total = plan.delta.len();
    let mut ops = plan.delta.mutations();
    let mut packer = Packer::default();
    let mut applied = Applied::default();
    let mut taken = false;
    while !taken {
        let call = match ops.next() {
            Some(op) => packer.push(op),
            None => {
                taken = true;
                std::mem::take(&mut packer).finish()
            }
        };
        let Some(call) = call else { continue };
        if !write_call(conn, writer, &call, traceparent, cancelled, &mut applied).await? {
            return Ok(applied);
        }
        on_chunk(applied.written, total);
    }
    record_hashes(conn, writer, plan).await?;
    Ok(applied)
}

/// Writes one call of a sync (unless `cancelled`: then `Ok(false)`, `applied.cancelled` set) and counts it.
pub(crate) async fn write_call<C: ConnectionLike + Send>(
    conn: &mut C,
    writer: &GraphWriter,
    call: &[Mutation],
    traceparent: Option<&str>,
    cancelled: &(dyn Fn() -> bool + Sync),
    applied: &mut Applied,
) -> Result<bool, MutationError> {
    if cancelled() {
        applied.cancelled = true;
        return Ok(false);
    }
    applied.events += write_one(conn, writer, call, traceparent).await?;
    applied.written += call.len();
    Ok(true)
}

/// Writes one call; returns how many graph events it made.
pub(crate) async fn write_one<C: ConnectionLike + Send>(
    conn: &mut C,
    writer: &GraphWriter,
    call: &[Mutation],
    traceparent: Option<&str>,
) -> Result<usize, MutationError> {
    // A node delete never relies on a cascade larger than one call takes: relationships no analysed owner
    // holds (added through the API) go first, in bounded change sets of their own.
    let (outcomes, detached) = writer.mutate_detaching(conn, call, traceparent).await?;
    Ok(outcomes.iter().filter(|o| o.event_id.is_some()).count() + cascaded(&outcomes) + detached.relationships as usize)
}

/// Records the content hashes of a plan (after its delta was written whole).
pub(crate) async fn record_hashes<C: ConnectionLike + Send>(
    conn: &mut C,
    writer: &GraphWriter,
    plan: &Plan<'_>,
) -> Result<(), MutationError> {
    let key = writer.names().file_hashes();
    for chunk in plan.set_hashes.chunks(MAX_OPS_PER_CALL) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&key);
        for (p, h) in chunk {
            cmd.arg(p).arg(h);
        }
        cmd.query_async::<i64>(conn).await?;
    }
    for chunk in plan.delete_hashes.chunks(MAX_OPS_PER_CALL) {
        redis::cmd("HDEL").arg(&key).arg(chunk).query_async::<i64>(conn).await?;
    }
    Ok(())
}

/// Packs operations into calls as they come, as `functions::calls` splits a whole list: as many as fit
/// [`MAX_OPS_PER_CALL`] and about [`MAX_CHANGE_SET_BYTES`] of changes (one operation larger than that is a call of
/// its own). So a large delta never exists as one list of mutations.
#[derive(Default)]
pub struct Packer {
    call: Vec<Mutation>,
    bytes: usize,
}

impl Packer {
    /// Adds `op`; returns the call it closed when `op` did not fit it (`op` begins the next one).
    pub fn push(&mut self, op: Mutation) -> Option<Vec<Mutation>> {
        let size = change_size(&op);
        let full =
            !self.call.is_empty() && (self.call.len() == MAX_OPS_PER_CALL || self.bytes + size > MAX_CHANGE_SET_BYTES);
        let closed = full.then(|| {
            self.bytes = 0;
            std::mem::take(&mut self.call)
        });
        self.bytes += size;
        self.call.push(op);
        closed
    }

    /// The last call, if any operation is left.
    pub fn finish(self) -> Option<Vec<Mutation>> {
        (!self.call.is_empty()).then_some(self.call)
    }
}

fn cascaded(outcomes: &[codegraph_shared::functions::Outcome]) -> usize {
    outcomes.iter().map(|o| o.cascaded as usize).sum()
}

#[cfg(test)]
mod tests {
    use codegraph_shared::{functions::calls, graph::Node};

    use super::*;

    fn upsert(i: usize, bytes: usize) -> Mutation {
        let mut n = Node {
            id: format!("n{i}"),
            kind: "function".into(),
            name: format!("f{i}"),
            file: None,
            line_start: None,
            line_end: None,
            properties: Default::default(),
            version: None,
        };
        n.properties.insert("pad".into(), serde_json::Value::String("x".repeat(bytes)));
        Mutation::UpsertNode(n, codegraph_shared::functions::Expect::Any)
    }

    #[test]
    fn calls_taken_one_at_a_time_are_the_calls_a_whole_list_is_split_into() {
        // Small operations (the count bound), large ones (the size bound) and one larger than a call.
        let mut ops: Vec<Mutation> = (0..2500).map(|i| upsert(i, 10)).collect();
        ops.extend((2500..2600).map(|i| upsert(i, 9_000 + (i % 7) * 1000)));
        ops.push(upsert(2600, MAX_CHANGE_SET_BYTES + 1));
        ops.extend((2601..3000).map(|i| upsert(i, 100)));
        let whole: Vec<Vec<Mutation>> = calls(&ops, MAX_OPS_PER_CALL).iter().map(|c| c.to_vec()).collect();
        let mut packer = Packer::default();
        let mut one_by_one: Vec<Vec<Mutation>> = ops.iter().filter_map(|op| packer.push(op.clone())).collect();
        one_by_one.extend(packer.finish());
        assert!(whole.len() > 5, "{}", whole.len());
        assert_eq!(one_by_one, whole);
    }
}
