//! A symbol with its surroundings: the node, its containers up to the root directory (incoming `defines` and
//! `contains`), its direct members, its file and lines, and the source text of those lines.
//!
//! Source text is read only from inside the folder the analysis-worker analysed for the project: the canonical
//! root it reported in the newest `analysis_started` event among the stream's newest entries (a bounded search),
//! else the `path` of the project's newest completed queued job (a path the worker accepted under its allowed
//! roots), else the root of the stream's oldest entry when that is an `analysis_started` event (a project
//! analysed once from the command line). No key records a project's folder today; one written by the worker
//! would replace these searches. The node names
//! the file only relative to that root, and only a file the worker itself recorded (`file_hashes`, which no API
//! writes) is read; root and file are canonicalised and the file must stay inside the root, so neither `..`
//! nor a symbolic link leads out. A path written in a node is never opened as such.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};

use codegraph_shared::{
    event::STREAM_FIELD,
    graph::{Node, Relationship},
    http::ApiError,
    names::{RedisNames, JOB_PROJECTS_KEY},
};
use redis::aio::ConnectionLike;
use serde::Serialize;

use super::{Bounds, Reader, Resolution, Resolved, Side, SymbolRef, STRUCTURE_TYPES};

/// Most containers walked up (a deeper chain is a cycle or a pathological tree).
const MAX_CHAIN: usize = 64;
/// Most lines and bytes of source text in one answer.
const MAX_SOURCE_LINES: usize = 400;
const MAX_SOURCE_BYTES: usize = 64 * 1024;
/// Largest file read for its lines.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Newest stream entries (and bytes of them) searched for the analysis root, and how long the answer is
/// remembered (the search costs up to a few milliseconds; a project's folder rarely changes).
const ROOT_SEARCH_ENTRIES: usize = 2_000;
const ROOT_SEARCH_BYTES: usize = 2 * 1024 * 1024;
const ROOT_TTL: Duration = Duration::from_secs(30);
/// Most job records of the project looked at for the root.
const ROOT_SEARCH_JOBS: usize = 10_000;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SourceText {
    pub text: String,
    pub line_start: u32,
    pub line_end: u32,
    /// True when the lines were cut at 400 lines or 64 KiB.
    pub truncated: bool,
}

/// `GET /context`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SymbolContext {
    pub project: String,
    /// The whole node, with its properties and version.
    pub symbol: Node,
    pub resolution: Resolution,
    /// Nearest first: enclosing class or function, file, directories up to the root.
    pub containers: Vec<SymbolRef>,
    /// Direct members (outgoing `defines`/`contains`), by first line then id.
    pub members: Vec<SymbolRef>,
    pub members_truncated: bool,
    /// The file node holding the symbol (the symbol itself for a file).
    pub file: Option<SymbolRef>,
    /// The file's path relative to the analysed folder.
    pub path: Option<String>,
    pub line_start: Option<u32>,
    pub line_end: Option<u32>,
    pub source: Option<SourceText>,
    /// Why `source` is null, when it is.
    pub source_unavailable: Option<String>,
}

pub async fn context<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    symbol: Resolved,
    with_source: bool,
    members_limit: usize,
    bounds: Bounds,
) -> Result<SymbolContext, ApiError> {
    let node = symbol.node;
    let mut reader = Reader::new(conn, names, bounds.relationships);
    // One round trip for both sets of the symbol; then one per container up the chain.
    let sides = reader.adjacent(&[(node.id.as_str(), Side::Incoming), (node.id.as_str(), Side::Outgoing)]).await?;
    let (incoming, outgoing) = (&sides[0], &sides[1]);
    let mut chain: Vec<String> = Vec::new();
    let mut parent = match directory_chain(&mut reader, &node.id).await? {
        Some(dirs) => {
            chain = dirs;
            None
        }
        None => structural_parent(&mut reader, &node.id, incoming).await?,
    };
    while let Some(p) = parent {
        if p == node.id || chain.contains(&p) || chain.len() >= MAX_CHAIN {
            break;
        }
        chain.push(p.clone());
        // From the file up, the analysis-worker's directories are one read away when they are where its ids
        // say (each hop checked); otherwise, and below the file, one hop per round trip.
        if let Some(dirs) = directory_chain(&mut reader, &p).await? {
            chain.extend(dirs);
            break;
        }
        let ids = reader.adjacent(&[(p.as_str(), Side::Incoming)]).await?.remove(0);
        parent = structural_parent(&mut reader, &p, &ids).await?;
    }
    let mut member_ids: Vec<String> = reader
        .relationships(outgoing)
        .await?
        .into_iter()
        .filter(|r| r.source == node.id && STRUCTURE_TYPES.contains(&r.rel_type.as_str()))
        .map(|r| r.target)
        .collect();
    member_ids.sort_unstable();
    member_ids.dedup();
    let mut wanted = chain.clone();
    wanted.extend(member_ids.iter().cloned());
    let nodes = reader.nodes(&wanted).await?;
    let containers: Vec<SymbolRef> = chain.iter().filter_map(|id| nodes.get(id)).map(SymbolRef::from).collect();
    let mut members: Vec<SymbolRef> = member_ids.iter().filter_map(|id| nodes.get(id)).map(SymbolRef::from).collect();
    members.sort_by(|a, b| (a.line_start, &a.id).cmp(&(b.line_start, &b.id)));
    let members_truncated = members.len() > members_limit || reader.truncated;
    members.truncate(members_limit);
    let file = if node.kind == "file" {
        Some(SymbolRef::from(&node))
    } else {
        containers.iter().find(|c| c.kind == "file").cloned()
    };
    let (source, source_unavailable) = if !with_source {
        (None, Some("not asked for (source=false)".to_owned()))
    } else {
        match read_source(reader.conn(), names, &node).await? {
            Ok(s) => (Some(s), None),
            Err(why) => (None, Some(why)),
        }
    };
    Ok(SymbolContext {
        project: names.project().to_string(),
        path: node.file.clone(),
        line_start: node.line_start,
        line_end: node.line_end,
        resolution: symbol.resolution,
        containers,
        members,
        members_truncated,
        file,
        source,
        source_unavailable,
        symbol: node,
    })
}

/// When `file` is a file node `file:<path>`, the directories above it as the analysis-worker
/// writes them (`dir:<parent>` `contains` each child, up to `dir:.`), read in one `HMGET` of their derived
/// relationship ids and each checked (type, source, target); `None` when `file` is no such node or any hop is
/// not there, so the caller walks instead.
async fn directory_chain<C: ConnectionLike + Send>(
    reader: &mut Reader<'_, C>,
    file: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(path) = file.strip_prefix("file:").filter(|p| !p.is_empty()) else { return Ok(None) };
    let parent_dir = |p: &str| p.rsplit_once('/').map(|(d, _)| d.to_owned()).unwrap_or_else(|| ".".to_owned());
    let mut hops: Vec<(String, String)> = Vec::new();
    let (mut below, mut dir) = (file.to_owned(), parent_dir(path));
    loop {
        let id = format!("dir:{dir}");
        hops.push((id.clone(), below));
        if dir == "." || hops.len() >= MAX_CHAIN {
            break;
        }
        below = id;
        dir = parent_dir(&dir);
    }
    let ids: Vec<String> = hops.iter().map(|(d, b)| Relationship::derived_id(d, "contains", b)).collect();
    let rels = reader.relationships(&ids).await?;
    let checked = rels.len() == hops.len()
        && rels.iter().zip(&hops).all(|(r, (d, b))| r.rel_type == "contains" && &r.source == d && &r.target == b);
    Ok(checked.then(|| hops.into_iter().map(|(d, _)| d).collect()))
}

/// The node that `defines` or `contains` `child`, from the ids of its incoming set: the ids that look like a
/// structural relationship's derived id are read first, the rest only when none of those is one.
async fn structural_parent<C: ConnectionLike + Send>(
    reader: &mut Reader<'_, C>,
    child: &str,
    incoming: &[String],
) -> Result<Option<String>, ApiError> {
    let (likely, rest): (Vec<String>, Vec<String>) =
        incoming.iter().cloned().partition(|id| id.contains("|defines|") || id.contains("|contains|"));
    for ids in [likely, rest] {
        let rels: Vec<Relationship> = reader.relationships(&ids).await?;
        let mut parents: Vec<&Relationship> =
            rels.iter().filter(|r| r.target == child && STRUCTURE_TYPES.contains(&r.rel_type.as_str())).collect();
        // `defines` (the nearer, a class or file) before `contains` (a directory), then by id: deterministic.
        parents.sort_by(|a, b| (a.rel_type != "defines", &a.id).cmp(&(b.rel_type != "defines", &b.id)));
        if let Some(r) = parents.first() {
            return Ok(Some(r.source.clone()));
        }
    }
    Ok(None)
}

/// The source lines of `node`, or why there are none (the outer error is Redis's).
async fn read_source<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    node: &Node,
) -> Result<Result<SourceText, String>, ApiError> {
    let Some(file) = node.file.as_deref() else { return Ok(Err("the node names no file".into())) };
    let (Some(start), end) = (node.line_start, node.line_end) else {
        return Ok(Err("the node has no line numbers".into()));
    };
    let analysed: bool = redis::cmd("HEXISTS").arg(names.file_hashes()).arg(file).query_async(conn).await?;
    if !analysed {
        return Ok(Err("the node's file is not one the analysis-worker analysed".into()));
    }
    let Some(root) = analysed_root(conn, names).await? else {
        return Ok(Err(
            "the project's analysed folder is not recorded (no analysis_started event on its stream, no completed job)"
                .into(),
        ));
    };
    let end = end.unwrap_or(start).max(start);
    let file = file.to_owned();
    let read = tokio::task::spawn_blocking(move || lines_of(&root, &file, start, end))
        .await
        .map_err(|e| ApiError::internal(format!("source read failed: {e}")))?;
    Ok(read)
}

/// Lines `start..=end` (1-based) of `file` under `root`, both canonicalised, the file inside the root.
fn lines_of(root: &Path, file: &str, start: u32, end: u32) -> Result<SourceText, String> {
    let unreadable = |what: &str| format!("the analysed folder is not readable by graph-api ({what})");
    let root = root.canonicalize().map_err(|_| unreadable("its root does not exist here"))?;
    if Path::new(file).is_absolute() {
        return Err("the node's file is not relative to the analysed folder".into());
    }
    let path = root.join(file).canonicalize().map_err(|_| unreadable("the file does not exist here"))?;
    if !path.starts_with(&root) {
        return Err("the node's file lies outside the analysed folder".into());
    }
    let meta = std::fs::metadata(&path).map_err(|_| unreadable("the file cannot be read"))?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err("the node's file is not a regular file of at most 8 MiB".into());
    }
    let bytes = std::fs::read(&path).map_err(|_| unreadable("the file cannot be read"))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut out = String::new();
    let mut last = start.saturating_sub(1);
    let mut truncated = false;
    for (i, line) in text.lines().enumerate().skip(start as usize - 1).take((end - start + 1) as usize) {
        if i + 1 - start as usize >= MAX_SOURCE_LINES || out.len() + line.len() + 1 > MAX_SOURCE_BYTES {
            truncated = true;
            break;
        }
        out.push_str(line);
        out.push('\n');
        last = i as u32 + 1;
    }
    if last < start {
        return Err("the node's lines are past the end of the file (it changed since the analysis)".into());
    }
    Ok(SourceText { text: out, line_start: start, line_end: last, truncated })
}

/// A project's analysed folder (none known) and when it was looked up.
type KnownRoot = (Option<PathBuf>, Instant);

/// The folder last analysed for the project, remembered for a few seconds per project.
async fn analysed_root<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
) -> Result<Option<PathBuf>, ApiError> {
    static ROOTS: LazyLock<Mutex<HashMap<String, KnownRoot>>> = LazyLock::new(Default::default);
    let project = names.project().to_string();
    if let Some((root, at)) = ROOTS.lock().expect("roots lock").get(&project) {
        if at.elapsed() < ROOT_TTL {
            return Ok(root.clone());
        }
    }
    let mut root = root_from_stream(conn, names).await?;
    if root.is_none() {
        root = root_from_jobs(conn, names).await?;
    }
    if root.is_none() {
        root = root_from_first_entry(conn, names).await?;
    }
    let mut roots = ROOTS.lock().expect("roots lock");
    roots.retain(|_, (_, at)| at.elapsed() < ROOT_TTL);
    roots.insert(project, (root.clone(), Instant::now()));
    Ok(root)
}

/// `data.path` of the newest `analysis_started` event among the stream's newest entries: read newest first in
/// small steps, at most [`ROOT_SEARCH_ENTRIES`] entries and [`ROOT_SEARCH_BYTES`] (change sets can be large).
async fn root_from_stream<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
) -> Result<Option<PathBuf>, ApiError> {
    const STEP: usize = 16;
    let stream = names.cdc_stream();
    let (mut end, mut entries_read, mut bytes_read) = ("+".to_owned(), 0, 0);
    while entries_read < ROOT_SEARCH_ENTRIES && bytes_read < ROOT_SEARCH_BYTES {
        let entries: Vec<(String, Vec<(String, String)>)> =
            redis::cmd("XREVRANGE").arg(&stream).arg(&end).arg("-").arg("COUNT").arg(STEP).query_async(conn).await?;
        let Some((oldest, _)) = entries.last() else { return Ok(None) };
        for (_, fields) in &entries {
            for (field, value) in fields {
                bytes_read += value.len();
                if let Some(path) = (field == STREAM_FIELD).then(|| started_path(value)).flatten() {
                    return Ok(Some(path));
                }
            }
        }
        entries_read += entries.len();
        if entries.len() < STEP {
            return Ok(None);
        }
        end = format!("({oldest}");
    }
    Ok(None)
}

/// `data.path` of the stream's oldest entry when it is an `analysis_started` event: a project analysed once from
/// the command line (no job record names its folder) whose analysis wrote more than the newest-first search
/// reads.
async fn root_from_first_entry<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
) -> Result<Option<PathBuf>, ApiError> {
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(names.cdc_stream()).arg("-").arg("+").arg("COUNT").arg(1).query_async(conn).await?;
    Ok(entries
        .iter()
        .flat_map(|(_, fields)| fields)
        .find_map(|(field, value)| (field == STREAM_FIELD).then(|| started_path(value)).flatten()))
}

/// The `data.path` of an envelope that is an `analysis_started` event.
fn started_path(envelope: &str) -> Option<PathBuf> {
    // The envelope's own type is the first `"type":"` (a project name cannot hold a quote): decode only those.
    let i = envelope.find("\"type\":\"")?;
    if !envelope[i..].starts_with("\"type\":\"analysis_started\"") {
        return None;
    }
    let event: serde_json::Value = serde_json::from_str(envelope).ok()?;
    event["data"]["path"].as_str().map(PathBuf::from)
}

/// The `path` of the project's newest completed queued job.
async fn root_from_jobs<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
) -> Result<Option<PathBuf>, ApiError> {
    let project = names.project().as_str();
    let (mut cursor, mut scanned, mut jobs) = (0u64, 0usize, Vec::new());
    loop {
        let (next, flat): (u64, Vec<String>) =
            redis::cmd("HSCAN").arg(JOB_PROJECTS_KEY).arg(cursor).arg("COUNT").arg(1000).query_async(conn).await?;
        for kv in flat.chunks_exact(2) {
            if kv[1] == project {
                jobs.push(kv[0].clone());
            }
        }
        scanned += flat.len() / 2;
        cursor = next;
        if cursor == 0 || scanned >= ROOT_SEARCH_JOBS {
            break;
        }
    }
    if jobs.is_empty() {
        return Ok(None);
    }
    let mut pipe = redis::pipe();
    for job in &jobs {
        pipe.cmd("HMGET").arg(names.job(job)).arg("status").arg("path").arg("updated_at");
    }
    let records: Vec<(Option<String>, Option<String>, Option<String>)> = pipe.query_async(conn).await?;
    Ok(records
        .into_iter()
        .filter(|(status, path, _)| status.as_deref() == Some("completed") && path.is_some())
        .max_by(|a, b| a.2.cmp(&b.2))
        .and_then(|(_, path, _)| path.map(PathBuf::from)))
}

#[cfg(test)]
mod tests {
    use super::lines_of;

    #[test]
    fn lines_are_read_only_inside_the_root() {
        let base = std::env::temp_dir().join(format!("intel-lines-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/a.py"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(base.join("secret.txt"), "secret\n").unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link.txt")).unwrap();

        let text = lines_of(&root, "src/a.py", 2, 3).unwrap();
        assert_eq!((text.text.as_str(), text.line_start, text.line_end, text.truncated), ("two\nthree\n", 2, 3, false));
        // Through the root's own path written differently, still inside.
        assert_eq!(lines_of(&root.join("src/.."), "src/./a.py", 1, 1).unwrap().text, "one\n");
        for outside in ["../secret.txt", "link.txt", "src/../../secret.txt"] {
            let why = lines_of(&root, outside, 1, 1).unwrap_err();
            assert!(why.contains("outside the analysed folder"), "{outside}: {why}");
        }
        assert!(lines_of(&root, &base.join("secret.txt").display().to_string(), 1, 1).is_err());
        assert!(lines_of(&root, "src/a.py", 9, 12).unwrap_err().contains("past the end"));
        assert!(lines_of(&root, "src/missing.py", 1, 1).is_err());

        let long: String = (1..=1000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(root.join("long.py"), long).unwrap();
        let cut = lines_of(&root, "long.py", 1, 1000).unwrap();
        assert!(cut.truncated);
        assert_eq!(cut.line_end, 400);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
