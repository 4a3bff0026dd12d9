//! Java: packages (files of one package see each other's top-level types), classes, interfaces, enums,
//! records, annotations, methods and constructors, imports (single-type, on-demand `*`, static), calls
//! (implicit `this` members included) and `new`, `extends` and `implements`.

use tree_sitter::{Node, Tree};

use super::{extractor::each_child, Extractor, Language, LanguageAnalyzer};
use crate::facts::{Base, BaseRelation, Callee, DefKind, FileFacts, Import};

pub struct Java;

impl LanguageAnalyzer for Java {
    fn language(&self) -> Language {
        Language::Java
    }

    fn implicit_members(&self) -> bool {
        true
    }

    fn extract(&self, _path: &str, tree: &Tree, source: &str) -> FileFacts {
        let mut x = Extractor::new(source, Vec::new());
        x.facts.shared_module = true;
        visit(&mut x, tree.root_node());
        x.facts
    }
}

fn visit(x: &mut Extractor, node: Node) {
    match node.kind() {
        "package_declaration" => {
            let mut c = node.walk();
            let package = node.named_children(&mut c).find_map(|n| dotted(x, n));
            if let Some(p) = package {
                x.facts.module = p;
            }
        }
        "import_declaration" => import(x, node),
        "class_declaration" => class(x, node, "class"),
        "interface_declaration" => class(x, node, "interface"),
        "enum_declaration" => class(x, node, "enum"),
        "record_declaration" => class(x, node, "record"),
        "annotation_type_declaration" => class(x, node, "annotation"),
        "method_declaration" | "constructor_declaration" => {
            let Some(name) = x.field_text(node, "name") else { return children(x, node) };
            let kind = if x.scope_kind() == Some(DefKind::Class) { DefKind::Method } else { DefKind::Function };
            let def = x.define(kind, None, name, node);
            x.within(def, |x| children(x, node));
        }
        "method_invocation" => {
            if let Some(name) = x.field_text(node, "name") {
                let callee = match node.child_by_field_name("object") {
                    None => Callee::Name(name.to_owned()),
                    Some(o) if o.kind() == "this" => Callee::SelfMember(name.to_owned()),
                    Some(o) => match dotted(x, o) {
                        Some(receiver) => Callee::Qualified { receiver, name: name.to_owned() },
                        None => Callee::Dynamic(name.to_owned()),
                    },
                };
                x.call(callee, node);
            }
            children(x, node);
        }
        "object_creation_expression" => {
            if let Some(mut path) = node.child_by_field_name("type").and_then(|t| type_path(x, t)) {
                let name = path.pop().unwrap_or_default();
                let callee =
                    if path.is_empty() { Callee::Name(name) } else { Callee::Qualified { receiver: path, name } };
                x.call(callee, node);
            }
            children(x, node);
        }
        _ => children(x, node),
    }
}

fn children(x: &mut Extractor, node: Node) {
    each_child(node, |child| visit(x, child));
}

fn class(x: &mut Extractor, node: Node, subkind: &'static str) {
    let Some(name) = x.field_text(node, "name") else { return children(x, node) };
    let def = x.define(DefKind::Class, Some(subkind), name, node);
    let mut c = node.walk();
    for child in node.children(&mut c) {
        let relation = match child.kind() {
            "superclass" | "extends_interfaces" => BaseRelation::Inherits,
            "super_interfaces" => BaseRelation::Implements,
            _ => continue,
        };
        let mut types = Vec::new();
        collect_types(x, child, &mut types);
        for path in types {
            x.add_base(def, Base { path, relation });
        }
    }
    if let Some(body) = node.child_by_field_name("body") {
        x.within(def, |x| children(x, body));
    }
}

fn collect_types(x: &Extractor, node: Node, out: &mut Vec<Vec<String>>) {
    let mut c = node.walk();
    for child in node.named_children(&mut c) {
        match child.kind() {
            "type_list" => collect_types(x, child, out),
            _ => out.extend(type_path(x, child)),
        }
    }
}

fn import(x: &mut Extractor, node: Node) {
    let mut c = node.walk();
    let mut path = None;
    let mut wildcard = false;
    for child in node.named_children(&mut c) {
        match child.kind() {
            "asterisk" => wildcard = true,
            _ => path = path.or_else(|| dotted(x, child)),
        }
    }
    let Some(mut path) = path else { return };
    let line = Extractor::line(node);
    let text = x.text(node).to_owned();
    if wildcard {
        x.import(Import { candidates: vec![path], name: None, local: None, line, text });
    } else {
        let name = path.pop();
        let local = name.clone();
        x.import(Import { candidates: vec![path], name, local, line, text });
    }
}

fn dotted(x: &Extractor, node: Node) -> Option<Vec<String>> {
    match node.kind() {
        "identifier" | "type_identifier" => Some(vec![x.text(node).to_owned()]),
        "scoped_identifier" => {
            let mut p = dotted(x, node.child_by_field_name("scope")?)?;
            p.push(x.field_text(node, "name")?.to_owned());
            Some(p)
        }
        "field_access" => {
            let mut p = dotted(x, node.child_by_field_name("object")?)?;
            p.push(x.field_text(node, "field")?.to_owned());
            Some(p)
        }
        _ => None,
    }
}

/// `Foo`, `a.b.Foo`, `Foo<T>` as a path.
fn type_path(x: &Extractor, node: Node) -> Option<Vec<String>> {
    match node.kind() {
        "type_identifier" => Some(vec![x.text(node).to_owned()]),
        "scoped_type_identifier" => {
            let mut c = node.walk();
            let mut out = Vec::new();
            for child in node.named_children(&mut c) {
                out.extend(type_path(x, child)?);
            }
            Some(out)
        }
        "generic_type" => {
            let mut c = node.walk();
            let first = node.named_children(&mut c).next()?;
            type_path(x, first)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::lang::fixture::Fixture;

    #[test]
    fn java_fixture() {
        let g = Fixture::new()
            .file("src/main/java/com/acme/shapes/Shape.java", "package com.acme.shapes;\n\npublic interface Shape { double area(); }\n")
            .file("src/main/java/com/acme/shapes/Base.java", "package com.acme.shapes;\n\npublic abstract class Base implements Shape {\n  protected double scale() { return 1.0; }\n  public String describe() { return \"\" + area() * scale(); }\n}\n")
            .file("src/main/java/com/acme/shapes/Circle.java", "package com.acme.shapes;\n\npublic class Circle extends Base {\n  private final double r;\n  public Circle(double r) { this.r = r; }\n  public double area() { return Math.PI * r * r * this.scale(); }\n}\n")
            .file("src/main/java/com/acme/App.java", "package com.acme;\n\nimport com.acme.shapes.Circle;\nimport java.util.List;\n\npublic class App {\n  public static void main(String[] args) {\n    Circle c = new Circle(2);\n    System.out.println(c.describe());\n    helper();\n  }\n  static void helper() {}\n  enum Mode { A, B }\n}\n")
            .analyze();
        g.subkind("java:src/main/java/com/acme/shapes/Shape.java:Shape", "interface");
        g.subkind("java:src/main/java/com/acme/App.java:App.Mode", "enum");
        g.has_node("java:src/main/java/com/acme/shapes/Circle.java:Circle.Circle", "method");
        g.has_edge(
            "java:src/main/java/com/acme/shapes/Base.java:Base",
            "implements",
            "java:src/main/java/com/acme/shapes/Shape.java:Shape",
        );
        g.has_edge(
            "java:src/main/java/com/acme/shapes/Circle.java:Circle",
            "inherits",
            "java:src/main/java/com/acme/shapes/Base.java:Base",
        );
        g.has_edge(
            "file:src/main/java/com/acme/App.java",
            "imports",
            "java:src/main/java/com/acme/shapes/Circle.java:Circle",
        );
        g.has_edge(
            "java:src/main/java/com/acme/App.java:App.main",
            "calls",
            "java:src/main/java/com/acme/shapes/Circle.java:Circle",
        );
        g.has_edge(
            "java:src/main/java/com/acme/App.java:App.main",
            "calls",
            "java:src/main/java/com/acme/App.java:App.helper",
        );
        g.has_edge(
            "java:src/main/java/com/acme/shapes/Circle.java:Circle.area",
            "calls",
            "java:src/main/java/com/acme/shapes/Base.java:Base.scale",
        );
        g.has_edge(
            "java:src/main/java/com/acme/shapes/Base.java:Base.describe",
            "calls",
            "java:src/main/java/com/acme/shapes/Base.java:Base.scale",
        );
        g.unresolved("java:src/main/java/com/acme/App.java:App.main", &["System.out.println", "c.describe"]);
    }
}
