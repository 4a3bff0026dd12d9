//! Go: packages (every file of a folder is one package, so their top-level names see each other), functions,
//! methods (linked to their receiver type in pass 2), struct and interface types, imports (the import path is
//! matched against the project's folders by its longest suffix), calls of functions, `pkg.F()` and methods on
//! the receiver.

use tree_sitter::{Node, Tree};

use super::{extractor::each_child, Extractor, Language, LanguageAnalyzer};
use crate::facts::{Callee, DefKind, FileFacts, Import};

pub struct Go;

impl LanguageAnalyzer for Go {
    fn language(&self) -> Language {
        Language::Go
    }

    fn extract(&self, path: &str, tree: &Tree, source: &str) -> FileFacts {
        let mut package: Vec<String> = path.split('/').map(str::to_owned).collect();
        package.pop();
        let mut x = Extractor::new(source, package);
        x.facts.shared_module = true;
        x.facts.module_suffixes = true;
        let mut w = Walk { receiver: None };
        w.visit(&mut x, tree.root_node());
        x.facts
    }
}

struct Walk {
    /// The receiver variable of the enclosing method (`s` in `func (s *Server) Run()`).
    receiver: Option<String>,
}

impl Walk {
    fn visit(&mut self, x: &mut Extractor, node: Node) {
        match node.kind() {
            "function_declaration" => {
                let Some(name) = x.field_text(node, "name") else { return };
                let def = x.define(DefKind::Function, None, name, node);
                x.within(def, |x| self.children(x, node));
            }
            "method_declaration" => self.method(x, node),
            "type_spec" => self.type_spec(x, node),
            "method_elem" => {
                if let Some(name) = x.field_text(node, "name") {
                    x.define(DefKind::Method, None, name, node);
                }
            }
            "import_spec" => self.import(x, node),
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

    fn method(&mut self, x: &mut Extractor, node: Node) {
        let Some(name) = x.field_text(node, "name") else { return };
        let mut receiver_name = None;
        let mut receiver_type = None;
        if let Some(params) = node.child_by_field_name("receiver") {
            let mut c = params.walk();
            let first = params.named_children(&mut c).find(|p| p.kind() == "parameter_declaration");
            if let Some(p) = first {
                receiver_name = x.field_text(p, "name").map(str::to_owned);
                receiver_type = p.child_by_field_name("type").and_then(|t| type_name(x, t));
            }
        }
        let def = x.define(DefKind::Method, None, name, node);
        if let Some(ty) = &receiver_type {
            let d = &mut x.facts.definitions[def];
            d.qualified = format!("{ty}.{name}");
            d.owner_type = Some(ty.clone());
        }
        let saved = std::mem::replace(&mut self.receiver, receiver_name);
        x.within(def, |x| {
            if let Some(body) = node.child_by_field_name("body") {
                self.visit(x, body);
            }
        });
        self.receiver = saved;
    }

    fn type_spec(&mut self, x: &mut Extractor, node: Node) {
        let (Some(name), Some(ty)) = (x.field_text(node, "name"), node.child_by_field_name("type")) else { return };
        let subkind = match ty.kind() {
            "struct_type" => "struct",
            "interface_type" => "interface",
            _ => "type",
        };
        let def = x.define(DefKind::Class, Some(subkind), name, node);
        x.within(def, |x| self.visit(x, ty));
    }

    fn import(&mut self, x: &mut Extractor, node: Node) {
        let Some(path) = x.field_text(node, "path").map(|p| p.trim_matches(|c| c == '"' || c == '`')) else { return };
        let segments: Vec<String> = path.split('/').map(str::to_owned).collect();
        let local = match x.field_text(node, "name") {
            Some("_") => return,
            Some(".") => None,
            Some(alias) => Some(alias.to_owned()),
            None => segments.last().cloned(),
        };
        // A path with a domain (`github.com/org/repo/pkg`) may name a folder of this project by any suffix;
        // a path without one is the standard library unless a folder matches at least two segments.
        let domain = segments[0].contains('.');
        let min = if domain { 1 } else { 2 };
        let start = if domain { 1 } else { 0 };
        let candidates = (start..segments.len()).map(|s| segments[s..].to_vec()).filter(|c| c.len() >= min).collect();
        let line = Extractor::line(node);
        x.import(Import { candidates, name: None, local, line, text: path.to_owned() });
    }

    fn callee(&self, x: &Extractor, f: Node) -> Option<Callee> {
        match f.kind() {
            "identifier" => Some(Callee::Name(x.text(f).to_owned())),
            "selector_expression" => {
                let name = x.field_text(f, "field")?.to_owned();
                let operand = f.child_by_field_name("operand")?;
                if operand.kind() != "identifier" {
                    return Some(Callee::Dynamic(name));
                }
                let receiver = x.text(operand);
                if self.receiver.as_deref() == Some(receiver) {
                    return Some(Callee::SelfMember(name));
                }
                Some(Callee::Qualified { receiver: vec![receiver.to_owned()], name })
            }
            _ => None,
        }
    }
}

/// The name of a receiver type: `*Server` → `Server`, `List[T]` → `List`.
fn type_name(x: &Extractor, node: Node) -> Option<String> {
    match node.kind() {
        "type_identifier" => Some(x.text(node).to_owned()),
        "pointer_type" | "generic_type" => {
            let mut c = node.walk();
            let inner = node.named_children(&mut c).next()?;
            type_name(x, inner)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::lang::fixture::Fixture;

    #[test]
    fn go_fixture() {
        let g = Fixture::new()
            .file("internal/store/store.go", "package store\n\ntype Store struct { n int }\n\ntype Reader interface { Get() int }\n\nfunc New() *Store { return &Store{} }\n")
            .file("internal/store/ops.go", "package store\n\nfunc (s *Store) Get() int { return s.inc() }\n\nfunc (s *Store) inc() int { s.n++; return helper(s.n) }\n\nfunc helper(n int) int { return n }\n")
            .file("cmd/app/main.go", "package main\n\nimport (\n\t\"fmt\"\n\tst \"example.com/demo/internal/store\"\n)\n\nfunc main() {\n\ts := st.New()\n\tfmt.Println(s.Get())\n\trun()\n}\n\nfunc run() {}\n")
            .analyze();
        g.subkind("go:internal/store/store.go:Store", "struct");
        g.subkind("go:internal/store/store.go:Reader", "interface");
        g.has_node("go:internal/store/store.go:Reader.Get", "method");
        g.has_node("go:internal/store/ops.go:Store.Get", "method");
        g.has_edge("file:internal/store/ops.go", "defines", "go:internal/store/ops.go:Store.Get");
        g.has_edge("file:cmd/app/main.go", "imports", "file:internal/store/store.go");
        g.has_edge("file:cmd/app/main.go", "imports", "file:internal/store/ops.go");
        g.has_edge("go:cmd/app/main.go:main", "calls", "go:internal/store/store.go:New");
        g.has_edge("go:cmd/app/main.go:main", "calls", "go:cmd/app/main.go:run");
        g.has_edge("go:internal/store/ops.go:Store.Get", "calls", "go:internal/store/ops.go:Store.inc");
        g.has_edge("go:internal/store/ops.go:Store.inc", "calls", "go:internal/store/ops.go:helper");
        g.unresolved("go:cmd/app/main.go:main", &["fmt.Println", "s.Get"]);
    }
}
