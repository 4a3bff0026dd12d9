//! What pass 1 learns from one file, in a form every language shares: definitions, imports, calls and bases.
//!
//! A [`crate::lang::LanguageAnalyzer`] turns source text into [`FileFacts`] without looking at any other file;
//! pass 2 ([`crate::resolve`]) links them through the project's symbol table. Facts hold names as written plus
//! the module paths the language's import rules give them, never guesses.

/// The kind of a definition; each becomes a node kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefKind {
    /// An inline module or namespace (Rust `mod x { … }`, TypeScript `namespace X { … }`).
    Module,
    /// A class-like type; `subkind` says which (class, struct, trait, interface, enum, …).
    Class,
    Function,
    Method,
}

impl DefKind {
    pub fn node_kind(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Class => "class",
            Self::Function => "function",
            Self::Method => "method",
        }
    }
}

/// How a type names another it builds on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BaseRelation {
    Inherits,
    Implements,
}

impl BaseRelation {
    pub fn rel_type(self) -> &'static str {
        match self {
            Self::Inherits => "inherits",
            Self::Implements => "implements",
        }
    }
}

/// A base type as written: `path` is its name split on the language's separators (`a.B` → `["a", "B"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    pub path: Vec<String>,
    pub relation: BaseRelation,
}

/// One definition in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Definition {
    pub kind: DefKind,
    /// For classes: class, struct, trait, interface, enum, union, type, record, annotation.
    pub subkind: Option<&'static str>,
    pub name: String,
    /// Dotted path within the file (`App.run`), unique within the file (a repeated one gets `#2`, `#3`, …).
    pub qualified: String,
    /// Index of the enclosing definition in [`FileFacts::definitions`], if any.
    pub parent: Option<usize>,
    /// The type a method belongs to when it is declared outside that type (Rust `impl T`, Go receivers).
    pub owner_type: Option<String>,
    pub line_start: u32,
    pub line_end: u32,
    pub bases: Vec<Base>,
}

/// One import: `module` (segments) and optionally one `name` from it, bound locally as `local`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// Module paths to try, in order (several when the language allows more than one reading).
    pub candidates: Vec<Vec<String>>,
    /// A symbol imported from the module; `None` imports the module itself.
    pub name: Option<String>,
    /// The local binding (`None` for a wildcard import, which makes every top-level name of the module visible).
    pub local: Option<String>,
    pub line: u32,
    /// The import as written, for reporting the ones that stay outside the project.
    pub text: String,
}

/// What a call names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callee {
    /// `f()`.
    Name(String),
    /// `self.f()`, `this.f()`, `Self::f()`: a member of the enclosing type.
    SelfMember(String),
    /// `super().f()`: a member of a base of the enclosing type (the type's own member of that name is skipped).
    SuperMember(String),
    /// `a.b.f()`, `T::f()`, `pkg.F()`: `receiver` is the path before the last segment.
    Qualified { receiver: Vec<String>, name: String },
    /// The receiver is an expression the analyser cannot name (`f().g()`, `x[0].g()`); only `name` is known.
    Dynamic(String),
}

impl Callee {
    /// The call as written, for the `unresolved_calls` property.
    pub fn display(&self) -> String {
        match self {
            Self::Name(n) => n.clone(),
            Self::SelfMember(n) => format!("self.{n}"),
            Self::SuperMember(n) => format!("super().{n}"),
            Self::Qualified { receiver, name } => format!("{}.{name}", receiver.join(".")),
            Self::Dynamic(n) => format!("?.{n}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Index of the enclosing function or method; `None` for a call at module level.
    pub caller: Option<usize>,
    pub callee: Callee,
    pub line: u32,
}

/// A type said to build on another outside the type's own file (Rust `impl Trait for Type` where `Type` is
/// defined elsewhere): both as written, resolved from the file's top level in pass 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignBase {
    pub type_path: Vec<String>,
    pub base: Base,
}

/// Everything pass 1 learned about one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileFacts {
    /// The module path of this file (segments), under which other files import it.
    pub module: Vec<String>,
    /// True when several files share the module (Go and Java packages): their top-level names see each other.
    pub shared_module: bool,
    /// Also register the module under each of its suffixes (Python packages under `src/`, Go import paths).
    pub module_suffixes: bool,
    pub definitions: Vec<Definition>,
    pub imports: Vec<Import>,
    pub calls: Vec<Call>,
    /// Bases this file gives to types defined in other files.
    pub foreign_bases: Vec<ForeignBase>,
    pub lines: u32,
    /// Syntax errors the parser recovered from (the file is still analysed).
    pub syntax_errors: u32,
}

impl FileFacts {
    /// Gives repeated qualified names a `#n` suffix, in source order, so node ids stay unique and stable.
    pub fn disambiguate(&mut self) {
        let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        for d in &mut self.definitions {
            let n = seen.entry(d.qualified.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                d.qualified = format!("{}#{}", d.qualified, n);
            }
        }
    }
}
