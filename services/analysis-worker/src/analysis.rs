//! The in-memory analysis of a whole directory: read, parse (pass 1, in parallel, reusing the facts of files
//! whose content did not change), resolve (pass 2), and build the desired graph. No I/O besides reading files.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rayon::prelude::*;

use crate::{
    desired::{self, DesiredGraph},
    discover::{Discovered, FoundFile},
    facts::FileFacts,
    lang::{analyze_source, Language},
    resolve::{self, CallCounts, Resolved},
    symbols::SourceFile,
};

/// The content hash of a file as kept in Redis (`xxh3-128`, hex).
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// A file read from disk (or given by a test), ready to parse.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: String,
    pub language: Language,
    pub text: String,
    pub hash: String,
}

/// What happened to the files of one analysis.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub files: u64,
    pub lines: u64,
    pub skipped_binary: u64,
    pub skipped_huge: u64,
    /// Files that could not be read or parsed, with the reason (the analysis goes on without them).
    pub failed: Vec<(String, String)>,
    /// Files parsed with recoverable syntax errors.
    pub files_with_syntax_errors: u64,
    pub languages: BTreeMap<&'static str, u64>,
    pub calls: BTreeMap<&'static str, CallCounts>,
}

impl Report {
    pub fn skipped(&self) -> u64 {
        self.skipped_binary + self.skipped_huge
    }
}

/// Wall time of each step of an in-memory analysis (for benchmarks and logs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub load: Duration,
    pub parse: Duration,
    pub resolve: Duration,
    pub build: Duration,
}

/// The result of an in-memory analysis.
pub struct Analysis {
    pub resolved: Resolved,
    pub graph: DesiredGraph,
    /// Path → content hash of every analysed file.
    pub hashes: BTreeMap<String, String>,
    pub report: Report,
    pub timings: Timings,
}

/// Raised when a cancel request arrives during the analysis.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// What the caller wants to hear while files are parsed.
pub struct Hooks<'a> {
    /// Called after each file with the count done so far and its path (from parser threads).
    pub on_file: &'a (dyn Fn(usize, &str) + Sync),
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

impl Hooks<'_> {
    pub fn none() -> Hooks<'static> {
        Hooks { on_file: &|_, _| {}, cancelled: &|| false }
    }
}

#[derive(Clone)]
struct Cached {
    hash: String,
    language: Language,
    facts: Arc<FileFacts>,
}

/// Runs analyses; keeps the facts of the last one so a later run parses only files whose content changed.
#[derive(Default)]
pub struct Analyzer {
    cache: HashMap<String, Cached>,
}

/// Reads the discovered files in parallel, setting aside binary and unreadable ones.
pub fn load(found: &Discovered, report: &mut Report) -> Vec<Loaded> {
    let results: Vec<Result<Loaded, (String, Option<String>)>> = found.files.par_iter().map(load_one).collect();
    let mut loaded = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(l) => loaded.push(l),
            Err((_, None)) => report.skipped_binary += 1,
            Err((path, Some(e))) => report.failed.push((path, e)),
        }
    }
    report.skipped_huge += found.huge;
    loaded
}

fn load_one(f: &FoundFile) -> Result<Loaded, (String, Option<String>)> {
    let bytes = std::fs::read(&f.abs).map_err(|e| (f.path.clone(), Some(format!("read: {e}"))))?;
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return Err((f.path.clone(), None));
    }
    let hash = content_hash(&bytes);
    let text = String::from_utf8(bytes).map_err(|_| (f.path.clone(), None))?;
    Ok(Loaded { path: f.path.clone(), language: f.language, text, hash })
}

impl Analyzer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Discovered files → desired graph. `root_name` names the root directory node.
    pub fn run(&mut self, found: &Discovered, root_name: &str, hooks: &Hooks) -> Result<Analysis, Cancelled> {
        let started = Instant::now();
        let mut report = Report::default();
        let loaded = load(found, &mut report);
        let load_time = started.elapsed();
        let mut a = self.analyze(loaded, report, root_name, hooks)?;
        a.timings.load = load_time;
        Ok(a)
    }

    /// Parses (what changed), resolves and builds. Files are analysed in path order.
    pub fn analyze(
        &mut self,
        mut loaded: Vec<Loaded>,
        mut report: Report,
        root_name: &str,
        hooks: &Hooks,
    ) -> Result<Analysis, Cancelled> {
        let mut timings = Timings::default();
        let started = Instant::now();
        loaded.sort_by(|a, b| a.path.cmp(&b.path));
        let done = AtomicUsize::new(0);
        let parsed: Vec<Result<(String, Cached), (String, String)>> = loaded
            .par_iter()
            .map(|l| {
                if (hooks.cancelled)() {
                    return Err((l.path.clone(), "cancelled".into()));
                }
                let cached = self.cache.get(&l.path).filter(|c| c.hash == l.hash && c.language == l.language);
                let result = match cached {
                    Some(c) => Ok((l.path.clone(), c.clone())),
                    None => analyze_source(l.language, &l.path, &l.text)
                        .map(|facts| {
                            (
                                l.path.clone(),
                                Cached { hash: l.hash.clone(), language: l.language, facts: Arc::new(facts) },
                            )
                        })
                        .map_err(|e| (l.path.clone(), e.to_string())),
                };
                (hooks.on_file)(done.fetch_add(1, Ordering::Relaxed) + 1, &l.path);
                result
            })
            .collect();
        if (hooks.cancelled)() {
            return Err(Cancelled);
        }
        let mut cache = HashMap::with_capacity(parsed.len());
        let mut files = Vec::with_capacity(parsed.len());
        let mut hashes = BTreeMap::new();
        for p in parsed {
            match p {
                Ok((path, c)) => {
                    report.files += 1;
                    report.lines += c.facts.lines as u64;
                    *report.languages.entry(c.language.name()).or_default() += 1;
                    if c.facts.syntax_errors > 0 {
                        report.files_with_syntax_errors += 1;
                    }
                    hashes.insert(path.clone(), c.hash.clone());
                    files.push(SourceFile { path: path.clone(), language: c.language, facts: c.facts.clone() });
                    cache.insert(path, c);
                }
                Err(e) => report.failed.push(e),
            }
        }
        self.cache = cache;
        timings.parse = started.elapsed();
        let started = Instant::now();
        let resolved = resolve::resolve(files);
        for (f, l) in resolved.files.iter().zip(&resolved.links) {
            let c = report.calls.entry(f.language.name()).or_default();
            c.resolved += l.counts.resolved;
            c.unresolved += l.counts.unresolved;
        }
        timings.resolve = started.elapsed();
        let started = Instant::now();
        let graph = desired::build(&resolved, root_name);
        timings.build = started.elapsed();
        Ok(Analysis { resolved, graph, hashes, report, timings })
    }
}

/// The name of the root directory node: the folder's own name.
pub fn root_name(root: &Path) -> String {
    root.file_name().and_then(|n| n.to_str()).unwrap_or("root").to_owned()
}
