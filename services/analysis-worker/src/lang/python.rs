//! Python: classes, functions and methods (nested ones too, at any depth of `if`/`try`/`with`), `import` and
//! `from … import` (relative ones resolved against the file's package), calls, and base classes.

use tree_sitter::{Node, Tree};

use super::{extractor::each_child, Extractor, Language, LanguageAnalyzer};
use crate::facts::{Base, BaseRelation, Callee, DefKind, FileFacts, Import};

pub struct Python;

impl LanguageAnalyzer for Python {
    fn language(&self) -> Language {
        Language::Python
    }

    fn extract(&self, path: &str, tree: &Tree, source: &str) -> FileFacts {
        let module = module_of(path);
        let is_package = path.ends_with("__init__.py") || path.ends_with("__init__.pyi");
        let mut x = Extractor::new(source, module);
        x.facts.module_suffixes = true;
        let mut walk = Walk { is_package };
        walk.visit(&mut x, tree.root_node());
        x.facts
    }
}

/// `pkg/sub/mod.py` → `pkg.sub.mod`; `pkg/__init__.py` → `pkg`.
fn module_of(path: &str) -> Vec<String> {
    let mut segments = super::extractor::path_segments(path);
    if segments.last().is_some_and(|s| s == "__init__") {
        segments.pop();
    }
    segments
}

struct Walk {
    is_package: bool,
}

impl Walk {
    fn visit(&mut self, x: &mut Extractor, node: Node) {
        match node.kind() {
            "class_definition" => self.class(x, node),
            "function_definition" => self.function(x, node),
            "import_statement" => self.import(x, node),
            "import_from_statement" => self.import_from(x, node),
            "call" => {
                if let Some(f) = node.child_by_field_name("function") {
                    if let Some(callee) = callee(x, f) {
                        x.call(callee, node);
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

    fn class(&mut self, x: &mut Extractor, node: Node) {
        let Some(name) = x.field_text(node, "name") else { return self.children(x, node) };
        let def = x.define(DefKind::Class, Some("class"), name, node);
        if let Some(args) = node.child_by_field_name("superclasses") {
            let mut cursor = args.walk();
            for arg in args.named_children(&mut cursor) {
                if let Some(path) = dotted(x, arg) {
                    x.add_base(def, Base { path, relation: BaseRelation::Inherits });
                }
            }
            // Calls inside the base list (`class A(make_base()):`) belong to the enclosing scope.
            self.visit(x, args);
        }
        if let Some(body) = node.child_by_field_name("body") {
            x.within(def, |x| self.visit(x, body));
        }
    }

    fn function(&mut self, x: &mut Extractor, node: Node) {
        let Some(name) = x.field_text(node, "name") else { return self.children(x, node) };
        let kind = if x.scope_kind() == Some(DefKind::Class) { DefKind::Method } else { DefKind::Function };
        let def = x.define(kind, None, name, node);
        x.within(def, |x| {
            for field in ["parameters", "body"] {
                if let Some(n) = node.child_by_field_name(field) {
                    self.visit(x, n);
                }
            }
        });
    }

    fn import(&mut self, x: &mut Extractor, node: Node) {
        let line = Extractor::line(node);
        let mut cursor = node.walk();
        for name in node.children_by_field_name("name", &mut cursor) {
            let (path, local) = match name.kind() {
                "aliased_import" => {
                    let Some(path) = name.child_by_field_name("name").and_then(|n| dotted(x, n)) else { continue };
                    (path, x.field_text(name, "alias").map(str::to_owned))
                }
                _ => {
                    let Some(path) = dotted(x, name) else { continue };
                    let local = path.join(".");
                    (path, Some(local))
                }
            };
            x.import(Import { candidates: vec![path], name: None, local, line, text: x.text(node).to_owned() });
        }
    }

    fn import_from(&mut self, x: &mut Extractor, node: Node) {
        let line = Extractor::line(node);
        let Some(module_node) = node.child_by_field_name("module_name") else { return };
        let Some(module) = self.absolute_module(x, module_node) else { return };
        let text = x.text(node).to_owned();
        let mut cursor = node.walk();
        let mut any = false;
        for name in node.children_by_field_name("name", &mut cursor) {
            let (path, local) = match name.kind() {
                "aliased_import" => {
                    let Some(path) = name.child_by_field_name("name").and_then(|n| dotted(x, n)) else { continue };
                    (path, x.field_text(name, "alias").map(str::to_owned))
                }
                _ => {
                    let Some(path) = dotted(x, name) else { continue };
                    let local = path.last().cloned();
                    (path, local)
                }
            };
            any = true;
            let mut full = module.clone();
            full.extend(path[..path.len() - 1].iter().cloned());
            let imported = path.last().cloned();
            x.import(Import { candidates: vec![full], name: imported, local, line, text: text.clone() });
        }
        let mut cursor = node.walk();
        let wildcard = node.children(&mut cursor).any(|c| c.kind() == "wildcard_import");
        if wildcard || !any {
            x.import(Import { candidates: vec![module], name: None, local: None, line, text });
        }
    }

    /// The absolute module of `from <module> import …`, resolving leading dots against this file's package.
    fn absolute_module(&self, x: &Extractor, node: Node) -> Option<Vec<String>> {
        if node.kind() != "relative_import" {
            return dotted(x, node);
        }
        let mut cursor = node.walk();
        let mut dots = 0;
        let mut rest = Vec::new();
        for child in node.children(&mut cursor) {
            match child.kind() {
                "import_prefix" => dots = x.text(child).chars().filter(|&c| c == '.').count(),
                "dotted_name" => rest = dotted(x, child)?,
                _ => {}
            }
        }
        let mut base = x.facts.module.clone();
        if !self.is_package {
            base.pop();
        }
        for _ in 1..dots {
            base.pop()?;
        }
        base.extend(rest);
        Some(base)
    }
}

/// `a.b.c` (an identifier, attribute chain or dotted name) as segments; `None` for anything else.
fn dotted(x: &Extractor, node: Node) -> Option<Vec<String>> {
    match node.kind() {
        "identifier" => Some(vec![x.text(node).to_owned()]),
        "dotted_name" => {
            let mut cursor = node.walk();
            Some(node.named_children(&mut cursor).map(|n| x.text(n).to_owned()).collect())
        }
        "attribute" => {
            let mut path = dotted(x, node.child_by_field_name("object")?)?;
            path.push(x.field_text(node, "attribute")?.to_owned());
            Some(path)
        }
        _ => None,
    }
}

/// `super()` (with or without arguments).
fn is_super_call(x: &Extractor, node: Node) -> bool {
    node.kind() == "call"
        && node.child_by_field_name("function").is_some_and(|f| f.kind() == "identifier" && x.text(f) == "super")
}

fn callee(x: &Extractor, f: Node) -> Option<Callee> {
    match f.kind() {
        "identifier" => Some(Callee::Name(x.text(f).to_owned())),
        "attribute" => {
            let name = x.field_text(f, "attribute")?.to_owned();
            let object = f.child_by_field_name("object")?;
            if is_super_call(x, object) {
                return Some(Callee::SuperMember(name));
            }
            match dotted(x, object) {
                Some(receiver) if receiver.len() == 1 && (receiver[0] == "self" || receiver[0] == "cls") => {
                    Some(Callee::SelfMember(name))
                }
                Some(receiver) => Some(Callee::Qualified { receiver, name }),
                None => Some(Callee::Dynamic(name)),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::lang::fixture::Fixture;

    #[test]
    fn python_fixture() {
        let g = Fixture::new()
            .file(
                "pkg/__init__.py",
                "from .models import User\n",
            )
            .file(
                "pkg/models.py",
                "class Base:\n    def save(self):\n        return self.validate()\n    def validate(self):\n        return True\n\nclass User(Base):\n    def rename(self, n):\n        self.save()\n        helper(n)\n    def validate(self):\n        return super().validate() and super(User, self).missing()\n\ndef helper(x):\n    return len(x)\n",
            )
            .file(
                "app.py",
                "import pkg.models as m\nfrom pkg import User\nfrom pkg.models import helper as h\n\ndef main():\n    u = User()\n    u.rename('x')\n    h(1)\n    m.helper(2)\n    undefined_thing()\n\nif __name__ == '__main__':\n    main()\n",
            )
            .analyze();
        g.has_node("py:pkg/models.py:Base", "class");
        g.has_node("py:pkg/models.py:User.rename", "method");
        g.has_node("py:app.py:main", "function");
        g.has_node("file:app.py", "file");
        g.has_node("dir:pkg", "directory");
        g.has_edge("dir:pkg", "contains", "file:pkg/models.py");
        g.has_edge("file:pkg/models.py", "defines", "py:pkg/models.py:User");
        g.has_edge("py:pkg/models.py:User", "defines", "py:pkg/models.py:User.rename");
        g.has_edge("py:pkg/models.py:User", "inherits", "py:pkg/models.py:Base");
        // self.save() is found on the base class; self.validate() on the own class.
        g.has_edge("py:pkg/models.py:User.rename", "calls", "py:pkg/models.py:Base.save");
        g.has_edge("py:pkg/models.py:Base.save", "calls", "py:pkg/models.py:Base.validate");
        // super().f() is the base's f, never the class's own; a name no base has stays unresolved.
        g.has_edge("py:pkg/models.py:User.validate", "calls", "py:pkg/models.py:Base.validate");
        g.no_edge_from("py:pkg/models.py:User.validate", "calls", "py:pkg/models.py:User.validate");
        g.unresolved("py:pkg/models.py:User.validate", &["super", "super().missing"]);
        g.has_edge("py:pkg/models.py:User.rename", "calls", "py:pkg/models.py:helper");
        // Cross-file: through a package re-export, an alias of a name, and a module alias.
        g.has_edge("file:app.py", "imports", "file:pkg/models.py");
        g.has_edge("file:app.py", "imports", "py:pkg/models.py:User");
        g.has_edge("file:app.py", "imports", "py:pkg/models.py:helper");
        g.has_edge("file:pkg/__init__.py", "imports", "py:pkg/models.py:User");
        g.has_edge("py:app.py:main", "calls", "py:pkg/models.py:User");
        g.has_edge("py:app.py:main", "calls", "py:pkg/models.py:helper");
        g.has_edge("file:app.py", "calls", "py:app.py:main");
        // Never guessed: a method on a variable of unknown type and an undefined name stay unresolved.
        g.no_edge_from("py:app.py:main", "calls", "py:pkg/models.py:User.rename");
        g.unresolved("py:app.py:main", &["u.rename", "undefined_thing"]);
        g.unresolved("py:pkg/models.py:helper", &["len"]);
    }

    #[test]
    fn repeated_names_get_stable_suffixes() {
        let g = Fixture::new()
            .file(
                "a.py",
                "class C:\n    @property\n    def x(self): return 1\n    @x.setter\n    def x(self, v): pass\n",
            )
            .analyze();
        g.has_node("py:a.py:C.x", "method");
        g.has_node("py:a.py:C.x#2", "method");
    }
}
