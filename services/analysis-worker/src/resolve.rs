//! Pass 2: links every file's imports, calls and base types through the project's [`SymbolTable`].
//!
//! Order: the table of definitions (pass 1 output) → each file's import bindings → members declared outside
//! their type (Rust `impl`, Go receivers) → base types → calls. A name is linked only when the language's own
//! scoping rules lead to exactly one definition in the project; anything else stays unresolved, by name, on the
//! caller — never linked to a guess.

use std::collections::{BTreeSet, HashMap};

use rayon::prelude::*;

use crate::{
    facts::{BaseRelation, Callee, DefKind, Import},
    lang::{analyzer, Family},
    symbols::{DefRef, SourceFile, SymbolTable},
};

/// How deep re-exports and base classes are followed.
const MAX_DEPTH: u32 = 6;
/// Confidence of a member found on a base type rather than the type itself.
const VIA_BASE: f64 = 0.8;

/// What an import or a name leads to.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A module: one file, or every file of a package.
    Files(Vec<u32>),
    Def(DefRef),
}

/// A name bound in a file by an import.
#[derive(Clone, Debug)]
struct Binding {
    /// The canonical path the import names (module, then symbol).
    path: Vec<String>,
    target: Option<(Target, f64)>,
}

#[derive(Debug, Default)]
struct FileBindings {
    names: HashMap<String, Binding>,
    wildcards: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// Caller or subtype definition (`None`: the file itself).
    pub from: Option<u32>,
    pub to: DefRef,
    pub confidence: f64,
}

/// Counts of calls, for the resolution rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub resolved: u64,
    pub unresolved: u64,
}

/// Everything pass 2 found for one file.
#[derive(Debug, Default)]
pub struct FileLinks {
    pub imports: Vec<(Target, f64)>,
    /// Imports that lead outside the project (as written).
    pub external_imports: BTreeSet<String>,
    pub calls: Vec<Link>,
    /// Calls left unresolved, per caller (`None`: module level), as written.
    pub unresolved_calls: HashMap<Option<u32>, BTreeSet<String>>,
    pub bases: Vec<(u32, DefRef, BaseRelation, f64)>,
    pub unresolved_bases: HashMap<u32, BTreeSet<String>>,
    pub counts: CallCounts,
}

/// The whole project after pass 2.
pub struct Resolved {
    pub files: Vec<SourceFile>,
    pub links: Vec<FileLinks>,
    /// Methods declared outside their type → that type, when it is in the project.
    pub owners: HashMap<DefRef, DefRef>,
    /// `(file, type)`: a file that gives a base to a type defined in another file (the edge is the type's file's).
    pub foreign_sites: Vec<(u32, DefRef)>,
}

/// A file's base-type links (`(type, base, relation, confidence)`) and the bases it could not resolve.
type BaseLinks = (Vec<(u32, DefRef, BaseRelation, f64)>, HashMap<u32, BTreeSet<String>>);

/// A base given to a type outside the type's file: `(type, base, relation, confidence)`.
type ForeignLink = (DefRef, DefRef, BaseRelation, f64);

/// Runs pass 2 over every file (in parallel where files are independent).
pub fn resolve(files: Vec<SourceFile>) -> Resolved {
    let mut table = SymbolTable::build(&files);
    let bindings: Vec<FileBindings> = {
        let r =
            Resolver { files: &files, table: &table, bindings: &[], bases: &HashMap::new(), owners: &HashMap::new() };
        (0..files.len() as u32).into_par_iter().map(|f| r.bindings_of(f)).collect()
    };
    let mut owners = HashMap::new();
    {
        let mut found = Vec::new();
        let r = Resolver { files: &files, table: &table, bindings: &bindings, bases: &HashMap::new(), owners: &owners };
        for (fi, f) in files.iter().enumerate() {
            for (di, d) in f.facts.definitions.iter().enumerate() {
                let Some(owner) = &d.owner_type else { continue };
                let (fi, di) = (fi as u32, di as u32);
                if let Some((owner, _)) = r.lookup_name(fi, None, owner).filter(|(o, _)| r.is_class(*o)) {
                    found.push((owner, d.name.clone(), DefRef { file: fi, def: di }));
                }
            }
        }
        for (owner, name, member) in found {
            table.add_member(owner, &name, member);
            owners.insert(member, owner);
        }
    }
    let mut base_links: Vec<BaseLinks> = {
        let r = Resolver { files: &files, table: &table, bindings: &bindings, bases: &HashMap::new(), owners: &owners };
        (0..files.len() as u32).into_par_iter().map(|f| r.bases_of(f)).collect()
    };
    // Bases given in one file to a type of another (Rust `impl Trait for Type`): the edge leaves the type, so it
    // belongs with the type's file.
    let foreign: Vec<(u32, Vec<ForeignLink>)> = {
        let r = Resolver { files: &files, table: &table, bindings: &bindings, bases: &HashMap::new(), owners: &owners };
        (0..files.len() as u32).into_par_iter().map(|f| (f, r.foreign_bases_of(f))).collect()
    };
    let mut foreign_sites = Vec::new();
    for (site, found) in foreign {
        for (ty, base, relation, c) in found {
            foreign_sites.push((site, ty));
            let links = &mut base_links[ty.file as usize].0;
            if !links.iter().any(|(d, b, rel, _)| *d == ty.def && *b == base && *rel == relation) {
                links.push((ty.def, base, relation, c));
            }
        }
    }
    let mut bases: HashMap<DefRef, Vec<DefRef>> = HashMap::new();
    for (fi, (links, _)) in base_links.iter().enumerate() {
        for (def, to, _, _) in links {
            bases.entry(DefRef { file: fi as u32, def: *def }).or_default().push(*to);
        }
    }
    let links: Vec<FileLinks> = {
        let r = Resolver { files: &files, table: &table, bindings: &bindings, bases: &bases, owners: &owners };
        base_links
            .into_par_iter()
            .enumerate()
            .map(|(f, (base_list, unresolved_bases))| {
                let mut l = r.calls_and_imports_of(f as u32);
                l.bases = base_list;
                l.unresolved_bases = unresolved_bases;
                l
            })
            .collect()
    };
    Resolved { files, links, owners, foreign_sites }
}

struct Resolver<'a> {
    files: &'a [SourceFile],
    table: &'a SymbolTable,
    bindings: &'a [FileBindings],
    bases: &'a HashMap<DefRef, Vec<DefRef>>,
    owners: &'a HashMap<DefRef, DefRef>,
}

impl Resolver<'_> {
    fn family(&self, file: u32) -> Family {
        self.files[file as usize].language.family()
    }

    fn def(&self, d: DefRef) -> &crate::facts::Definition {
        &self.files[d.file as usize].facts.definitions[d.def as usize]
    }

    fn is_class(&self, d: DefRef) -> bool {
        self.def(d).kind == DefKind::Class
    }

    fn is_callable(&self, d: DefRef) -> bool {
        matches!(self.def(d).kind, DefKind::Function | DefKind::Method | DefKind::Class)
    }

    /// The files that provide a module path, or a definition inside one (longest module prefix first).
    fn resolve_path(&self, family: Family, path: &[String], depth: u32) -> Option<(Target, f64)> {
        if depth > MAX_DEPTH {
            return None;
        }
        for k in (1..=path.len()).rev() {
            let shared = |f: u32| self.files[f as usize].facts.shared_module;
            let Some(m) = self.table.module(family, &path[..k], shared) else { continue };
            let rest = &path[k..];
            if rest.is_empty() {
                return Some((Target::Files(m.files), m.confidence));
            }
            for &f in &m.files {
                if let Some((t, c)) = self.lookup_in_file(f, rest, depth + 1) {
                    return Some((t, c * m.confidence));
                }
            }
            return None;
        }
        None
    }

    /// `rest[0]` as the file defines or re-exports it, then `rest[1..]` as its members.
    fn lookup_in_file(&self, file: u32, rest: &[String], depth: u32) -> Option<(Target, f64)> {
        let (first, tail) = rest.split_first()?;
        let (mut target, confidence) = match self.table.top_level(file, first) {
            Some(d) => (Target::Def(d), 1.0),
            None => self.reexport(file, first, depth)?,
        };
        for seg in tail {
            target = match target {
                Target::Def(d) => Target::Def(self.table.child(d, seg)?),
                Target::Files(files) => {
                    let family = self.family(files[0]);
                    let module = &self.files[files[0] as usize].facts.module;
                    let mut p = module.clone();
                    p.push(seg.clone());
                    self.resolve_path(family, &p, depth + 1)?.0
                }
            };
        }
        Some((target, confidence))
    }

    /// A name a file imports (and so exports again, as Python packages and JS index files do).
    fn reexport(&self, file: u32, name: &str, depth: u32) -> Option<(Target, f64)> {
        if depth > MAX_DEPTH {
            return None;
        }
        let facts = &self.files[file as usize].facts;
        let family = self.family(file);
        for import in facts.imports.iter().filter(|i| i.local.as_deref() == Some(name)) {
            if let Some(found) = self.resolve_import(family, import, depth + 1) {
                return Some(found);
            }
        }
        for import in facts.imports.iter().filter(|i| i.local.is_none()) {
            if let Some((Target::Files(files), c)) = self.resolve_import(family, import, depth + 1) {
                for f in files {
                    if let Some(d) = self.table.top_level(f, name) {
                        return Some((Target::Def(d), c));
                    }
                }
            }
        }
        None
    }

    fn resolve_import(&self, family: Family, import: &Import, depth: u32) -> Option<(Target, f64)> {
        self.resolve_import_path(family, import, depth).map(|(t, c, _)| (t, c))
    }

    /// As [`Self::resolve_import`], with the full path (module candidate, then name) that matched.
    fn resolve_import_path(&self, family: Family, import: &Import, depth: u32) -> Option<(Target, f64, Vec<String>)> {
        import.candidates.iter().find_map(|module| {
            let mut p = module.clone();
            if let Some(name) = &import.name {
                p.push(name.clone());
            }
            self.resolve_path(family, &p, depth).map(|(t, c)| (t, c, p))
        })
    }

    fn bindings_of(&self, file: u32) -> FileBindings {
        let family = self.family(file);
        let mut out = FileBindings::default();
        for import in &self.files[file as usize].facts.imports {
            let found = self.resolve_import_path(family, import, 0);
            let (target, path) = match found {
                Some((t, c, p)) => (Some((t, c)), p),
                None => {
                    let mut p = import.candidates.first().cloned().unwrap_or_default();
                    p.extend(import.name.iter().cloned());
                    (None, p)
                }
            };
            match &import.local {
                Some(local) => {
                    let keep = target.is_some() || !out.names.contains_key(local);
                    if keep {
                        out.names.insert(local.clone(), Binding { path, target });
                    }
                }
                None => {
                    if let Some((Target::Files(files), _)) = target {
                        out.wildcards.extend(files);
                    }
                }
            }
        }
        out
    }

    /// A bare name as seen from inside `scope` of `file`: enclosing definitions, the file, its package, its
    /// imports, wildcard imports.
    fn lookup_name(&self, file: u32, scope: Option<u32>, name: &str) -> Option<(DefRef, f64)> {
        let facts = &self.files[file as usize].facts;
        let implicit = analyzer(self.files[file as usize].language).implicit_members();
        let mut at = scope;
        while let Some(s) = at {
            let d = DefRef { file, def: s };
            if self.is_class(d) {
                if implicit {
                    if let Some(found) = self.member(d, name, 0) {
                        return Some(found);
                    }
                }
            } else if let Some(c) = self.table.child(d, name) {
                return Some((c, 1.0));
            }
            at = facts.definitions[s as usize].parent.map(|p| p as u32);
        }
        if let Some(d) = self.table.top_level(file, name) {
            return Some((d, 1.0));
        }
        if facts.shared_module {
            let shared = |f: u32| self.files[f as usize].facts.shared_module;
            if let Some(m) = self.table.module(self.family(file), &facts.module, shared) {
                if let Some(d) = m.files.iter().find_map(|&f| self.table.top_level(f, name)) {
                    return Some((d, 1.0));
                }
            }
        }
        let b = self.bindings.get(file as usize)?;
        if let Some(Binding { target: Some((Target::Def(d), c)), .. }) = b.names.get(name) {
            return Some((*d, *c));
        }
        b.wildcards.iter().find_map(|&f| self.table.top_level(f, name)).map(|d| (d, 1.0))
    }

    /// A member of a type, on the type itself or (less surely) on one of its bases.
    fn member(&self, class: DefRef, name: &str, depth: u32) -> Option<(DefRef, f64)> {
        if let Some(m) = self.table.child(class, name) {
            return Some((m, if depth == 0 { 1.0 } else { VIA_BASE }));
        }
        if depth >= MAX_DEPTH {
            return None;
        }
        self.bases.get(&class)?.iter().find_map(|&b| self.member(b, name, depth + 1))
    }

    /// A member found on the bases of a type (in the order they are written): surely the one meant when the
    /// type has one base, less surely with several.
    fn base_member(&self, class: DefRef, name: &str) -> Option<(DefRef, f64)> {
        let bases = self.bases.get(&class)?;
        let depth = if bases.len() == 1 { 0 } else { 1 };
        bases.iter().find_map(|&b| self.member(b, name, depth))
    }

    /// The type whose member a definition is: its enclosing class, or the type of an `impl`/receiver.
    fn enclosing_type(&self, file: u32, mut at: Option<u32>) -> Option<DefRef> {
        while let Some(s) = at {
            let d = DefRef { file, def: s };
            if self.is_class(d) {
                return Some(d);
            }
            if let Some(owner) = self.owners.get(&d) {
                return Some(*owner);
            }
            at = self.def(d).parent.map(|p| p as u32);
        }
        None
    }

    /// A dotted path (`a.b.C`) as seen from `scope`: through an import binding, a local definition, or as an
    /// absolute path.
    fn lookup_path(&self, file: u32, scope: Option<u32>, path: &[String]) -> Option<(DefRef, f64)> {
        let family = self.family(file);
        if let [single] = path {
            return self.lookup_name(file, scope, single);
        }
        let b = &self.bindings[file as usize];
        // `import a.b.c` binds the whole dotted path.
        for k in (1..path.len()).rev() {
            let joined = path[..k].join(".");
            let Some(binding) = b.names.get(&joined) else { continue };
            let rest = &path[k..];
            if let Some((Target::Def(d), c)) = &binding.target {
                return self.members_along(*d, rest).map(|m| (m, *c));
            }
            let mut p = binding.path.clone();
            p.extend(rest.iter().cloned());
            return match self.resolve_path(family, &p, 0)? {
                (Target::Def(d), c) => Some((d, c)),
                _ => None,
            };
        }
        if let Some((d, c)) = self.lookup_name(file, scope, &path[0]) {
            return self.members_along(d, &path[1..]).map(|m| (m, c));
        }
        match self.resolve_path(family, path, 0)? {
            (Target::Def(d), c) => Some((d, c)),
            _ => None,
        }
    }

    fn members_along(&self, mut d: DefRef, rest: &[String]) -> Option<DefRef> {
        for seg in rest {
            d = if self.is_class(d) { self.member(d, seg, 0)?.0 } else { self.table.child(d, seg)? };
        }
        Some(d)
    }

    fn bases_of(&self, file: u32) -> BaseLinks {
        let mut found = Vec::new();
        let mut unresolved: HashMap<u32, BTreeSet<String>> = HashMap::new();
        for (di, d) in self.files[file as usize].facts.definitions.iter().enumerate() {
            for base in &d.bases {
                let scope = d.parent.map(|p| p as u32);
                match self.lookup_path(file, scope, &base.path).filter(|(t, _)| self.is_class(*t)) {
                    Some((to, c)) if to != (DefRef { file, def: di as u32 }) => {
                        found.push((di as u32, to, base.relation, c))
                    }
                    _ => {
                        unresolved.entry(di as u32).or_default().insert(base.path.join("."));
                    }
                }
            }
        }
        (found, unresolved)
    }

    /// The bases a file gives to types of other files, as `(type, base, relation, confidence)`; those that do
    /// not resolve to two types of the project are left out (there is no node of the file to carry them).
    fn foreign_bases_of(&self, file: u32) -> Vec<ForeignLink> {
        let mut out = Vec::new();
        for f in &self.files[file as usize].facts.foreign_bases {
            let Some((ty, c1)) = self.lookup_path(file, None, &f.type_path).filter(|(t, _)| self.is_class(*t)) else {
                continue;
            };
            let Some((base, c2)) = self.lookup_path(file, None, &f.base.path).filter(|(t, _)| self.is_class(*t)) else {
                continue;
            };
            if ty != base {
                out.push((ty, base, f.base.relation, c1.min(c2)));
            }
        }
        out
    }

    fn calls_and_imports_of(&self, file: u32) -> FileLinks {
        let facts = &self.files[file as usize].facts;
        let family = self.family(file);
        let mut out = FileLinks::default();
        for import in &facts.imports {
            match self.resolve_import(family, import, 0) {
                Some(t) => out.imports.push(t),
                None => {
                    out.external_imports.insert(import.text.clone());
                }
            }
        }
        for call in &facts.calls {
            let scope = call.caller.map(|c| c as u32);
            let found = match &call.callee {
                Callee::Name(n) => self.lookup_name(file, scope, n),
                Callee::SelfMember(n) => self.enclosing_type(file, scope).and_then(|t| self.member(t, n, 0)),
                Callee::SuperMember(n) => self.enclosing_type(file, scope).and_then(|t| self.base_member(t, n)),
                Callee::Qualified { receiver, name } => {
                    let mut p = receiver.clone();
                    p.push(name.clone());
                    self.lookup_path(file, scope, &p)
                }
                Callee::Dynamic(_) => None,
            };
            match found.filter(|(t, _)| self.is_callable(*t)) {
                Some((to, confidence)) => {
                    out.counts.resolved += 1;
                    out.calls.push(Link { from: scope, to, confidence });
                }
                None => {
                    out.counts.unresolved += 1;
                    out.unresolved_calls.entry(scope).or_default().insert(call.callee.display());
                }
            }
        }
        out
    }
}
