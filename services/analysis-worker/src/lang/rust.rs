//! Rust: structs, enums, unions, traits, functions, methods of `impl` blocks (declared outside their type, so
//! linked to it in pass 2), inline modules, `use` trees (with `crate`, `self`, `super`, lists, globs, `as`),
//! calls of functions, paths (`Type::f`, `crate::m::f`) and `self.f()`, and `impl Trait for Type`.
//!
//! Module paths: the crate is the folder above `src/` (`crate@<folder>`), then the module path under `src/`
//! (`a/b.rs` and `a/b/mod.rs` are `a::b`; `lib.rs` and `main.rs` are the crate root). Paths into other crates
//! stay outside the project.

use tree_sitter::{Node, Tree};

use super::{extractor::each_child, Extractor, Language, LanguageAnalyzer};
use crate::facts::{Base, BaseRelation, Callee, DefKind, FileFacts, ForeignBase, Import};

pub struct Rust;

impl LanguageAnalyzer for Rust {
    fn language(&self) -> Language {
        Language::Rust
    }

    fn extract(&self, path: &str, tree: &Tree, source: &str) -> FileFacts {
        let (crate_key, module) = module_of(path);
        let mut full = vec![crate_key.clone()];
        full.extend(module);
        let mut x = Extractor::new(source, full.clone());
        let mut w = Walk { crate_key, module: full, impl_type: None, impls: Vec::new() };
        w.visit(&mut x, tree.root_node());
        // `impl Trait for Type`: Type implements Trait, recorded on Type when this file defines it, otherwise
        // for pass 2 to find Type elsewhere.
        for (ty, tr) in std::mem::take(&mut w.impls) {
            let base = Base { path: tr, relation: BaseRelation::Implements };
            let name = ty.last().map(String::as_str).unwrap_or("");
            let local = ty.len() == 1 || ty[..ty.len() - 1] == w.module[..];
            let found = x
                .facts
                .definitions
                .iter()
                .position(|d| local && d.parent.is_none() && d.kind == DefKind::Class && d.name == name);
            match found {
                Some(def) => x.add_base(def, base),
                None => x.facts.foreign_bases.push(ForeignBase { type_path: ty, base }),
            }
        }
        x.facts
    }
}

/// `crates/x/src/a/b.rs` → (`crate@crates/x`, `[a, b]`).
fn module_of(path: &str) -> (String, Vec<String>) {
    let (dir, rest) = match path.rfind("/src/") {
        Some(i) => (&path[..i], &path[i + 5..]),
        None => match path.strip_prefix("src/") {
            Some(rest) => ("", rest),
            None => ("", path),
        },
    };
    let mut segments = super::extractor::path_segments(rest);
    if matches!(segments.last().map(String::as_str), Some("mod")) {
        segments.pop();
    }
    if segments.len() == 1 && (segments[0] == "lib" || segments[0] == "main") {
        segments.clear();
    }
    (format!("crate@{dir}"), segments)
}

struct Walk {
    crate_key: String,
    /// The module the walk is in (grows inside inline `mod` blocks).
    module: Vec<String>,
    /// The type of the enclosing `impl` block.
    impl_type: Option<String>,
    /// `(type path, trait path)` of each top-level `impl Trait for Type`, made absolute where written so.
    impls: Vec<(Vec<String>, Vec<String>)>,
}

impl Walk {
    fn visit(&mut self, x: &mut Extractor, node: Node) {
        match node.kind() {
            "function_item" | "function_signature_item" => self.function(x, node),
            "struct_item" => self.class(x, node, "struct"),
            "enum_item" => self.class(x, node, "enum"),
            "union_item" => self.class(x, node, "union"),
            "trait_item" => self.class(x, node, "trait"),
            "impl_item" => self.impl_block(x, node),
            "mod_item" => self.module(x, node),
            "use_declaration" => {
                if let Some(arg) = node.child_by_field_name("argument") {
                    let line = Extractor::line(node);
                    let text = x.text(node).to_owned();
                    self.use_tree(x, arg, Vec::new(), line, &text);
                }
            }
            "call_expression" => {
                if let Some(f) = node.child_by_field_name("function") {
                    if let Some(c) = self.callee(x, f) {
                        x.call(c, node);
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

    fn function(&mut self, x: &mut Extractor, node: Node) {
        let Some(name) = x.field_text(node, "name") else { return self.children(x, node) };
        let in_type = x.scope_kind() == Some(DefKind::Class);
        let def = match (&self.impl_type, in_type) {
            (Some(ty), false) if x.scope().is_none() || x.scope_kind() == Some(DefKind::Module) => {
                let def = x.define(DefKind::Method, None, name, node);
                let d = &mut x.facts.definitions[def];
                d.qualified = match d.parent {
                    Some(_) => format!("{}.{name}", d.qualified.rsplit_once('.').map(|(p, _)| p).unwrap_or("")),
                    None => String::new(),
                } + &format!("{ty}.{name}");
                d.qualified = d.qualified.trim_start_matches('.').to_owned();
                d.owner_type = Some(ty.clone());
                def
            }
            (_, true) => x.define(DefKind::Method, None, name, node),
            _ => x.define(DefKind::Function, None, name, node),
        };
        let saved = self.impl_type.take();
        x.within(def, |x| self.children(x, node));
        self.impl_type = saved;
    }

    fn class(&mut self, x: &mut Extractor, node: Node, subkind: &'static str) {
        let Some(name) = x.field_text(node, "name") else { return self.children(x, node) };
        let def = x.define(DefKind::Class, Some(subkind), name, node);
        if let Some(bounds) = node.child_by_field_name("bounds") {
            let mut c = bounds.walk();
            for b in bounds.named_children(&mut c) {
                if let Some(path) = type_path(x, b) {
                    x.add_base(def, Base { path: self.canonical(path), relation: BaseRelation::Inherits });
                }
            }
        }
        if let Some(body) = node.child_by_field_name("body") {
            x.within(def, |x| self.visit(x, body));
        }
    }

    fn impl_block(&mut self, x: &mut Extractor, node: Node) {
        let Some(path) = node.child_by_field_name("type").and_then(|t| type_path(x, t)) else {
            return self.children(x, node);
        };
        let Some(ty) = path.last().cloned() else { return self.children(x, node) };
        if let Some(tr) = node.child_by_field_name("trait").and_then(|t| type_path(x, t)) {
            if x.scope().is_none() {
                self.impls.push((self.canonical(path), self.canonical(tr)));
            }
        }
        let saved = self.impl_type.replace(ty);
        if let Some(body) = node.child_by_field_name("body") {
            self.visit(x, body);
        }
        self.impl_type = saved;
    }

    fn module(&mut self, x: &mut Extractor, node: Node) {
        let (Some(name), Some(body)) = (x.field_text(node, "name"), node.child_by_field_name("body")) else { return };
        let def = x.define(DefKind::Module, None, name, node);
        self.module.push(name.to_owned());
        x.within(def, |x| self.visit(x, body));
        self.module.pop();
    }

    /// A path as written → an absolute module path where the first segment says so (`crate`, `self`, `super`).
    fn canonical(&self, path: Vec<String>) -> Vec<String> {
        let mut out: Vec<String> = match path.first().map(String::as_str) {
            Some("crate") => vec![self.crate_key.clone()],
            Some("self") | Some("super") => self.module.clone(),
            _ => return path,
        };
        let mut rest = path.into_iter().peekable();
        let first = rest.next();
        if first.as_deref() == Some("super") {
            out.pop();
        }
        while rest.peek().map(String::as_str) == Some("super") {
            rest.next();
            out.pop();
        }
        out.extend(rest);
        out
    }

    /// Candidates for a `use` path: relative to this module first (2018 paths), then as written.
    fn use_candidates(&self, module: &[String]) -> Vec<Vec<String>> {
        let canonical = self.canonical(module.to_vec());
        if canonical.first() != module.first() || module.is_empty() {
            return vec![canonical];
        }
        let mut local = self.module.clone();
        local.extend(module.iter().cloned());
        vec![local, canonical]
    }

    fn use_tree(&mut self, x: &mut Extractor, node: Node, prefix: Vec<String>, line: u32, text: &str) {
        match node.kind() {
            "use_as_clause" => {
                let Some(path) = node.child_by_field_name("path").and_then(|p| path_of(x, p)) else { return };
                let alias = x.field_text(node, "alias").map(str::to_owned);
                self.bind(x, prefix, path, alias, line, text);
            }
            "scoped_use_list" => {
                let mut p = prefix;
                if let Some(path) = node.child_by_field_name("path").and_then(|p| path_of(x, p)) {
                    p.extend(path);
                }
                if let Some(list) = node.child_by_field_name("list") {
                    self.use_tree(x, list, p, line, text);
                }
            }
            "use_list" => {
                let mut c = node.walk();
                for item in node.named_children(&mut c) {
                    self.use_tree(x, item, prefix.clone(), line, text);
                }
            }
            "use_wildcard" => {
                let mut p = prefix;
                let mut c = node.walk();
                if let Some(path) = node.named_children(&mut c).next().and_then(|n| path_of(x, n)) {
                    p.extend(path);
                }
                let candidates = self.use_candidates(&p);
                x.import(Import { candidates, name: None, local: None, line, text: text.to_owned() });
            }
            _ => {
                if let Some(path) = path_of(x, node) {
                    self.bind(x, prefix, path, None, line, text);
                }
            }
        }
    }

    fn bind(
        &mut self,
        x: &mut Extractor,
        prefix: Vec<String>,
        path: Vec<String>,
        alias: Option<String>,
        line: u32,
        text: &str,
    ) {
        let mut full = prefix;
        full.extend(path);
        // `use a::b::{self}` names the module `a::b`.
        if full.last().map(String::as_str) == Some("self") {
            full.pop();
        }
        let Some(name) = full.pop() else { return };
        if full.is_empty() && matches!(name.as_str(), "crate" | "self" | "super") {
            return;
        }
        let local = alias.unwrap_or_else(|| name.clone());
        if local == "_" {
            return;
        }
        let candidates = self.use_candidates(&full);
        x.import(Import { candidates, name: Some(name), local: Some(local), line, text: text.to_owned() });
    }

    fn callee(&self, x: &Extractor, f: Node) -> Option<Callee> {
        match f.kind() {
            "identifier" => Some(Callee::Name(x.text(f).to_owned())),
            "generic_function" => self.callee(x, f.child_by_field_name("function")?),
            "scoped_identifier" => {
                let mut path = path_of(x, f)?;
                let name = path.pop()?;
                if path.len() == 1 && path[0] == "Self" {
                    return Some(Callee::SelfMember(name));
                }
                Some(Callee::Qualified { receiver: self.canonical(path), name })
            }
            "field_expression" => {
                let name = x.field_text(f, "field")?.to_owned();
                let value = f.child_by_field_name("value")?;
                if value.kind() == "self" {
                    return Some(Callee::SelfMember(name));
                }
                match value.kind() {
                    "identifier" => Some(Callee::Qualified { receiver: vec![x.text(value).to_owned()], name }),
                    _ => Some(Callee::Dynamic(name)),
                }
            }
            _ => None,
        }
    }
}

/// `a::b::c` (identifiers, `crate`, `self`, `super`) as segments.
fn path_of(x: &Extractor, node: Node) -> Option<Vec<String>> {
    match node.kind() {
        "identifier" | "type_identifier" | "crate" | "self" | "super" => Some(vec![x.text(node).to_owned()]),
        "scoped_identifier" | "scoped_type_identifier" => {
            let mut path = match node.child_by_field_name("path") {
                Some(p) => path_of(x, p)?,
                None => Vec::new(),
            };
            path.push(x.field_text(node, "name")?.to_owned());
            Some(path)
        }
        "generic_type" => path_of(x, node.child_by_field_name("type")?),
        _ => None,
    }
}

/// A type as a path (`Vec<T>` → `Vec`, `&mut a::B` → `a::B`).
fn type_path(x: &Extractor, node: Node) -> Option<Vec<String>> {
    match node.kind() {
        "reference_type" | "pointer_type" => type_path(x, node.child_by_field_name("type")?),
        _ => path_of(x, node),
    }
}

#[cfg(test)]
mod tests {
    use crate::lang::fixture::Fixture;

    #[test]
    fn impl_trait_for_a_type_of_another_file() {
        let g = Fixture::new()
            .file("src/lib.rs", "pub mod shapes;\npub mod area;\npub mod show;\n")
            .file("src/shapes.rs", "pub struct Circle { pub r: u32 }\npub struct Square;\n")
            .file("src/area.rs", "pub trait Area {\n    fn area(&self) -> u32;\n    fn twice(&self) -> u32 { self.area() * 2 }\n}\n")
            .file("src/show.rs", "use crate::area::Area;\nuse crate::shapes::Circle;\n\nimpl Area for Circle {\n    fn area(&self) -> u32 { self.r }\n}\n\nimpl Area for crate::shapes::Square {\n    fn area(&self) -> u32 { 1 }\n}\n\nimpl Area for Unknown {\n    fn area(&self) -> u32 { 0 }\n}\n\npub fn total(c: &Circle) -> u32 {\n    Circle::twice(c)\n}\n")
            .analyze();
        g.has_edge("rs:src/shapes.rs:Circle", "implements", "rs:src/area.rs:Area");
        g.has_edge("rs:src/shapes.rs:Square", "implements", "rs:src/area.rs:Area");
        // The trait's provided method is a member of the type through the edge.
        g.has_edge("rs:src/show.rs:total", "calls", "rs:src/area.rs:Area.twice");
    }

    #[test]
    fn rust_fixture() {
        let g = Fixture::new()
            .file("src/lib.rs", "pub mod shapes;\nmod util {\n    pub fn clamp(v: u32) -> u32 { v }\n}\nuse shapes::{Circle, Area as A};\n\npub fn run() -> u32 {\n    let c = Circle::new(2);\n    c.area();\n    util::clamp(crate::shapes::unit())\n}\n")
            .file("src/shapes.rs", "use std::fmt;\n\npub trait Area { fn area(&self) -> u32; }\n\npub struct Circle { r: u32 }\n\nimpl Circle {\n    pub fn new(r: u32) -> Self { Self::check(r); Circle { r } }\n    fn check(r: u32) {}\n    fn double(&self) -> u32 { self.area() * 2 }\n}\n\nimpl Area for Circle {\n    fn area(&self) -> u32 { self.r }\n}\n\nimpl fmt::Display for Circle {\n    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result { write!(f, \"c\") }\n}\n\npub fn unit() -> u32 { 1 }\n")
            .analyze();
        g.subkind("rs:src/shapes.rs:Circle", "struct");
        g.subkind("rs:src/shapes.rs:Area", "trait");
        g.has_node("rs:src/shapes.rs:Area.area", "method");
        g.has_node("rs:src/shapes.rs:Circle.new", "method");
        g.has_node("rs:src/shapes.rs:Circle.area", "method");
        g.has_node("rs:src/lib.rs:util", "module");
        g.has_node("rs:src/lib.rs:util.clamp", "function");
        g.has_edge("rs:src/shapes.rs:Circle", "defines", "rs:src/shapes.rs:Circle.new");
        g.has_edge("rs:src/shapes.rs:Circle", "implements", "rs:src/shapes.rs:Area");
        g.has_edge("file:src/lib.rs", "imports", "rs:src/shapes.rs:Circle");
        g.has_edge("file:src/lib.rs", "imports", "rs:src/shapes.rs:Area");
        g.has_edge("rs:src/lib.rs:run", "calls", "rs:src/shapes.rs:Circle.new");
        g.has_edge("rs:src/lib.rs:run", "calls", "rs:src/lib.rs:util.clamp");
        g.has_edge("rs:src/lib.rs:run", "calls", "rs:src/shapes.rs:unit");
        g.has_edge("rs:src/shapes.rs:Circle.new", "calls", "rs:src/shapes.rs:Circle.check");
        g.has_edge("rs:src/shapes.rs:Circle.double", "calls", "rs:src/shapes.rs:Circle.area");
        g.unresolved("rs:src/lib.rs:run", &["c.area"]);
        let file = g.has_node("file:src/shapes.rs", "file");
        assert_eq!(file.properties["external_imports"], serde_json::json!(["use std::fmt;"]));
    }
}
