//! JavaScript (and, through [`extract_ecma`], TypeScript and TSX, whose trees extend JavaScript's): classes,
//! functions (declarations and functions bound to a name), methods, ES imports and re-exports, `require`,
//! calls and `new`, `extends`/`implements`.
//!
//! Module paths are file paths without extension; a relative specifier `./util` may name `util.*` or
//! `util/index.*`. Bare specifiers (packages) stay outside the project.

use tree_sitter::{Node, Tree};

use super::{
    extractor::{each_child, path_segments},
    Extractor, Language, LanguageAnalyzer,
};
use crate::facts::{Base, BaseRelation, Callee, DefKind, FileFacts, Import};

pub struct JavaScript;

impl LanguageAnalyzer for JavaScript {
    fn language(&self) -> Language {
        Language::JavaScript
    }

    fn extract(&self, path: &str, tree: &Tree, source: &str) -> FileFacts {
        extract_ecma(path, tree, source)
    }
}

/// Pass 1 for any ECMAScript dialect (JavaScript, TypeScript, TSX).
pub fn extract_ecma(path: &str, tree: &Tree, source: &str) -> FileFacts {
    let mut x = Extractor::new(source, path_segments(path));
    let dir: Vec<String> =
        path.split('/').map(str::to_owned).collect::<Vec<_>>()[..path.split('/').count() - 1].to_vec();
    let mut w = Walk { dir };
    w.visit(&mut x, tree.root_node());
    x.facts
}

struct Walk {
    dir: Vec<String>,
}

impl Walk {
    fn visit(&mut self, x: &mut Extractor, node: Node) {
        match node.kind() {
            "function_declaration" | "generator_function_declaration" | "function_signature" => {
                self.function(x, node, "name", DefKind::Function)
            }
            "method_definition" | "method_signature" | "abstract_method_signature" => {
                self.function(x, node, "name", DefKind::Method)
            }
            "class_declaration" | "class" | "abstract_class_declaration" => self.class(x, node, "class"),
            "interface_declaration" => self.class(x, node, "interface"),
            "enum_declaration" => self.class(x, node, "enum"),
            "internal_module" | "module" => self.module(x, node),
            "variable_declarator" => self.declarator(x, node),
            "field_definition" | "public_field_definition" => self.field(x, node),
            "import_statement" => self.import(x, node),
            "export_statement" => {
                if node.child_by_field_name("source").is_some() {
                    self.reexport(x, node);
                }
                self.children(x, node);
            }
            "call_expression" => {
                if let Some(f) = node.child_by_field_name("function") {
                    if let Some(c) = callee(x, f) {
                        x.call(c, node);
                    }
                }
                self.children(x, node);
            }
            "new_expression" => {
                if let Some(c) = node.child_by_field_name("constructor") {
                    if let Some(path) = dotted(x, c) {
                        x.call(qualified(path), node);
                    }
                }
                self.children(x, node);
            }
            _ => self.children(x, node),
        }
    }

    fn children(&mut self, x: &mut Extractor, node: Node) {
        each_child(node, |child| self.visit(x, child));
    }

    fn function(&mut self, x: &mut Extractor, node: Node, field: &str, kind: DefKind) {
        let Some(name) = x.field_text(node, field) else { return self.children(x, node) };
        let kind =
            if kind == DefKind::Function && x.scope_kind() == Some(DefKind::Class) { DefKind::Method } else { kind };
        let def = x.define(kind, None, name, node);
        x.within(def, |x| self.children(x, node));
    }

    fn class(&mut self, x: &mut Extractor, node: Node, subkind: &'static str) {
        let Some(name) = x.field_text(node, "name") else { return self.children(x, node) };
        let def = x.define(DefKind::Class, Some(subkind), name, node);
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            match child.kind() {
                "class_heritage" => self.heritage(x, def, child),
                "extends_type_clause" => {
                    let mut c = child.walk();
                    for t in child.named_children(&mut c) {
                        if let Some(path) = type_path(x, t) {
                            x.add_base(def, Base { path, relation: BaseRelation::Inherits });
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(body) = node.child_by_field_name("body") {
            x.within(def, |x| self.visit(x, body));
        }
    }

    fn heritage(&mut self, x: &mut Extractor, def: usize, node: Node) {
        let mut cursor = node.walk();
        for child in node.named_children(&mut cursor) {
            match child.kind() {
                "extends_clause" => {
                    if let Some(path) = child.child_by_field_name("value").and_then(|v| dotted(x, v)) {
                        x.add_base(def, Base { path, relation: BaseRelation::Inherits });
                    }
                }
                "implements_clause" => {
                    let mut c = child.walk();
                    for t in child.named_children(&mut c) {
                        if let Some(path) = type_path(x, t) {
                            x.add_base(def, Base { path, relation: BaseRelation::Implements });
                        }
                    }
                }
                _ => {
                    if let Some(path) = dotted(x, child) {
                        x.add_base(def, Base { path, relation: BaseRelation::Inherits });
                    }
                }
            }
        }
    }

    fn module(&mut self, x: &mut Extractor, node: Node) {
        let name = node.child_by_field_name("name").filter(|n| n.kind() != "string").map(|n| x.text(n));
        let (Some(name), Some(body)) = (name, node.child_by_field_name("body")) else { return self.children(x, node) };
        let def = x.define(DefKind::Module, None, name, node);
        x.within(def, |x| self.visit(x, body));
    }

    /// `const f = () => …` / `function () …` / `class {…}` define `f`; `const m = require('./m')` imports.
    fn declarator(&mut self, x: &mut Extractor, node: Node) {
        let (Some(name), Some(value)) = (node.child_by_field_name("name"), node.child_by_field_name("value")) else {
            return self.children(x, node);
        };
        if let Some(spec) = require_of(x, value) {
            self.require(x, name, &spec, node);
            return;
        }
        if name.kind() != "identifier" {
            return self.children(x, node);
        }
        let name = x.text(name);
        match value.kind() {
            "arrow_function" | "function_expression" | "function" | "generator_function" => {
                let kind = if x.scope_kind() == Some(DefKind::Class) { DefKind::Method } else { DefKind::Function };
                let def = x.define(kind, None, name, node);
                x.within(def, |x| self.children(x, value));
            }
            _ => self.children(x, node),
        }
    }

    /// A class field holding a function is a method (`handle = () => …`).
    fn field(&mut self, x: &mut Extractor, node: Node) {
        let name = node.child_by_field_name("property").or_else(|| node.child_by_field_name("name"));
        let value = node.child_by_field_name("value");
        match (name, value) {
            (Some(n), Some(v)) if matches!(v.kind(), "arrow_function" | "function_expression" | "function") => {
                let def = x.define(DefKind::Method, None, x.text(n), node);
                x.within(def, |x| self.children(x, v));
            }
            _ => self.children(x, node),
        }
    }

    /// Module candidates for a specifier: relative ones against this file's folder (`x` or `x/index`).
    fn candidates(&self, spec: &str) -> Vec<Vec<String>> {
        if !(spec.starts_with("./") || spec.starts_with("../") || spec == "." || spec == "..") {
            return vec![vec!["@package".to_owned(), spec.to_owned()]];
        }
        let mut path = self.dir.clone();
        for seg in spec.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    path.pop();
                }
                s => path.push(s.to_owned()),
            }
        }
        if let Some(last) = path.last_mut() {
            for ext in [".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts"] {
                if let Some(stem) = last.strip_suffix(ext) {
                    *last = stem.to_owned();
                    break;
                }
            }
        }
        let mut index = path.clone();
        index.push("index".to_owned());
        vec![path, index]
    }

    fn import(&mut self, x: &mut Extractor, node: Node) {
        let Some(spec) = node.child_by_field_name("source").map(|s| unquote(x.text(s))) else { return };
        let candidates = self.candidates(&spec);
        let line = Extractor::line(node);
        let text = x.text(node).to_owned();
        let mut bound = false;
        let mut cursor = node.walk();
        for clause in node.children(&mut cursor).filter(|c| c.kind() == "import_clause") {
            let mut c = clause.walk();
            for part in clause.named_children(&mut c) {
                match part.kind() {
                    "identifier" => {
                        bound = true;
                        let local = Some(x.text(part).to_owned());
                        x.import(Import {
                            candidates: candidates.clone(),
                            name: Some("default".into()),
                            local,
                            line,
                            text: text.clone(),
                        });
                    }
                    "namespace_import" => {
                        bound = true;
                        let mut n = part.walk();
                        let local = part.named_children(&mut n).next().map(|i| x.text(i).to_owned());
                        x.import(Import {
                            candidates: candidates.clone(),
                            name: None,
                            local,
                            line,
                            text: text.clone(),
                        });
                    }
                    "named_imports" => {
                        bound |= specifiers(x, part, "import_specifier", &candidates, line, &text);
                    }
                    _ => {}
                }
            }
        }
        if !bound {
            // A side-effect import (`import './polyfill'`) binds nothing.
            x.import(Import { candidates, name: None, local: Some(format!("import {spec}")), line, text });
        }
    }

    /// `export { a as b } from './m'` and `export * from './m'`.
    fn reexport(&mut self, x: &mut Extractor, node: Node) {
        let Some(spec) = node.child_by_field_name("source").map(|s| unquote(x.text(s))) else { return };
        let candidates = self.candidates(&spec);
        let line = Extractor::line(node);
        let text = x.text(node).to_owned();
        let mut cursor = node.walk();
        let clauses: Vec<Node> = node.children(&mut cursor).filter(|c| c.kind() == "export_clause").collect();
        let mut named = false;
        for clause in clauses {
            named |= specifiers(x, clause, "export_specifier", &candidates, line, &text);
        }
        if !named {
            x.import(Import { candidates, name: None, local: None, line, text });
        }
    }

    fn require(&mut self, x: &mut Extractor, pattern: Node, spec: &str, node: Node) {
        let candidates = self.candidates(spec);
        let line = Extractor::line(node);
        let text = x.text(node).to_owned();
        match pattern.kind() {
            "identifier" => {
                let local = Some(x.text(pattern).to_owned());
                x.import(Import { candidates, name: None, local, line, text });
            }
            "object_pattern" => {
                let mut c = pattern.walk();
                for p in pattern.named_children(&mut c) {
                    let (name, local) = match p.kind() {
                        "shorthand_property_identifier_pattern" => (x.text(p).to_owned(), x.text(p).to_owned()),
                        "pair_pattern" => match (x.field_text(p, "key"), x.field_text(p, "value")) {
                            (Some(k), Some(v)) => (k.to_owned(), v.to_owned()),
                            _ => continue,
                        },
                        _ => continue,
                    };
                    x.import(Import {
                        candidates: candidates.clone(),
                        name: Some(name),
                        local: Some(local),
                        line,
                        text: text.clone(),
                    });
                }
            }
            _ => {}
        }
    }
}

/// `{ a, b as c }` of an import or export: one import per specifier of `kind`; true when there was one.
fn specifiers(x: &mut Extractor, list: Node, kind: &str, candidates: &[Vec<String>], line: u32, text: &str) -> bool {
    let mut c = list.walk();
    let specs: Vec<Node> = list.named_children(&mut c).filter(|s| s.kind() == kind).collect();
    let mut any = false;
    for spec in specs {
        let Some(name) = x.field_text(spec, "name").map(unquote) else { continue };
        let local = x.field_text(spec, "alias").map(unquote).unwrap_or_else(|| name.clone());
        any = true;
        let candidates = candidates.to_vec();
        x.import(Import { candidates, name: Some(name), local: Some(local), line, text: text.to_owned() });
    }
    any
}

fn unquote(s: &str) -> String {
    s.trim_matches(|c| c == '"' || c == '\'' || c == '`').to_owned()
}

/// `require('./m')` → `./m`.
fn require_of(x: &Extractor, value: Node) -> Option<String> {
    if value.kind() != "call_expression" || x.field_text(value, "function")? != "require" {
        return None;
    }
    let args = value.child_by_field_name("arguments")?;
    let mut c = args.walk();
    let first = args.named_children(&mut c).next()?;
    (first.kind() == "string").then(|| unquote(x.text(first)))
}

/// `a.b.c` (identifiers and member accesses) as segments.
fn dotted(x: &Extractor, node: Node) -> Option<Vec<String>> {
    match node.kind() {
        "identifier" | "type_identifier" | "this" => Some(vec![x.text(node).to_owned()]),
        "member_expression" | "nested_identifier" | "nested_type_identifier" => {
            let object = node.child_by_field_name("object").or_else(|| node.child_by_field_name("module"))?;
            let mut path = dotted(x, object)?;
            let prop = node.child_by_field_name("property").or_else(|| node.child_by_field_name("name"))?;
            path.push(x.text(prop).to_owned());
            Some(path)
        }
        _ => None,
    }
}

/// A type in `implements`/`extends` of an interface: `A`, `ns.A`, `A<T>`.
fn type_path(x: &Extractor, node: Node) -> Option<Vec<String>> {
    match node.kind() {
        "generic_type" => type_path(x, node.child_by_field_name("name")?),
        _ => dotted(x, node),
    }
}

fn qualified(mut path: Vec<String>) -> Callee {
    let name = path.pop().unwrap_or_default();
    match path.as_slice() {
        [] => Callee::Name(name),
        [only] if only == "this" => Callee::SelfMember(name),
        _ => Callee::Qualified { receiver: path, name },
    }
}

fn callee(x: &Extractor, f: Node) -> Option<Callee> {
    match f.kind() {
        "identifier" => Some(Callee::Name(x.text(f).to_owned())),
        "member_expression" => match dotted(x, f) {
            Some(path) => Some(qualified(path)),
            None => x.field_text(f, "property").map(|p| Callee::Dynamic(p.to_owned())),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::lang::fixture::Fixture;

    #[test]
    fn javascript_fixture() {
        let g = Fixture::new()
            .file("src/util/index.js", "export function slug(s) { return s.trim(); }\nexport const twice = (n) => n * 2;\n")
            .file("src/base.js", "class Base {\n  hello() { return this.name(); }\n  name() { return 'b'; }\n}\nmodule.exports = { Base };\n")
            .file("src/app.js", "import { slug as s, twice } from './util';\nimport * as u from './util/index.js';\nconst { Base } = require('./base');\nimport React from 'react';\n\nexport default class App extends Base {\n  run() {\n    this.hello();\n    s('x');\n    u.twice(2);\n    new Base();\n    console.log('x');\n  }\n}\nfunction main() { new App().run(); }\nmain();\n")
            .analyze();
        g.has_node("js:src/app.js:App", "class");
        g.has_node("js:src/app.js:App.run", "method");
        g.has_node("js:src/util/index.js:twice", "function");
        g.has_edge("js:src/app.js:App", "inherits", "js:src/base.js:Base");
        g.has_edge("file:src/app.js", "imports", "js:src/util/index.js:slug");
        g.has_edge("file:src/app.js", "imports", "file:src/util/index.js");
        g.has_edge("file:src/app.js", "imports", "js:src/base.js:Base");
        g.has_edge("js:src/app.js:App.run", "calls", "js:src/base.js:Base.hello");
        g.has_edge("js:src/app.js:App.run", "calls", "js:src/util/index.js:slug");
        g.has_edge("js:src/app.js:App.run", "calls", "js:src/util/index.js:twice");
        g.has_edge("js:src/app.js:App.run", "calls", "js:src/base.js:Base");
        g.has_edge("js:src/base.js:Base.hello", "calls", "js:src/base.js:Base.name");
        g.has_edge("js:src/app.js:main", "calls", "js:src/app.js:App");
        g.has_edge("file:src/app.js", "calls", "js:src/app.js:main");
        g.unresolved("js:src/app.js:App.run", &["console.log"]);
        g.unresolved("js:src/app.js:main", &["?.run"]);
        let file = g.has_node("file:src/app.js", "file");
        assert_eq!(file.properties["external_imports"], serde_json::json!(["import React from 'react';"]));
    }
}
