//! TypeScript and TSX: the JavaScript walk ([`super::javascript::extract_ecma`]) plus what only TypeScript has,
//! which the shared walk already knows by node kind: interfaces, enums, abstract classes, namespaces, method
//! signatures and `implements`. One analyzer, two grammars (`.ts` and `.tsx`).

use tree_sitter::Tree;

use super::{javascript::extract_ecma, Language, LanguageAnalyzer};
use crate::facts::FileFacts;

pub struct TypeScript {
    pub tsx: bool,
}

impl LanguageAnalyzer for TypeScript {
    fn language(&self) -> Language {
        if self.tsx {
            Language::Tsx
        } else {
            Language::TypeScript
        }
    }

    fn extract(&self, path: &str, tree: &Tree, source: &str) -> FileFacts {
        extract_ecma(path, tree, source)
    }
}

#[cfg(test)]
mod tests {
    use crate::lang::fixture::Fixture;

    #[test]
    fn typescript_and_tsx_fixture() {
        let g = Fixture::new()
            .file(
                "src/model.ts",
                "export interface Named { name(): string; }\nexport enum Color { Red, Green }\nexport abstract class Shape implements Named {\n  abstract area(): number;\n  name(): string { return 'shape'; }\n}\nexport namespace Geo { export function dist(a: number): number { return a; } }\n",
            )
            .file(
                "src/circle.ts",
                "import { Shape, Named, Geo } from './model';\nexport class Circle extends Shape implements Named {\n  area(): number { return Geo.dist(1) * this.radius(); }\n  radius(): number { return 1; }\n}\n",
            )
            .file(
                "src/View.tsx",
                "import { Circle } from './circle';\nexport function View(): JSX.Element {\n  const c = new Circle();\n  return <div>{c.area()}</div>;\n}\n",
            )
            .analyze();
        g.subkind("ts:src/model.ts:Named", "interface");
        g.subkind("ts:src/model.ts:Color", "enum");
        g.subkind("ts:src/model.ts:Shape", "class");
        g.has_node("ts:src/model.ts:Shape.area", "method");
        g.has_node("ts:src/model.ts:Named.name", "method");
        g.has_node("ts:src/model.ts:Geo", "module");
        g.has_node("ts:src/model.ts:Geo.dist", "function");
        g.has_edge("ts:src/model.ts:Shape", "implements", "ts:src/model.ts:Named");
        g.has_edge("ts:src/circle.ts:Circle", "inherits", "ts:src/model.ts:Shape");
        g.has_edge("ts:src/circle.ts:Circle", "implements", "ts:src/model.ts:Named");
        g.has_edge("ts:src/circle.ts:Circle.area", "calls", "ts:src/model.ts:Geo.dist");
        g.has_edge("ts:src/circle.ts:Circle.area", "calls", "ts:src/circle.ts:Circle.radius");
        g.has_edge("tsx:src/View.tsx:View", "calls", "ts:src/circle.ts:Circle");
        g.has_edge("file:src/View.tsx", "imports", "ts:src/circle.ts:Circle");
        g.unresolved("tsx:src/View.tsx:View", &["c.area"]);
    }
}
