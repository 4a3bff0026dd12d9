//! The languages the worker understands, each behind one [`LanguageAnalyzer`], one file per language.
//!
//! An analyzer parses one file with its tree-sitter grammar and returns [`FileFacts`]; it never looks at other
//! files. Adding a language is one new file here and one line in [`Language::ALL`] / [`analyzer`].

pub(crate) mod extractor;
pub mod go;
pub mod java;
pub mod javascript;
pub mod python;
pub mod rust;
pub mod typescript;

use std::{cell::RefCell, collections::HashMap};

pub use extractor::Extractor;

use crate::facts::FileFacts;

/// A language the worker can analyse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Language {
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Rust,
    Go,
    Java,
}

/// Languages whose files may import each other share one module namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Python,
    Ecma,
    Rust,
    Go,
    Java,
}

impl Language {
    pub const ALL: [Language; 7] =
        [Self::Python, Self::JavaScript, Self::TypeScript, Self::Tsx, Self::Rust, Self::Go, Self::Java];

    /// The language of a file, by its extension.
    pub fn of_path(path: &str) -> Option<Language> {
        let ext = path.rsplit_once('.')?.1;
        Some(match ext {
            "py" | "pyi" => Self::Python,
            "js" | "jsx" | "mjs" | "cjs" => Self::JavaScript,
            "ts" | "mts" | "cts" => Self::TypeScript,
            "tsx" => Self::Tsx,
            "rs" => Self::Rust,
            "go" => Self::Go,
            "java" => Self::Java,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::JavaScript => "javascript",
            Self::TypeScript => "typescript",
            Self::Tsx => "tsx",
            Self::Rust => "rust",
            Self::Go => "go",
            Self::Java => "java",
        }
    }

    /// The first part of the id of every definition node of the language (`py:src/app.py:App.run`).
    pub fn id_prefix(self) -> &'static str {
        match self {
            Self::Python => "py",
            Self::JavaScript => "js",
            Self::TypeScript => "ts",
            Self::Tsx => "tsx",
            Self::Rust => "rs",
            Self::Go => "go",
            Self::Java => "java",
        }
    }

    pub fn family(self) -> Family {
        match self {
            Self::Python => Family::Python,
            Self::JavaScript | Self::TypeScript | Self::Tsx => Family::Ecma,
            Self::Rust => Family::Rust,
            Self::Go => Family::Go,
            Self::Java => Family::Java,
        }
    }

    fn grammar(self) -> tree_sitter::Language {
        match self {
            Self::Python => tree_sitter_python::LANGUAGE.into(),
            Self::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Self::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Self::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Self::Rust => tree_sitter_rust::LANGUAGE.into(),
            Self::Go => tree_sitter_go::LANGUAGE.into(),
            Self::Java => tree_sitter_java::LANGUAGE.into(),
        }
    }
}

/// Why a file could not be analysed at all (a file with recoverable syntax errors is still analysed).
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("the {0} grammar could not be loaded: {1}")]
    Grammar(&'static str, String),
    #[error("the parser gave up on the file")]
    NoTree,
}

/// One language: parses a file and extracts its definitions, imports and calls.
pub trait LanguageAnalyzer: Send + Sync {
    fn language(&self) -> Language;

    /// Pass 1 for one file. `path` is relative to the analysed root, with `/` separators.
    fn extract(&self, path: &str, tree: &tree_sitter::Tree, source: &str) -> FileFacts;

    /// Whether a bare call `f()` inside a method may name a member of the enclosing type (Java's implicit
    /// `this`).
    fn implicit_members(&self) -> bool {
        false
    }
}

thread_local! {
    /// One parser per language per thread: a `Parser` is not `Sync`, and making one per file costs more.
    static PARSERS: RefCell<HashMap<Language, tree_sitter::Parser>> = RefCell::new(HashMap::new());
}

/// The analyzer of a language.
pub fn analyzer(language: Language) -> &'static dyn LanguageAnalyzer {
    match language {
        Language::Python => &python::Python,
        Language::JavaScript => &javascript::JavaScript,
        Language::TypeScript => &typescript::TypeScript { tsx: false },
        Language::Tsx => &typescript::TypeScript { tsx: true },
        Language::Rust => &rust::Rust,
        Language::Go => &go::Go,
        Language::Java => &java::Java,
    }
}

/// Parses and extracts one file.
pub fn analyze_source(language: Language, path: &str, source: &str) -> Result<FileFacts, ExtractError> {
    let tree = PARSERS.with(|cell| {
        let mut parsers = cell.borrow_mut();
        let parser = match parsers.entry(language) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                crate::alloc::route_tree_sitter();
                let mut p = tree_sitter::Parser::new();
                p.set_language(&language.grammar())
                    .map_err(|e| ExtractError::Grammar(language.name(), e.to_string()))?;
                v.insert(p)
            }
        };
        parser.parse(source, None).ok_or(ExtractError::NoTree)
    })?;
    let mut facts = analyzer(language).extract(path, &tree, source);
    facts.lines = source.lines().count() as u32;
    facts.syntax_errors = extractor::count_errors(tree.root_node());
    facts.disambiguate();
    Ok(facts)
}

#[cfg(test)]
pub(crate) mod fixture;
