//! Pass 2's index of the whole project: which files provide which module, and which names each file and each
//! type defines. Built once from every file's facts, read by [`crate::resolve`].

use std::collections::HashMap;

use crate::{
    facts::{DefKind, FileFacts},
    lang::{Family, Language},
};

/// A definition: file index and definition index within its facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefRef {
    pub file: u32,
    pub def: u32,
}

/// One analysed file as pass 2 sees it.
#[derive(Debug)]
pub struct SourceFile {
    pub path: String,
    pub language: Language,
    pub facts: std::sync::Arc<FileFacts>,
}

/// Files registered under one module path: by their full path, or only by a suffix of it.
#[derive(Debug, Default)]
struct ModuleEntry {
    full: Vec<u32>,
    suffix: Vec<u32>,
}

/// The files providing one module path, and how sure the match is.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleMatch {
    pub files: Vec<u32>,
    pub confidence: f64,
}

#[derive(Debug, Default)]
pub struct SymbolTable {
    modules: HashMap<(Family, Vec<String>), ModuleEntry>,
    /// Per file: top-level name → definition.
    top: Vec<HashMap<String, u32>>,
    /// Per definition: child name → definition (methods of a class, items of a module, nested functions).
    children: HashMap<DefRef, HashMap<String, u32>>,
    /// Members of a type declared outside it (Rust `impl`, Go receivers), filled by [`SymbolTable::add_member`].
    outside_members: HashMap<DefRef, HashMap<String, DefRef>>,
}

impl SymbolTable {
    /// Indexes definitions and module paths (members declared outside their type come later, once names
    /// can be resolved).
    pub fn build(files: &[SourceFile]) -> Self {
        let mut table = SymbolTable { top: Vec::with_capacity(files.len()), ..Default::default() };
        for (i, f) in files.iter().enumerate() {
            let i = i as u32;
            let family = f.language.family();
            let module = &f.facts.module;
            table.modules.entry((family, module.clone())).or_default().full.push(i);
            if f.facts.module_suffixes {
                for start in 1..module.len() {
                    table.modules.entry((family, module[start..].to_vec())).or_default().suffix.push(i);
                }
            }
            let mut top = HashMap::new();
            for (d, def) in f.facts.definitions.iter().enumerate() {
                let d = d as u32;
                match def.parent {
                    None if def.owner_type.is_none() => {
                        top.entry(def.name.clone()).or_insert(d);
                    }
                    None => {}
                    Some(p) => {
                        table
                            .children
                            .entry(DefRef { file: i, def: p as u32 })
                            .or_default()
                            .entry(def.name.clone())
                            .or_insert(d);
                    }
                }
            }
            table.top.push(top);
        }
        table
    }

    /// Registers `member` as a member of type `owner` (declared elsewhere).
    pub fn add_member(&mut self, owner: DefRef, name: &str, member: DefRef) {
        self.outside_members.entry(owner).or_default().entry(name.to_owned()).or_insert(member);
    }

    /// The files that provide `path` exactly (by full path, or by a unique suffix).
    pub fn module(&self, family: Family, path: &[String], shared: impl Fn(u32) -> bool) -> Option<ModuleMatch> {
        let entry = self.modules.get(&(family, path.to_vec()))?;
        if entry.full.len() == 1 || (!entry.full.is_empty() && entry.full.iter().all(|&f| shared(f))) {
            return Some(ModuleMatch { files: entry.full.clone(), confidence: 1.0 });
        }
        if entry.full.is_empty() && entry.suffix.len() == 1 {
            return Some(ModuleMatch { files: entry.suffix.clone(), confidence: 0.9 });
        }
        None
    }

    pub fn top_level(&self, file: u32, name: &str) -> Option<DefRef> {
        self.top[file as usize].get(name).map(|&def| DefRef { file, def })
    }

    /// A member of a definition: declared inside it, or (for types) declared outside it.
    pub fn child(&self, of: DefRef, name: &str) -> Option<DefRef> {
        if let Some(&def) = self.children.get(&of).and_then(|c| c.get(name)) {
            return Some(DefRef { file: of.file, def });
        }
        self.outside_members.get(&of).and_then(|m| m.get(name)).copied()
    }

    /// Whether a definition is a type, a function or a module.
    pub fn kind(files: &[SourceFile], d: DefRef) -> DefKind {
        files[d.file as usize].facts.definitions[d.def as usize].kind
    }
}
