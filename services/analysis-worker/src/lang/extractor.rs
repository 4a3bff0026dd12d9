//! The bookkeeping every language's pass 1 shares: the definition scope stack, source text and line numbers.

use tree_sitter::Node;

use crate::facts::{Base, Call, Callee, DefKind, Definition, FileFacts, Import};

/// Collects [`FileFacts`] while a language walks its syntax tree.
pub struct Extractor<'s> {
    pub source: &'s str,
    pub facts: FileFacts,
    /// Enclosing definitions, innermost last (indexes into `facts.definitions`).
    scopes: Vec<usize>,
}

impl<'s> Extractor<'s> {
    pub fn new(source: &'s str, module: Vec<String>) -> Self {
        Self { source, facts: FileFacts { module, ..FileFacts::default() }, scopes: Vec::new() }
    }

    pub fn text(&self, node: Node) -> &'s str {
        node.utf8_text(self.source.as_bytes()).unwrap_or("")
    }

    /// The text of a field of `node`, if it has one.
    pub fn field_text(&self, node: Node, field: &str) -> Option<&'s str> {
        node.child_by_field_name(field).map(|n| self.text(n))
    }

    /// 1-based line of the node's start.
    pub fn line(node: Node) -> u32 {
        node.start_position().row as u32 + 1
    }

    /// The innermost enclosing definition.
    pub fn scope(&self) -> Option<usize> {
        self.scopes.last().copied()
    }

    pub fn scope_kind(&self) -> Option<DefKind> {
        self.scope().map(|i| self.facts.definitions[i].kind)
    }

    /// The innermost enclosing function or method: the caller of a call found here.
    pub fn caller(&self) -> Option<usize> {
        self.scopes
            .iter()
            .rev()
            .copied()
            .find(|&i| matches!(self.facts.definitions[i].kind, DefKind::Function | DefKind::Method))
    }

    /// The innermost enclosing class.
    pub fn enclosing_class(&self) -> Option<usize> {
        self.scopes.iter().rev().copied().find(|&i| self.facts.definitions[i].kind == DefKind::Class)
    }

    /// Records a definition spanning `node`, nested in the current scope; returns its index.
    pub fn define(&mut self, kind: DefKind, subkind: Option<&'static str>, name: &str, node: Node) -> usize {
        let parent = self.scope();
        let qualified = match parent {
            Some(p) => format!("{}.{name}", self.facts.definitions[p].qualified),
            None => name.to_owned(),
        };
        self.facts.definitions.push(Definition {
            kind,
            subkind,
            name: name.to_owned(),
            qualified,
            parent,
            owner_type: None,
            line_start: Self::line(node),
            line_end: node.end_position().row as u32 + 1,
            bases: Vec::new(),
        });
        self.facts.definitions.len() - 1
    }

    pub fn add_base(&mut self, def: usize, base: Base) {
        if !base.path.is_empty() && !self.facts.definitions[def].bases.contains(&base) {
            self.facts.definitions[def].bases.push(base);
        }
    }

    /// Runs `f` with `def` as the innermost scope.
    pub fn within(&mut self, def: usize, f: impl FnOnce(&mut Self)) {
        self.scopes.push(def);
        f(self);
        self.scopes.pop();
    }

    pub fn call(&mut self, callee: Callee, node: Node) {
        let caller = self.caller();
        self.facts.calls.push(Call { caller, callee, line: Self::line(node) });
    }

    pub fn import(&mut self, import: Import) {
        self.facts.imports.push(import);
    }
}

/// Calls `f` on each child of `node`, in order. Leaves (most of a tree's nodes) return at once, without the
/// cursor a child walk allocates.
pub fn each_child<'t>(node: Node<'t>, mut f: impl FnMut(Node<'t>)) {
    if node.child_count() == 0 {
        return;
    }
    let mut cursor = node.walk();
    if !cursor.goto_first_child() {
        return;
    }
    loop {
        f(cursor.node());
        if !cursor.goto_next_sibling() {
            break;
        }
    }
}

/// Syntax errors (ERROR and MISSING nodes) in a tree, looking only into subtrees that have some.
pub fn count_errors(node: Node) -> u32 {
    if !node.has_error() {
        return 0;
    }
    if node.is_error() || node.is_missing() {
        return 1;
    }
    let mut cursor = node.walk();
    node.children(&mut cursor).map(count_errors).sum()
}

/// A module path from a file path without its extension: `src/a/b.ts` → `["src", "a", "b"]`.
pub fn path_segments(path: &str) -> Vec<String> {
    let stem = path.rsplit_once('.').map(|(s, _)| s).unwrap_or(path);
    stem.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}
