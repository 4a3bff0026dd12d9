//! The graph the analysis says the project should have: nodes and relationships, each owned by one file or
//! directory, so a change to a few files is compared with Redis owner by owner.
//!
//! Ids are stable: `dir:<path>`, `file:<path>`, `<lang>:<path>:<qualified name>` (e.g. `py:src/app.py:App.run`),
//! relationships by [`Relationship::derived_id`]. Ownership: a node belongs to its file (directories to
//! themselves); a `contains`/`defines` edge to its target's owner; any other edge to its source's file.
//! Unresolved calls are not edges: the caller carries them by name in `properties.unresolved_calls`.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    hash::{Hash, Hasher},
    sync::Arc,
};

use codegraph_shared::graph::{Node, Relationship};
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::{
    facts::{DefKind, FileFacts},
    resolve::{FileLinks, Resolved, Target},
    symbols::DefRef,
};

/// Longest list kept in a property such as `unresolved_calls`.
pub const MAX_LISTED: usize = 100;

/// The owner of a set of entities: `f:<path>` for a file, `d:<path>` for a directory.
pub type Owner = String;

pub fn file_owner(path: &str) -> Owner {
    format!("f:{path}")
}

pub fn dir_owner(path: &str) -> Owner {
    format!("d:{path}")
}

pub fn file_id(path: &str) -> String {
    format!("file:{path}")
}

pub fn dir_id(path: &str) -> String {
    format!("dir:{path}")
}

/// The directory holding a path (`.` for the root).
pub fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or(".")
}

/// What one owner should have in the graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Owned {
    pub nodes: BTreeMap<String, Node>,
    pub rels: BTreeMap<String, Relationship>,
}

/// The whole desired graph, by owner (shared with the [`BuildCache`], so an owner that did not change is
/// not copied).
#[derive(Clone, Debug, Default)]
pub struct DesiredGraph {
    pub owners: BTreeMap<Owner, Arc<Owned>>,
    /// Entities dropped because they broke a limit (id too long…).
    pub invalid: u64,
}

impl DesiredGraph {
    pub fn node_count(&self) -> usize {
        self.owners.values().map(|o| o.nodes.len()).sum()
    }

    pub fn rel_count(&self) -> usize {
        self.owners.values().map(|o| o.rels.len()).sum()
    }
}

fn node(id: String, kind: &str, name: &str, file: Option<&str>, lines: Option<(u32, u32)>) -> Node {
    Node {
        id,
        kind: kind.to_owned(),
        name: name.to_owned(),
        file: file.map(str::to_owned),
        line_start: lines.map(|l| l.0),
        line_end: lines.map(|l| l.1),
        properties: BTreeMap::new(),
        version: None,
    }
}

fn rel(source: &str, rel_type: &str, target: &str, confidence: Option<f64>) -> Relationship {
    let mut properties = BTreeMap::new();
    if let Some(c) = confidence {
        properties.insert("confidence".to_owned(), json!(c));
    }
    Relationship {
        id: Relationship::derived_id(source, rel_type, target),
        rel_type: rel_type.to_owned(),
        source: source.to_owned(),
        target: target.to_owned(),
        properties,
        version: None,
    }
}

fn listed(items: &BTreeSet<String>) -> Value {
    Value::Array(items.iter().take(MAX_LISTED).map(|s| Value::String(s.clone())).collect())
}

/// Builds the desired graph of a resolved project. `root_name` names the root directory node.
pub fn build(resolved: &Resolved, root_name: &str) -> DesiredGraph {
    build_reusing(resolved, root_name, &[], &mut BuildCache::default())
}

/// One file's entities as last built, and what they were built from.
#[derive(Clone, Debug)]
struct BuiltFile {
    facts: Arc<FileFacts>,
    inputs: u64,
    owned: Arc<Owned>,
    /// Nodes of this file dropped because they broke a limit (edges into them are dropped everywhere).
    bad_nodes: Vec<String>,
    dropped: u64,
}

/// The entities of each file from the previous build: a file whose facts and resolution results are the same
/// as then is not built again (watch mode rebuilds only the owners an edit affects).
#[derive(Clone, Debug, Default)]
pub struct BuildCache {
    files: HashMap<String, BuiltFile>,
}

impl BuildCache {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Builds the desired graph, reusing the entities of files whose inputs did not change since `cache` was filled,
/// and refills `cache`. `untouched` files are left as they are in Redis (they could not be analysed): only
/// their folders are kept.
pub fn build_reusing(resolved: &Resolved, root_name: &str, untouched: &[&str], cache: &mut BuildCache) -> DesiredGraph {
    let built: Vec<BuiltFile> = (0..resolved.files.len())
        .into_par_iter()
        .map(|fi| {
            let f = &resolved.files[fi];
            let inputs = inputs_of(resolved, fi);
            match cache.files.get(&f.path) {
                Some(b) if b.inputs == inputs && Arc::ptr_eq(&b.facts, &f.facts) => b.clone(),
                _ => {
                    let (owned, bad_nodes, dropped) = validated(file_entities(resolved, fi));
                    BuiltFile { facts: f.facts.clone(), inputs, owned: Arc::new(owned), bad_nodes, dropped }
                }
            }
        })
        .collect();
    let mut owners: BTreeMap<Owner, Arc<Owned>> = BTreeMap::new();
    let mut bad_nodes: BTreeSet<&str> = BTreeSet::new();
    let mut invalid = 0;
    for (f, b) in resolved.files.iter().zip(&built) {
        owners.insert(file_owner(&f.path), b.owned.clone());
        bad_nodes.extend(b.bad_nodes.iter().map(String::as_str));
        invalid += b.dropped;
    }
    if !bad_nodes.is_empty() {
        for owned in owners.values_mut() {
            if owned
                .rels
                .values()
                .any(|r| bad_nodes.contains(r.source.as_str()) || bad_nodes.contains(r.target.as_str()))
            {
                let owned = Arc::make_mut(owned);
                let before = owned.rels.len();
                owned
                    .rels
                    .retain(|_, r| !bad_nodes.contains(r.source.as_str()) && !bad_nodes.contains(r.target.as_str()));
                invalid += (before - owned.rels.len()) as u64;
            }
        }
    }
    add_directories(
        &mut owners,
        resolved.files.iter().map(|f| f.path.as_str()).chain(untouched.iter().copied()),
        root_name,
    );
    cache.files = resolved.files.iter().zip(built).map(|(f, b)| (f.path.clone(), b)).collect();
    DesiredGraph { owners, invalid }
}

/// A digest of everything a file's entities are built from besides its facts: the resolution results, with
/// each target named by path and qualified name (indexes change when other files come and go).
fn inputs_of(resolved: &Resolved, fi: usize) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let def = |h: &mut xxhash_rust::xxh3::Xxh3, d: DefRef| {
        let f = &resolved.files[d.file as usize];
        f.path.hash(h);
        f.facts.definitions[d.def as usize].qualified.hash(h);
    };
    let links: &FileLinks = &resolved.links[fi];
    for (target, c) in &links.imports {
        match target {
            Target::Def(d) => def(&mut h, *d),
            Target::Files(files) => files.iter().for_each(|&f| resolved.files[f as usize].path.hash(&mut h)),
        }
        c.to_bits().hash(&mut h);
    }
    links.external_imports.hash(&mut h);
    for call in &links.calls {
        call.from.hash(&mut h);
        def(&mut h, call.to);
        call.confidence.to_bits().hash(&mut h);
    }
    let mut unresolved: Vec<_> = links.unresolved_calls.iter().collect();
    unresolved.sort_unstable_by_key(|(k, _)| **k);
    unresolved.hash(&mut h);
    for (d, to, relation, c) in &links.bases {
        d.hash(&mut h);
        def(&mut h, *to);
        relation.hash(&mut h);
        c.to_bits().hash(&mut h);
    }
    let mut unresolved: Vec<_> = links.unresolved_bases.iter().collect();
    unresolved.sort_unstable_by_key(|(k, _)| **k);
    unresolved.hash(&mut h);
    // Methods of a type declared in this file hang under that type.
    for di in 0..resolved.files[fi].facts.definitions.len() {
        if let Some(owner) = resolved.owners.get(&DefRef { file: fi as u32, def: di as u32 }) {
            di.hash(&mut h);
            def(&mut h, *owner);
        }
    }
    h.finish()
}

/// The id of a definition node.
fn def_id(resolved: &Resolved, d: DefRef) -> String {
    let f = &resolved.files[d.file as usize];
    format!("{}:{}:{}", f.language.id_prefix(), f.path, f.facts.definitions[d.def as usize].qualified)
}

/// Drops the entities of one owner that break a limit; returns it with the ids of the dropped nodes and how
/// many entities were dropped.
pub(crate) fn validated(mut owned: Owned) -> (Owned, Vec<String>, u64) {
    let mut bad = Vec::new();
    owned.nodes.retain(|id, n| {
        let ok = n.validate().is_ok();
        if !ok {
            bad.push(id.clone());
        }
        ok
    });
    let mut dropped = bad.len() as u64;
    owned.rels.retain(|_, r| {
        let ok = r.validate().is_ok() && !bad.contains(&r.source) && !bad.contains(&r.target);
        if !ok {
            dropped += 1;
        }
        ok
    });
    (owned, bad, dropped)
}

/// Which of a file's entities to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parts {
    All,
    Nodes,
    Relationships,
}

pub(crate) fn file_entities(resolved: &Resolved, fi: usize) -> Owned {
    file_parts(resolved, fi, Parts::All)
}

fn file_node(resolved: &Resolved, fi: usize, fid: &str) -> Node {
    let f = &resolved.files[fi];
    let links = &resolved.links[fi];
    let path = f.path.as_str();
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut file_node = node(fid.to_owned(), "file", name, Some(path), Some((1, f.facts.lines.max(1))));
    file_node.properties.insert("language".into(), json!(f.language.name()));
    if f.facts.syntax_errors > 0 {
        file_node.properties.insert("syntax_errors".into(), json!(f.facts.syntax_errors));
    }
    if !links.external_imports.is_empty() {
        file_node.properties.insert("external_imports".into(), listed(&links.external_imports));
    }
    if let Some(u) = links.unresolved_calls.get(&None) {
        file_node.properties.insert("unresolved_calls".into(), listed(u));
    }
    file_node
}

fn definition_node(resolved: &Resolved, fi: usize, di: usize, id: &str) -> Node {
    let f = &resolved.files[fi];
    let links = &resolved.links[fi];
    let d = &f.facts.definitions[di];
    let mut n = node(id.to_owned(), d.kind.node_kind(), &d.name, Some(&f.path), Some((d.line_start, d.line_end)));
    n.properties.insert("qualified_name".into(), json!(d.qualified));
    if let Some(s) = d.subkind {
        n.properties.insert("subkind".into(), json!(s));
    }
    if let Some(t) = &d.owner_type {
        n.properties.insert("owner_type".into(), json!(t));
    }
    if let Some(u) = links.unresolved_calls.get(&Some(di as u32)) {
        n.properties.insert("unresolved_calls".into(), listed(u));
    }
    if let Some(u) = links.unresolved_bases.get(&(di as u32)) {
        n.properties.insert("unresolved_bases".into(), listed(u));
    }
    n
}

/// A file's nodes, relationships or both (as [`file_entities`] builds them).
pub(crate) fn file_parts(resolved: &Resolved, fi: usize, parts: Parts) -> Owned {
    let (nodes, rels) = (parts != Parts::Relationships, parts != Parts::Nodes);
    let f = &resolved.files[fi];
    let prefix = f.language.id_prefix();
    let ids: Vec<String> = f.facts.definitions.iter().map(|d| format!("{prefix}:{}:{}", f.path, d.qualified)).collect();
    let id_of = |d: DefRef| def_id(resolved, d);
    let links = &resolved.links[fi];
    let path = f.path.as_str();
    let fid = file_id(path);
    let mut out = Owned::default();
    if nodes {
        out.nodes.insert(fid.clone(), file_node(resolved, fi, &fid));
    }
    if rels {
        let r = rel(&dir_id(parent_dir(path)), "contains", &fid, None);
        out.rels.insert(r.id.clone(), r);
    }
    for (di, d) in f.facts.definitions.iter().enumerate() {
        let id = &ids[di];
        if nodes {
            out.nodes.insert(id.clone(), definition_node(resolved, fi, di, id));
        }
        if rels {
            // The structural parent: the enclosing definition, the type of an impl in this file, or the file.
            let me = DefRef { file: fi as u32, def: di as u32 };
            let parent = match (d.parent, resolved.owners.get(&me)) {
                (Some(p), _) => ids[p].clone(),
                (None, Some(owner)) if owner.file == me.file => ids[owner.def as usize].clone(),
                _ => fid.clone(),
            };
            let r = rel(&parent, "defines", id, None);
            out.rels.insert(r.id.clone(), r);
        }
    }
    if !rels {
        return out;
    }
    let mut weighted: HashMap<(String, &'static str, String), f64> = HashMap::new();
    let mut add = |source: String, t: &'static str, target: String, c: f64| {
        let e = weighted.entry((source, t, target)).or_insert(0.0);
        *e = e.max(c);
    };
    for (target, c) in &links.imports {
        match target {
            Target::Def(d) => add(fid.clone(), "imports", id_of(*d), *c),
            Target::Files(files) => {
                for &other in files {
                    if other as usize != fi {
                        add(fid.clone(), "imports", file_id(&resolved.files[other as usize].path), *c);
                    }
                }
            }
        }
    }
    for call in &links.calls {
        let source = call.from.map(|d| ids[d as usize].clone()).unwrap_or_else(|| fid.clone());
        add(source, "calls", id_of(call.to), call.confidence);
    }
    for (d, to, relation, c) in &links.bases {
        add(ids[*d as usize].clone(), relation.rel_type(), id_of(*to), *c);
    }
    for ((source, t, target), c) in weighted {
        let r = rel(&source, t, &target, Some(c));
        out.rels.insert(r.id.clone(), r);
    }
    out
}

/// Directory nodes for every folder that holds an analysed file, each `contains` its children.
pub fn add_directories<'p>(owners: &mut BTreeMap<Owner, Arc<Owned>>, paths: impl Iterator<Item = &'p str>, root: &str) {
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for p in paths {
        let mut d = parent_dir(p);
        loop {
            if !dirs.insert(d.to_owned()) || d == "." {
                break;
            }
            d = parent_dir(d);
        }
    }
    for d in dirs {
        let name = if d == "." { root } else { d.rsplit('/').next().unwrap_or(&d) };
        let id = dir_id(&d);
        let mut owned = Owned::default();
        let mut n = node(id.clone(), "directory", name, None, None);
        n.properties.insert("path".into(), json!(d));
        owned.nodes.insert(id.clone(), n);
        if d != "." {
            let r = rel(&dir_id(parent_dir(&d)), "contains", &id, None);
            owned.rels.insert(r.id.clone(), r);
        }
        owners.insert(dir_owner(&d), Arc::new(owned));
    }
}

/// Whether a node kind comes from a definition (for counting).
pub fn is_definition_kind(kind: &str) -> bool {
    [DefKind::Module, DefKind::Class, DefKind::Function, DefKind::Method].iter().any(|k| k.node_kind() == kind)
}
