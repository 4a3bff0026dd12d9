//! A fresh project — nothing in Redis yet — is written without its whole desired graph in memory: its delta is
//! every desired entity, so there is nothing to compare, and the entities are built a group of files at a time,
//! packed into calls and written as they come (the builder runs ahead of the writes by a few calls). Nodes go
//! first (directories, then each file's file node and definitions), then relationships in the order a full diff
//! gives them (directories' `contains`, then file by file), so every relationship's ends exist when it is written,
//! as [`crate::sync::apply`] guarantees for any delta. Each file is built in two halves (its nodes, later its
//! relationships) instead of a large repository's graph being held: about 1 KB per entity.

use std::collections::{BTreeMap, HashSet};

use codegraph_shared::{
    functions::{Expect, Mutation},
    names::RedisNames,
};
use rayon::prelude::*;
use redis::aio::ConnectionLike;

use crate::{
    analysis::Analysis,
    delta::node_rank,
    desired::{add_directories, file_parts, validated, Owned, Owner, Parts},
    resolve::Target,
    sync::Packer,
};

/// Files built at a time (in parallel), between two looks at whether the writes still want more.
const GROUP: usize = 64;

/// What [`produce`] sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub nodes: usize,
    pub relationships: usize,
}

/// Whether the project holds nothing: no file hashes, no nodes, no relationships.
pub async fn is_fresh<C: ConnectionLike + Send>(conn: &mut C, names: &RedisNames) -> redis::RedisResult<bool> {
    let (hashes, nodes, rels): (u64, u64, u64) = redis::pipe()
        .hlen(names.file_hashes())
        .hlen(names.nodes())
        .hlen(names.relationships())
        .query_async(conn)
        .await?;
    Ok(hashes == 0 && nodes == 0 && rels == 0)
}

/// At least as many mutations as [`produce`] sends (for progress: it only shrinks towards the count).
pub fn most_mutations(analysis: &Analysis) -> usize {
    let resolved = &analysis.resolved;
    let per_file: usize = resolved
        .files
        .iter()
        .zip(&resolved.links)
        .map(|(f, l)| {
            let imports: usize = l
                .imports
                .iter()
                .map(|(t, _)| match t {
                    Target::Def(_) => 1,
                    Target::Files(files) => files.len(),
                })
                .sum();
            2 + 2 * f.facts.definitions.len() + imports + l.calls.len() + l.bases.len()
        })
        .sum();
    2 * directories(analysis).len() + per_file
}

fn directories(analysis: &Analysis) -> BTreeMap<Owner, std::sync::Arc<Owned>> {
    let mut dirs = BTreeMap::new();
    let paths = analysis.resolved.files.iter().map(|f| f.path.as_str());
    add_directories(&mut dirs, paths.chain(analysis.untouched()), &analysis.root_name);
    dirs
}

/// One group of files' nodes or relationships, built in parallel, with the ids of nodes dropped for breaking a
/// limit.
fn build_group(analysis: &Analysis, files: std::ops::Range<usize>, parts: Parts) -> Vec<(Owned, Vec<String>)> {
    files
        .into_par_iter()
        .map(|fi| {
            let (owned, bad, _) = validated(file_parts(&analysis.resolved, fi, parts));
            (owned, bad)
        })
        .collect()
}

/// Builds the desired graph of an unbuilt `analysis` group by group and hands `send` its upserts, call by call,
/// in the order described above; stops (`None`) as soon as `send` says no more.
pub fn produce(analysis: &Analysis, send: &mut dyn FnMut(Vec<Mutation>) -> bool) -> Option<Sent> {
    let mut packer = Packer::default();
    let mut sent = Sent::default();
    let mut emit = |op: Mutation| match packer.push(op) {
        Some(call) => send(call),
        None => true,
    };
    let dirs = directories(analysis);
    let files = analysis.resolved.files.len();
    let groups = || (0..files).step_by(GROUP).map(|start| start..(start + GROUP).min(files));
    for n in dirs.values().flat_map(|o| o.nodes.values()) {
        sent.nodes += 1;
        if !emit(Mutation::UpsertNode(n.clone(), Expect::Any)) {
            return None;
        }
    }
    // Nodes dropped anywhere take the relationships into them, in every file, with them.
    let mut bad: HashSet<String> = HashSet::new();
    for group in groups() {
        for (owned, bad_nodes) in build_group(analysis, group, Parts::Nodes) {
            let mut nodes: Vec<_> = owned.nodes.into_values().collect();
            nodes.sort_by(|a, b| node_rank(a).cmp(&node_rank(b)).then_with(|| a.id.cmp(&b.id)));
            for n in nodes {
                sent.nodes += 1;
                if !emit(Mutation::UpsertNode(n, Expect::Any)) {
                    return None;
                }
            }
            bad.extend(bad_nodes);
        }
    }
    for r in dirs.values().flat_map(|o| o.rels.values()) {
        sent.relationships += 1;
        if !emit(Mutation::UpsertRelationship(r.clone(), Expect::Any)) {
            return None;
        }
    }
    for group in groups() {
        for (owned, _) in build_group(analysis, group, Parts::Relationships) {
            for r in owned.rels.into_values() {
                if bad.contains(&r.source) || bad.contains(&r.target) {
                    continue;
                }
                sent.relationships += 1;
                if !emit(Mutation::UpsertRelationship(r, Expect::Any)) {
                    return None;
                }
            }
        }
    }
    let last = packer.finish();
    last.is_none_or(send).then_some(sent)
}
