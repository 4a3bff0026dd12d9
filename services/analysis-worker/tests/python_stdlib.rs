//! Accuracy against an independent oracle: CPython's own `ast` module counts the classes, functions and
//! methods of every file of the machine's Python standard library that it can parse; the Python analyzer must
//! agree within 1% on each count.

use std::process::Command;

use analysis_worker::{
    analysis::{content_hash, Analyzer, Hooks, Loaded, Report},
    facts::DefKind,
    lang::Language,
};

/// Walks the standard library with `ast`: a function directly in a class body (or in an `if`/`try` of it)
/// is a method, any other function (top-level or nested) a function.
const ORACLE: &str = r#"
import ast, json, os, sysconfig
root = sysconfig.get_paths()["stdlib"]
out = {"root": root, "files": [], "classes": 0, "functions": 0, "methods": 0}
def walk(node, in_class):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            out["classes"] += 1
            walk(child, True)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out["methods" if in_class else "functions"] += 1
            walk(child, False)
        else:
            walk(child, in_class)
for d, dirs, files in os.walk(root):
    dirs[:] = sorted(x for x in dirs if x not in ("site-packages", "__pycache__"))
    for f in sorted(files):
        if not f.endswith(".py"):
            continue
        p = os.path.join(d, f)
        try:
            src = open(p, encoding="utf-8").read()
            tree = ast.parse(src)
        except Exception:
            continue
        out["files"].append(os.path.relpath(p, root))
        walk(tree, False)
print(json.dumps(out))
"#;

#[test]
fn python_definitions_match_cpython_ast_on_the_standard_library() {
    let output = Command::new("python3").arg("-c").arg(ORACLE).output().expect("python3 must be installed");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let oracle: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let root = std::path::PathBuf::from(oracle["root"].as_str().unwrap());
    let files: Vec<Loaded> = oracle["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let path = p.as_str().unwrap().to_owned();
            let text = std::fs::read_to_string(root.join(&path)).unwrap();
            Loaded { hash: content_hash(text.as_bytes()), path, language: Language::Python, text }
        })
        .collect();
    let n = files.len();
    assert!(n > 500, "only {n} standard library files");
    let analysis = Analyzer::new().analyze(files, Report::default(), "stdlib", &Hooks::none()).unwrap();
    assert_eq!(analysis.report.files as usize, n, "{:?}", analysis.report.failed);
    let (mut classes, mut functions, mut methods) = (0u64, 0u64, 0u64);
    for f in &analysis.resolved.files {
        for d in &f.facts.definitions {
            match d.kind {
                DefKind::Class => classes += 1,
                DefKind::Function => functions += 1,
                DefKind::Method => methods += 1,
                DefKind::Module => {}
            }
        }
    }
    let report = format!(
        "{n} files: classes {classes} vs ast {}, functions {functions} vs {}, methods {methods} vs {}",
        oracle["classes"], oracle["functions"], oracle["methods"]
    );
    eprintln!("{report}");
    for (ours, key) in [(classes, "classes"), (functions, "functions"), (methods, "methods")] {
        let theirs = oracle[key].as_u64().unwrap();
        let off = (ours as f64 - theirs as f64).abs() / theirs as f64;
        assert!(off <= 0.01, "{key} differ by {:.2}%: {report}", off * 100.0);
    }
}
