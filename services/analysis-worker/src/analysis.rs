//! The in-memory analysis of a whole directory: read, parse (pass 1, in parallel, reusing the facts of files
//! whose content did not change), resolve (pass 2), and build the desired graph. No I/O besides reading files.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rayon::prelude::*;

use crate::{
    desired::{self, DesiredGraph},
    discover::{discover, Discovered, FoundFile},
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
    /// Of the failed files, those whose graph from the previous run was kept (their facts were in memory).
    pub kept_previous: u64,
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
    /// Picking the files to read (each is read by the parser thread that parses it: reading is part of `parse`).
    pub load: Duration,
    pub parse: Duration,
    pub resolve: Duration,
    pub build: Duration,
}

/// The result of an in-memory analysis.
pub struct Analysis {
    pub resolved: Resolved,
    /// Empty until built ([`Analyzer::build`]; [`Analyzer::run`] builds it).
    pub graph: DesiredGraph,
    pub built: bool,
    /// The name of the root directory node.
    pub root_name: String,
    /// Path → content hash of every analysed file.
    pub hashes: BTreeMap<String, String>,
    pub report: Report,
    pub timings: Timings,
    /// Files that give bases to types of other files → those files, now and at the analyzer's previous run (an
    /// edit there changes the other files' edges).
    pub foreign_targets: BTreeMap<String, BTreeSet<String>>,
}

impl Analysis {
    /// Files that could not be analysed and of which nothing is known: what Redis holds of them stays.
    pub fn untouched(&self) -> Vec<&str> {
        self.report.failed.iter().map(|(p, _)| p.as_str()).filter(|p| !self.hashes.contains_key(*p)).collect()
    }
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

/// What changed in a folder since the last run, as a watcher saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changes {
    /// These paths (relative to the root, `/`-separated) and nothing else.
    Paths(BTreeSet<String>),
    /// Anything may have changed (an ignore file, a directory moved, events lost).
    Unknown,
}

/// Runs analyses; keeps the facts of the last one so a later run parses only files whose content changed, and
/// the entities built from them so only affected owners are built again. Told which paths changed (watch
/// mode), it also reads, hashes and stats only those.
#[derive(Default)]
pub struct Analyzer {
    cache: HashMap<String, Cached>,
    built: desired::BuildCache,
    /// The last discovery, and the root it was made in.
    found: Option<(PathBuf, Discovered)>,
    /// The root of the current run's discovery.
    root: Option<PathBuf>,
    /// The paths changed since the last run, when a watcher knows them exactly.
    changed: Option<BTreeSet<String>>,
    /// A watcher lost track since the last run: every file is read again.
    unknown: bool,
    /// [`Analysis::foreign_targets`] of the last run.
    foreign_targets: BTreeMap<String, BTreeSet<String>>,
    /// Build a fresh project's graph whole before writing it, as any other (see [`Self::streams_fresh`]).
    always_build: bool,
}

/// Reads the discovered files in parallel, setting aside binary and unreadable ones.
pub fn load(found: &Discovered, report: &mut Report) -> Vec<Loaded> {
    report.skipped_huge += found.huge;
    load_files(&found.files, report)
}

fn load_files(files: &[FoundFile], report: &mut Report) -> Vec<Loaded> {
    let results: Vec<Result<Loaded, (String, Option<String>)>> = files.par_iter().map(load_one).collect();
    let mut loaded = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(l) => loaded.push(l),
            Err((_, None)) => report.skipped_binary += 1,
            Err((path, Some(e))) => report.failed.push((path, e)),
        }
    }
    loaded
}

/// One file's parse: its facts, or why there are none (`Err((path, None))`: a binary file, skipped).
type Parsed = Result<(String, Cached), (String, Option<String>)>;

/// A file to analyse: read already (given by a caller), or read by the parser thread that parses it, so a run
/// holds the text of only the files being parsed (a fresh run of a large repository would otherwise hold
/// every file's text until the end of the analysis).
enum Source {
    Read(Loaded),
    Unread(FoundFile),
}

impl Source {
    fn path(&self) -> &str {
        match self {
            Self::Read(l) => &l.path,
            Self::Unread(f) => &f.path,
        }
    }

    /// The file's text; `Err((path, None))`: binary, skipped; `Err((path, Some(reason)))`: unreadable.
    fn load(self) -> Result<Loaded, (String, Option<String>)> {
        match self {
            Self::Read(l) => Ok(l),
            Self::Unread(f) => load_one(&f),
        }
    }
}

fn load_one(f: &FoundFile) -> Result<Loaded, (String, Option<String>)> {
    let bytes = std::fs::read(&f.abs).map_err(|e| (f.path.clone(), Some(format!("read: {e}"))))?;
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return Err((f.path.clone(), None));
    }
    let hash = content_hash(&bytes);
    // Source text in another encoding is a file that cannot be read, not a binary one to skip.
    let text = String::from_utf8(bytes).map_err(|e| (f.path.clone(), Some(format!("not UTF-8: {e}"))))?;
    Ok(Loaded { path: f.path.clone(), language: f.language, text, hash })
}

impl Analyzer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what a watcher saw change before the next run; until then, the analyzer trusts that every
    /// other file is as it was at the last run.
    pub fn note_changes(&mut self, changes: Changes) {
        match changes {
            Changes::Paths(paths) if !self.unknown => self.changed.get_or_insert_with(BTreeSet::new).extend(paths),
            Changes::Paths(_) => {}
            Changes::Unknown => {
                self.unknown = true;
                self.changed = None;
                self.found = None;
            }
        }
    }

    /// The source files under `root`: the last discovery updated with the changed paths when they are known
    /// and simple (edited or deleted files), otherwise a full walk (which still reads only the files that
    /// changed or are new, when the changes are known).
    pub fn discover(&mut self, root: &Path, max_file_bytes: u64) -> Discovered {
        self.root = Some(root.to_owned());
        if let (Some(changed), Some((last_root, found))) = (&self.changed, &self.found) {
            if last_root == root {
                if let Some(found) = updated(found, root, changed, max_file_bytes) {
                    return found;
                }
            }
        }
        discover(root, max_file_bytes)
    }

    /// Discovered files → desired graph. `root_name` names the root directory node. Files the analyzer knows
    /// to be unchanged (see [`Self::note_changes`]) are not read again.
    pub fn run(&mut self, found: &Discovered, root_name: &str, hooks: &Hooks) -> Result<Analysis, Cancelled> {
        let mut a = self.run_unbuilt(found, root_name, hooks)?;
        self.build(&mut a);
        Ok(a)
    }

    /// As [`Self::run`], without the desired graph: the files parsed and resolved. [`Self::build`] builds it; a
    /// fresh project is written without it, file by file ([`crate::fresh`]), so the whole graph is never in memory.
    pub fn run_unbuilt(&mut self, found: &Discovered, root_name: &str, hooks: &Hooks) -> Result<Analysis, Cancelled> {
        let started = Instant::now();
        let report = Report { skipped_huge: found.huge, ..Report::default() };
        let changed = self.changed.take();
        self.unknown = false;
        let (mut read, mut kept) = (Vec::new(), Vec::new());
        for f in &found.files {
            let unchanged = changed.as_ref().is_some_and(|c| !c.contains(&f.path))
                && self.cache.get(&f.path).is_some_and(|c| c.language == f.language);
            if unchanged {
                kept.push(f.path.clone());
            } else {
                read.push(f.clone());
            }
        }
        let sources = read.into_iter().map(Source::Unread).collect();
        let load_time = started.elapsed();
        let mut a = self.analyze_keeping(kept, sources, report, root_name, hooks)?;
        a.timings.load = load_time;
        self.found = self.root.take().map(|root| (root, found.clone()));
        Ok(a)
    }

    /// Parses (what changed), resolves and builds. Files are analysed in path order.
    pub fn analyze(
        &mut self,
        loaded: Vec<Loaded>,
        report: Report,
        root_name: &str,
        hooks: &Hooks,
    ) -> Result<Analysis, Cancelled> {
        let mut a =
            self.analyze_keeping(Vec::new(), loaded.into_iter().map(Source::Read).collect(), report, root_name, hooks)?;
        self.build(&mut a);
        Ok(a)
    }

    /// As [`Self::analyze`], plus the files in `kept`, known unchanged, with their facts from the last run. Files
    /// not read yet are read by the thread that parses them (their text is dropped once parsed).
    fn analyze_keeping(
        &mut self,
        kept: Vec<String>,
        mut sources: Vec<Source>,
        mut report: Report,
        root_name: &str,
        hooks: &Hooks,
    ) -> Result<Analysis, Cancelled> {
        let mut timings = Timings::default();
        let started = Instant::now();
        sources.sort_by(|a, b| a.path().cmp(b.path()));
        let done = AtomicUsize::new(0);
        let parsed: Vec<Parsed> = sources
            .into_par_iter()
            .map(|source| {
                if (hooks.cancelled)() {
                    return Err((source.path().to_owned(), Some("cancelled".into())));
                }
                let l = source.load()?;
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
                        .map_err(|e| (l.path.clone(), Some(e.to_string()))),
                };
                (hooks.on_file)(done.fetch_add(1, Ordering::Relaxed) + 1, &l.path);
                result
            })
            .collect();
        if (hooks.cancelled)() {
            return Err(Cancelled);
        }
        let total = done.load(Ordering::Relaxed);
        let (mut ok, mut failed) = (Vec::with_capacity(parsed.len() + kept.len()), Vec::new());
        for p in parsed {
            match p {
                Ok(entry) => ok.push(entry),
                Err((_, None)) => report.skipped_binary += 1,
                Err((path, Some(reason))) => failed.push((path, reason)),
            }
        }
        for (i, path) in kept.into_iter().enumerate() {
            let c = self.cache[&path].clone();
            (hooks.on_file)(total + i + 1, &path);
            ok.push((path, c));
        }
        // A file that cannot be read or parsed now keeps what the last run knew of it: its previous facts
        // (and hash), so its graph stays as it was. Without a previous run, sync leaves it untouched in Redis.
        failed.append(&mut report.failed);
        for (path, reason) in failed {
            if let Some(c) = self.cache.get(&path) {
                report.kept_previous += 1;
                ok.push((path.clone(), c.clone()));
            }
            report.failed.push((path, reason));
        }
        report.failed.sort();
        ok.sort_by(|a, b| a.0.cmp(&b.0));
        let mut cache = HashMap::with_capacity(ok.len());
        let mut files = Vec::with_capacity(ok.len());
        let mut hashes = BTreeMap::new();
        for (path, c) in ok {
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
        let mut foreign_targets = std::mem::take(&mut self.foreign_targets);
        let now = foreign_targets_of(&resolved);
        self.foreign_targets = now.clone();
        for (site, targets) in now {
            foreign_targets.entry(site).or_default().extend(targets);
        }
        let root_name = root_name.to_owned();
        let graph = DesiredGraph::default();
        Ok(Analysis { resolved, graph, built: false, root_name, hashes, report, timings, foreign_targets })
    }

    /// Builds the desired graph of an analysis made by [`Self::run_unbuilt`] (reusing the entities of files whose
    /// inputs did not change since the last build); a built analysis stays as it is.
    pub fn build(&mut self, analysis: &mut Analysis) {
        if analysis.built {
            return;
        }
        let started = Instant::now();
        let untouched = analysis.untouched();
        analysis.graph = desired::build_reusing(&analysis.resolved, &analysis.root_name, &untouched, &mut self.built);
        analysis.built = true;
        analysis.timings.build = started.elapsed();
    }

    /// Whether a job writes a fresh project's graph as it builds it ([`crate::fresh`]) rather than building it
    /// whole first: yes, unless this analyzer keeps the entities of an earlier build (a later build reuses them,
    /// and a project analysed before is rarely fresh) or was made [`Self::always_building`].
    pub fn streams_fresh(&self) -> bool {
        !self.always_build && self.built.is_empty()
    }

    /// An analyzer whose jobs build every graph whole before comparing it with Redis, a fresh project's too.
    pub fn always_building(mut self) -> Self {
        self.always_build = true;
        self
    }
}

/// `found` with the changed paths applied, or `None` when that needs a full walk (a new file, whose ignore
/// rules are not known here, a directory, an ignore file, a file grown past the limit).
fn updated(found: &Discovered, root: &Path, changed: &BTreeSet<String>, max_file_bytes: u64) -> Option<Discovered> {
    let mut found = Discovered { files: found.files.clone(), huge: found.huge };
    for path in changed {
        let name = path.rsplit('/').next().unwrap_or(path);
        if name == ".gitignore" || name == ".ignore" {
            return None;
        }
        let at = found.files.binary_search_by(|f| f.path.as_str().cmp(path));
        match (std::fs::symlink_metadata(root.join(path)), at) {
            (Ok(meta), Ok(i)) if meta.is_file() => {
                if meta.len() > max_file_bytes {
                    return None;
                }
                found.files[i].size = meta.len();
            }
            (Ok(meta), Err(_)) if meta.is_file() && Language::of_path(path).is_none() => {}
            (Err(_), Ok(i)) => {
                found.files.remove(i);
            }
            // Gone, and neither a known file nor a source file: a directory that moved or went away.
            (Err(_), Err(_)) if Language::of_path(path).is_some() => {}
            _ => return None,
        }
    }
    Some(found)
}

fn foreign_targets_of(resolved: &Resolved) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (site, ty) in &resolved.foreign_sites {
        let path = |f: u32| resolved.files[f as usize].path.clone();
        out.entry(path(*site)).or_default().insert(path(ty.file));
    }
    out
}

/// The name of the root directory node: the folder's own name.
pub fn root_name(root: &Path) -> String {
    root.file_name().and_then(|n| n.to_str()).unwrap_or("root").to_owned()
}
