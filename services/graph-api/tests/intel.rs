//! The code-intelligence routes on real analyses: each fixture repository (`tests/fixtures/intel/<language>`) is
//! analysed by the real analysis-worker binary into a real redis-server, and the callers, callees, impact sets,
//! paths, dependencies and context graph-api answers are compared with what reading the fixture's code says,
//! including the calls the analysis leaves unresolved. Bad input gets clear errors and changes nothing.

mod common;

use std::{path::PathBuf, process::Command};

use codegraph_shared::testing::{RedisCluster, RedisServer};
use common::GraphApi;
use serde_json::{json, Value};

fn fixture(language: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intel").join(language)
}

/// The analysis-worker binary (`cargo build -p analysis-worker`, or `$ANALYSIS_WORKER_BIN`).
fn worker_bin() -> PathBuf {
    let bin = std::env::var_os("ANALYSIS_WORKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/analysis-worker"));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p analysis-worker` (or set ANALYSIS_WORKER_BIN)",
        bin.display()
    );
    bin
}

/// Analyses the fixture of `language` into project `language`, then starts graph-api on the same Redis.
async fn analysed(language: &str) -> (RedisServer, GraphApi) {
    let redis = RedisServer::start();
    analyse(language, &redis, &[]);
    let api = GraphApi::start(&redis).await;
    (redis, api)
}

/// Runs `analysis-worker analyze` on the fixture of `language` (extra settings in `env`).
fn analyse(language: &str, redis: &RedisServer, env: &[(&str, &str)]) {
    let out = Command::new(worker_bin())
        .args(["analyze", "--project", language, "--path"])
        .arg(fixture(language))
        .env("CODEGRAPH__REDIS__URL", redis.url())
        .env("CODEGRAPH_CONFIG_DIR", redis.dir().join("no-config"))
        .env("CODEGRAPH__TELEMETRY__LOG_LEVEL", "error")
        .envs(env.iter().copied())
        .output()
        .expect("run analysis-worker analyze");
    assert!(out.status.success(), "analysis failed: {}", String::from_utf8_lossy(&out.stderr));
}

async fn ok(api: &GraphApi, path: &str) -> Value {
    let (status, body) = api.get(path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// `(depth, id)` of each entry of `results`.
fn found(body: &Value) -> Vec<(u64, String)> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["depth"].as_u64().unwrap(), e["node"]["id"].as_str().unwrap().to_owned()))
        .collect()
}

fn at(list: &[(u64, &str)]) -> Vec<(u64, String)> {
    list.iter().map(|(d, id)| (*d, id.to_string())).collect()
}

/// `(node id, call, depth)` of each unresolved entry.
fn unresolved(body: &Value) -> Vec<(String, String, u64)> {
    body["unresolved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["node"]["id"].as_str().unwrap().to_owned(),
                u["call"].as_str().unwrap().to_owned(),
                u["depth"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn un(list: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
    list.iter().map(|(n, c, d)| (n.to_string(), c.to_string(), *d)).collect()
}

/// The impact answer as `depth → sorted ids`.
fn levels(body: &Value) -> Vec<(u64, Vec<String>)> {
    body["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let ids = l["nodes"].as_array().unwrap().iter().map(|n| n["node"]["id"].as_str().unwrap().to_owned());
            (l["depth"].as_u64().unwrap(), ids.collect())
        })
        .collect()
}

fn lv(list: &[(u64, &[&str])]) -> Vec<(u64, Vec<String>)> {
    list.iter().map(|(d, ids)| (*d, ids.iter().map(|s| s.to_string()).collect())).collect()
}

fn path_ids(body: &Value) -> Vec<String> {
    body["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `(node id, via)` of an import list.
fn imports(body: &Value, list: &str) -> Vec<(String, Option<String>)> {
    body[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["node"]["id"].as_str().unwrap().to_owned(), e["via"].as_str().map(str::to_owned)))
        .collect()
}

fn im(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    list.iter().map(|(n, v)| (n.to_string(), v.map(str::to_owned))).collect()
}

#[tokio::test]
async fn python_callers_callees_impact_path_dependencies_and_context() {
    let (_redis, api) = analysed("python").await;
    let q = |route: &str, rest: &str| format!("/api/graph/{route}?project=python&{rest}");

    // helper is called by Service.run and store.write; save calls write; nothing resolved calls run.
    let callers = ok(&api, &q("callers", "symbol=helper&depth=3")).await;
    assert_eq!(callers["symbol"]["id"], "py:lib/util.py:helper");
    assert_eq!(callers["resolution"]["by"], "name");
    assert_eq!(
        found(&callers),
        at(&[(1, "py:app.py:Service.run"), (1, "py:lib/store.py:write"), (2, "py:app.py:Service.save")])
    );
    assert_eq!(callers["results"][2]["via"], "py:lib/store.py:write");
    assert_eq!(callers["results"][2]["relationship_id"], "py:app.py:Service.save|calls|py:lib/store.py:write");
    assert_eq!(callers["results"][2]["confidence"], 1.0);
    assert_eq!(callers["counts"], json!({"results": 3, "by_depth": {"1": 2, "2": 1}, "unresolved": 0}));
    assert_eq!(callers["truncated"], false);
    let capped = ok(&api, &q("callers", "symbol=helper&depth=3&limit=2")).await;
    assert_eq!(found(&capped), at(&[(1, "py:app.py:Service.run"), (1, "py:lib/store.py:write")]));
    assert_eq!(capped["truncated"], true);
    let direct = ok(&api, &q("callers", "symbol=py:lib/util.py:helper")).await;
    assert_eq!(direct["resolution"]["by"], "id");
    assert_eq!(found(&direct), at(&[(1, "py:app.py:Service.run"), (1, "py:lib/store.py:write")]));

    // `Service().run()` is not resolved: main is only a possible caller of run, listed apart when asked.
    let run = ok(&api, &q("callers", "symbol=py:app.py:Service.run")).await;
    assert_eq!(found(&run), at(&[]));
    assert_eq!(run["unresolved_searched"], false);
    let run = ok(&api, &q("callers", "symbol=py:app.py:Service.run&unresolved=true")).await;
    assert_eq!(found(&run), at(&[]));
    assert_eq!(unresolved(&run), un(&[("py:app.py:main", "?.run", 1)]));
    assert_eq!(run["unresolved_searched"], true);

    let callees = ok(&api, &q("callees", "symbol=py:app.py:Service.run&depth=2")).await;
    assert_eq!(
        found(&callees),
        at(&[
            (1, "py:app.py:Service.save"),
            (1, "py:lib/util.py:helper"),
            (2, "py:lib/store.py:write"),
            (2, "py:lib/util.py:inner"),
        ])
    );
    assert_eq!(unresolved(&callees), un(&[("py:app.py:Service.run", "missing_function", 1)]));
    assert_eq!(callees["counts"]["unresolved"], 1);
    // Every resolved call of the fixture is certain: a threshold above 1 is refused, 1 keeps them all.
    let certain = ok(&api, &q("callees", "symbol=py:app.py:Service.run&depth=2&min_confidence=1")).await;
    assert_eq!(found(&certain), found(&callees));

    // inner ← helper ← (run, write, the two files importing helper) ← save.
    let impact = ok(&api, &q("impact", "symbol=inner")).await;
    assert_eq!(
        levels(&impact),
        lv(&[
            (1, &["py:lib/util.py:helper"]),
            (2, &["file:app.py", "file:lib/store.py", "py:app.py:Service.run", "py:lib/store.py:write"]),
            (3, &["py:app.py:Service.save"]),
        ])
    );
    assert_eq!(impact["seeds"], 1);
    assert_eq!(impact["counts"]["total"], 6);
    assert_eq!(impact["counts"]["by_type"], json!({"calls": 4, "imports": 2}));
    assert_eq!(impact["counts"]["by_kind"], json!({"file": 2, "function": 2, "method": 2}));
    assert_eq!(impact["files"], json!(["app.py", "lib/store.py", "lib/util.py"]));
    let shallow = ok(&api, &q("impact", "symbol=inner&depth=1")).await;
    assert_eq!(levels(&shallow), lv(&[(1, &["py:lib/util.py:helper"])]));
    // A file's impact starts from its definitions too: importing Base or helper depends on lib/util.py.
    let file = ok(&api, &q("impact", "symbol=file:lib/util.py&depth=2")).await;
    assert_eq!(file["seeds"], 5);
    assert_eq!(
        levels(&file),
        lv(&[
            (
                1,
                &[
                    "file:app.py",
                    "file:lib/store.py",
                    "py:app.py:Service",
                    "py:app.py:Service.run",
                    "py:lib/store.py:write"
                ]
            ),
            (2, &["py:app.py:Service.save", "py:app.py:main"]),
        ])
    );
    // The cap is said.
    let capped = ok(&api, &q("impact", "symbol=inner&limit=2")).await;
    assert_eq!(capped["counts"]["total"], 2);
    assert_eq!(capped["truncated"], true);

    let path = ok(&api, &q("path", "from=save&to=inner")).await;
    assert_eq!(
        path_ids(&path),
        strings(&["py:app.py:Service.save", "py:lib/store.py:write", "py:lib/util.py:helper", "py:lib/util.py:inner"])
    );
    assert_eq!(path["length"], 3);
    assert_eq!(path["relationships"][0]["id"], "py:app.py:Service.save|calls|py:lib/store.py:write");
    let through_import = ok(&api, &q("path", "from=file:app.py&to=inner")).await;
    assert_eq!(path_ids(&through_import), strings(&["file:app.py", "py:lib/util.py:helper", "py:lib/util.py:inner"]));
    assert_eq!(through_import["relationships"][0]["type"], "imports");
    // main reaches inner only through the unresolved `?.run`.
    let (status, none) = api.get(&q("path", "from=main&to=inner")).await;
    assert_eq!(status, 404, "{none}");
    assert_eq!(none["error"]["code"], "no_path");
    assert_eq!(none["error"]["details"]["truncated"], false);
    let (status, short) = api.get(&q("path", "from=save&to=inner&max_depth=2")).await;
    assert_eq!((status, short["error"]["code"].as_str()), (404, Some("no_path")));
    let structural = ok(&api, &q("path", "from=dir:.&to=inner&types=contains,defines")).await;
    assert_eq!(path_ids(&structural), strings(&["dir:.", "dir:lib", "file:lib/util.py", "py:lib/util.py:inner"]));

    let util = ok(&api, &q("dependencies", "target=lib/util.py")).await;
    assert_eq!(util["resolution"]["by"], "path");
    assert_eq!(imports(&util, "imports"), im(&[]));
    assert_eq!(
        imports(&util, "imported_by"),
        im(&[
            ("file:app.py", Some("py:lib/util.py:Base")),
            ("file:app.py", Some("py:lib/util.py:helper")),
            ("file:lib/store.py", Some("py:lib/util.py:helper")),
        ])
    );
    let app = ok(&api, &q("dependencies", "target=file:app.py")).await;
    assert_eq!(
        imports(&app, "imports"),
        im(&[("file:lib/store.py", None), ("py:lib/util.py:Base", None), ("py:lib/util.py:helper", None)])
    );
    assert_eq!(imports(&app, "imported_by"), im(&[]));
    let store = ok(&api, &q("dependencies", "target=lib/store.py")).await;
    assert_eq!(imports(&store, "imported_by"), im(&[("file:app.py", None)]));

    let context = ok(&api, &q("context", "symbol=py:app.py:Service.run")).await;
    let chain: Vec<&str> =
        context["containers"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(chain, ["py:app.py:Service", "file:app.py", "dir:."]);
    assert_eq!(context["file"]["id"], "file:app.py");
    assert_eq!(
        (context["path"].as_str(), context["line_start"].as_u64(), context["line_end"].as_u64()),
        (Some("app.py"), Some(6), Some(9))
    );
    assert_eq!(context["symbol"]["properties"]["unresolved_calls"], json!(["missing_function"]));
    assert_eq!(
        context["source"]["text"],
        "    def run(self):\n        helper(1)\n        self.save()\n        missing_function()\n"
    );
    let file = ok(&api, &q("context", "symbol=file:lib/util.py&source=false")).await;
    let chain: Vec<&str> = file["containers"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(chain, ["dir:lib", "dir:."]);
    let members: Vec<&str> = file["members"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(members, ["py:lib/util.py:helper", "py:lib/util.py:inner", "py:lib/util.py:Base"]);
    assert_eq!(file["file"]["id"], "file:lib/util.py");
    let method = ok(&api, &q("context", "symbol=describe&source=false")).await;
    let chain: Vec<&str> = method["containers"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(chain, ["py:lib/util.py:Base", "file:lib/util.py", "dir:lib", "dir:."]);
    let class = ok(&api, &q("context", "symbol=Service&source=false")).await;
    let members: Vec<&str> = class["members"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(members, ["py:app.py:Service.run", "py:app.py:Service.save"]);
    assert_eq!(class["source"], Value::Null);
}

#[tokio::test]
async fn typescript_callers_callees_impact_path_and_dependencies() {
    let (_redis, api) = analysed("typescript").await;
    let q = |route: &str, rest: &str| format!("/api/graph/{route}?project=typescript&{rest}");

    let callers = ok(&api, &q("callers", "symbol=multiply&depth=3")).await;
    assert_eq!(
        found(&callers),
        at(&[
            (1, "ts:src/main.ts:report"),
            (1, "ts:src/math.ts:square"),
            (2, "ts:src/shapes.ts:Square.area"),
            (3, "ts:src/shapes.ts:Cube.volume"),
        ])
    );
    // `this.area()` resolves through the base class, with less confidence: a threshold above it stops there.
    assert_eq!(callers["results"][3]["confidence"], 0.8);
    assert_eq!(
        callers["results"][3]["relationship_id"],
        "ts:src/shapes.ts:Cube.volume|calls|ts:src/shapes.ts:Square.area"
    );
    let confident = ok(&api, &q("callers", "symbol=multiply&depth=3&min_confidence=0.9")).await;
    assert_eq!(
        found(&confident),
        at(&[(1, "ts:src/main.ts:report"), (1, "ts:src/math.ts:square"), (2, "ts:src/shapes.ts:Square.area")])
    );
    assert_eq!(confident["min_confidence"], 0.9);
    let callees = ok(&api, &q("callees", "symbol=report")).await;
    assert_eq!(found(&callees), at(&[(1, "ts:src/math.ts:multiply"), (1, "ts:src/shapes.ts:Cube")]));
    // `c.volume()` on a local of inferred type stays unresolved, by name.
    assert_eq!(unresolved(&callees), un(&[("ts:src/main.ts:report", "c.volume", 1)]));
    let deeper = ok(&api, &q("callees", "symbol=ts:src/shapes.ts:Cube.volume&depth=3")).await;
    assert_eq!(
        found(&deeper),
        at(&[(1, "ts:src/shapes.ts:Square.area"), (2, "ts:src/math.ts:square"), (3, "ts:src/math.ts:multiply")])
    );
    assert_eq!(unresolved(&deeper), un(&[("ts:src/shapes.ts:Cube.volume", "externalScale", 1)]));

    // Two methods are called `area`: the first the search finds is answered, and the other is named.
    let ambiguous = ok(&api, &q("callers", "symbol=area")).await;
    assert_eq!(ambiguous["symbol"]["id"], "ts:src/math.ts:Shape.area");
    assert_eq!(ambiguous["resolution"]["by"], "name");
    let others: Vec<&str> = ambiguous["resolution"]["other_matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(others, ["ts:src/shapes.ts:Square.area"]);
    assert_eq!(found(&ambiguous), at(&[]));
    let chosen = ok(&api, &q("callers", "symbol=ts:src/shapes.ts:Square.area")).await;
    assert_eq!(found(&chosen), at(&[(1, "ts:src/shapes.ts:Cube.volume")]));

    // Shape ← Square (implements), shapes.ts (imports) ← Cube (inherits) ← report (calls), main.ts (imports).
    let impact = ok(&api, &q("impact", "symbol=ts:src/math.ts:Shape")).await;
    assert_eq!(
        levels(&impact),
        lv(&[
            (1, &["file:src/shapes.ts", "ts:src/shapes.ts:Square"]),
            (2, &["ts:src/shapes.ts:Cube"]),
            (3, &["file:src/main.ts", "ts:src/main.ts:report"]),
        ])
    );
    assert_eq!(impact["counts"]["by_type"], json!({"calls": 1, "imports": 2, "implements": 1, "inherits": 1}));

    let path = ok(&api, &q("path", "from=volume&to=multiply")).await;
    assert_eq!(
        path_ids(&path),
        strings(&[
            "ts:src/shapes.ts:Cube.volume",
            "ts:src/shapes.ts:Square.area",
            "ts:src/math.ts:square",
            "ts:src/math.ts:multiply"
        ])
    );
    let inherit = ok(&api, &q("path", "from=ts:src/shapes.ts:Cube&to=ts:src/math.ts:Shape")).await;
    let types: Vec<&str> =
        inherit["relationships"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["inherits", "implements"]);

    let math = ok(&api, &q("dependencies", "target=src/math.ts")).await;
    assert_eq!(
        imports(&math, "imported_by"),
        im(&[
            ("file:src/main.ts", Some("ts:src/math.ts:multiply")),
            ("file:src/shapes.ts", Some("ts:src/math.ts:Shape")),
            ("file:src/shapes.ts", Some("ts:src/math.ts:square")),
        ])
    );
    let shapes = ok(&api, &q("dependencies", "target=src/shapes.ts")).await;
    assert_eq!(imports(&shapes, "imports"), im(&[("ts:src/math.ts:Shape", None), ("ts:src/math.ts:square", None)]));
    assert_eq!(imports(&shapes, "imported_by"), im(&[("file:src/main.ts", Some("ts:src/shapes.ts:Cube"))]));
}

#[tokio::test]
async fn rust_callers_callees_impact_path_and_an_unresolved_module_call() {
    let (_redis, api) = analysed("rust").await;
    let q = |route: &str, rest: &str| format!("/api/graph/{route}?project=rust&{rest}");

    let callers = ok(&api, &q("callers", "symbol=split&depth=2")).await;
    assert_eq!(
        found(&callers),
        at(&[(1, "rs:src/parser.rs:Simple.lex"), (1, "rs:src/parser.rs:tokenize"), (2, "rs:src/lib.rs:run_lexer")])
    );
    // `parser::tokenize(input)` is not resolved: run is no caller of tokenize, only a possible one.
    let tokenize = ok(&api, &q("callers", "symbol=tokenize&unresolved=true")).await;
    assert_eq!(found(&tokenize), at(&[]));
    assert_eq!(unresolved(&tokenize), un(&[("rs:src/lib.rs:run", "parser.tokenize", 1)]));

    let callees = ok(&api, &q("callees", "symbol=rs:src/lib.rs:run&depth=2")).await;
    assert_eq!(found(&callees), at(&[(1, "rs:src/lib.rs:count")]));
    assert_eq!(
        unresolved(&callees),
        un(&[("rs:src/lib.rs:run", "parser.tokenize", 1), ("rs:src/lib.rs:count", "tokens.len", 2)])
    );

    let impact = ok(&api, &q("impact", "symbol=rs:src/parser.rs:split")).await;
    assert_eq!(
        levels(&impact),
        lv(&[(1, &["rs:src/parser.rs:Simple.lex", "rs:src/parser.rs:tokenize"]), (2, &["rs:src/lib.rs:run_lexer"])])
    );
    let lexer = ok(&api, &q("impact", "symbol=Lexer")).await;
    assert_eq!(levels(&lexer), lv(&[(1, &["file:src/lib.rs", "rs:src/parser.rs:Simple"])]));

    let path = ok(&api, &q("path", "from=run_lexer&to=split")).await;
    assert_eq!(
        path_ids(&path),
        strings(&["rs:src/lib.rs:run_lexer", "rs:src/parser.rs:Simple.lex", "rs:src/parser.rs:split"])
    );
    let (status, none) = api.get(&q("path", "from=rs:src/lib.rs:run&to=split")).await;
    assert_eq!((status, none["error"]["code"].as_str()), (404, Some("no_path")));

    let lib = ok(&api, &q("dependencies", "target=src/lib.rs")).await;
    assert_eq!(imports(&lib, "imports"), im(&[("rs:src/parser.rs:Lexer", None), ("rs:src/parser.rs:Simple", None)]));
    let context = ok(&api, &q("context", "symbol=rs:src/parser.rs:tokenize")).await;
    assert!(context["source"]["text"].as_str().unwrap().starts_with("pub fn tokenize(input: &str)"), "{context}");
}

/// The graph's size and its stream's length: what a refused request must leave as it was.
fn footprint(redis: &RedisServer, project: &str) -> (u64, u64, u64) {
    let mut conn = redis.connection();
    let prefix = format!("code_graph:{{{project}}}");
    let nodes: u64 = redis::cmd("HLEN").arg(format!("{prefix}:nodes")).query(&mut conn).unwrap();
    let rels: u64 = redis::cmd("HLEN").arg(format!("{prefix}:rels")).query(&mut conn).unwrap();
    let events: u64 = redis::cmd("XLEN").arg(format!("{prefix}:cdc")).query(&mut conn).unwrap();
    (nodes, rels, events)
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
    let (redis, api) = analysed("python").await;
    let before = footprint(&redis, "python");
    let refused: [(&str, u16, &str); 14] = [
        ("/api/graph/callers?project=python&symbol=no_such_symbol_anywhere", 404, "unknown_symbol"),
        ("/api/graph/callers?project=nobody&symbol=helper", 404, "unknown_project"),
        ("/api/graph/callers?project=bad%20name&symbol=helper", 400, "invalid_project"),
        ("/api/graph/callers?project=python", 400, "invalid_query"),
        ("/api/graph/callers?project=python&symbol=", 400, "invalid_query"),
        ("/api/graph/callers?project=python&symbol=helper&depth=0", 400, "invalid_query"),
        ("/api/graph/callees?project=python&symbol=helper&depth=6", 400, "invalid_query"),
        ("/api/graph/callees?project=python&symbol=helper&depth=two", 400, "invalid_query"),
        ("/api/graph/callers?project=python&symbol=helper&min_confidence=1.5", 400, "invalid_query"),
        ("/api/graph/impact?project=python&symbol=helper&depth=11", 400, "invalid_query"),
        ("/api/graph/path?project=python&from=helper&to=inner&max_depth=0", 400, "invalid_query"),
        ("/api/graph/path?project=python&from=helper&to=inner&types=calls,likes", 400, "invalid_query"),
        ("/api/graph/path?project=python&from=helper&to=nothing_like_it", 404, "unknown_symbol"),
        ("/api/graph/dependencies?project=python&target=no/such/file.py", 404, "unknown_symbol"),
    ];
    for (path, status, code) in refused {
        let (got, body) = api.get(path).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty(), "{path}: {body}");
    }
    assert_eq!(footprint(&redis, "python"), before);
}

#[tokio::test]
async fn source_text_is_read_only_inside_the_analysed_folder() {
    let (redis, api) = analysed("python").await;
    // A node a client wrote, naming a file outside the folder: even recorded as analysed, it is not read.
    let node = json!({"id": "evil", "kind": "function", "name": "evil", "file": "../rust/src/lib.rs", "line_start": 1, "line_end": 3});
    let (status, body) = api.post("/api/graph/nodes?project=python", node).await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let evil = ok(&api, "/api/graph/context?project=python&symbol=evil").await;
    assert_eq!(evil["source"], Value::Null);
    assert!(evil["source_unavailable"].as_str().unwrap().contains("not one the analysis-worker analysed"), "{evil}");
    let mut conn = redis.connection();
    let _: i64 = redis::cmd("HSET")
        .arg("code_graph:{python}:file_hashes")
        .arg("../rust/src/lib.rs")
        .arg("x")
        .query(&mut conn)
        .unwrap();
    let evil = ok(&api, "/api/graph/context?project=python&symbol=evil").await;
    assert_eq!(evil["source"], Value::Null);
    assert!(evil["source_unavailable"].as_str().unwrap().contains("outside the analysed folder"), "{evil}");
    // A container a client wrote, under an id of its own, is found by the walk all the same.
    let (status, body) =
        api.post("/api/graph/nodes?project=python", json!({"id": "outer", "kind": "module", "name": "outer"})).await;
    assert_eq!(status, 201, "{body}");
    let edge = json!({"id": "custom-edge", "type": "defines", "source": "outer", "target": "evil"});
    let (status, body) = api.post("/api/graph/relationships?project=python", edge).await;
    assert_eq!(status, 201, "{body}");
    let evil = ok(&api, "/api/graph/context?project=python&symbol=evil&source=false").await;
    assert_eq!(evil["containers"][0]["id"], "outer", "{evil}");
    assert_eq!(evil["containers"].as_array().unwrap().len(), 1, "{evil}");
    // An analysed file is read.
    let helper = ok(&api, "/api/graph/context?project=python&symbol=py:lib/util.py:helper").await;
    assert_eq!(helper["source"]["text"], "def helper(x):\n    return inner(x)\n");
}

#[tokio::test]
async fn the_routes_need_a_read_token_and_are_in_the_openapi_document() {
    let (redis, _open) = analysed("python").await;
    let api = GraphApi::start_with(&redis, &[("CODEGRAPH__AUTH__READ_TOKENS", "r-token")]).await;
    let routes = [
        "/api/graph/callers?project=python&symbol=helper",
        "/api/graph/callees?project=python&symbol=helper",
        "/api/graph/impact?project=python&symbol=helper",
        "/api/graph/path?project=python&from=save&to=helper",
        "/api/graph/dependencies?project=python&target=app.py",
        "/api/graph/context?project=python&symbol=helper",
    ];
    for path in routes {
        let (status, body) = api.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{path}: {body}");
        let (status, _) = api.call(reqwest::Method::GET, path, Some("not-a-token"), None).await;
        assert_eq!(status, 401, "{path}");
        let (status, body) = api.call(reqwest::Method::GET, path, Some("r-token"), None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, doc) = api.call(reqwest::Method::GET, "/openapi.json", Some("r-token"), None).await;
    assert_eq!(status, 200);
    for (route, schema) in [
        ("callers", "CallGraph"),
        ("callees", "CallGraph"),
        ("impact", "Impact"),
        ("path", "DependencyPath"),
        ("dependencies", "Dependencies"),
        ("context", "SymbolContext"),
    ] {
        let op = &doc["paths"][format!("/api/graph/{route}")]["get"];
        assert_eq!(op["security"], json!([{"bearer": ["read"]}]), "{route}: {op}");
        assert_eq!(op["tags"], json!(["intel"]), "{route}");
        let answer = &op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(answer, &json!(format!("#/components/schemas/{schema}")), "{route}");
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        for status in ["400", "401", "404"] {
            assert!(op["responses"][status].is_object(), "{route} lacks {status}");
        }
    }
}

#[tokio::test]
async fn a_redis_cluster_gives_the_same_answers() {
    let (_redis, single) = analysed("python").await;
    let cluster = RedisCluster::start(3, 0);
    let seeds = cluster.seeds();
    let on_cluster = [("CODEGRAPH__REDIS__CLUSTER_NODES", seeds.as_str())];
    // The cluster setting wins over the URL; this server only gives the harness a URL and a folder.
    let unused = RedisServer::start();
    analyse("python", &unused, &on_cluster);
    let clustered = GraphApi::start_with(&unused, &on_cluster).await;
    let nodes = "code_graph:{python}:nodes";
    let on_server: u64 = redis::cmd("HLEN").arg(nodes).query(&mut unused.connection()).unwrap();
    let on_shards: u64 = redis::cmd("HLEN").arg(nodes).query(&mut cluster.cluster_connection()).unwrap();
    assert_eq!((on_server, on_shards), (0, 15), "the graph must be on the cluster only");
    for path in [
        "/api/graph/callers?project=python&symbol=helper&depth=3&unresolved=true",
        "/api/graph/callees?project=python&symbol=py:app.py:Service.run&depth=2",
        "/api/graph/impact?project=python&symbol=file:lib/util.py",
        "/api/graph/path?project=python&from=save&to=inner",
        "/api/graph/dependencies?project=python&target=lib/util.py",
        "/api/graph/context?project=python&symbol=describe",
    ] {
        // Everything, versions and source text included: both analyses made the same writes.
        let (expected, got) = (ok(&single, path).await, ok(&clustered, path).await);
        assert_eq!(got, expected, "{path}");
    }
    let (status, none) = clustered.get("/api/graph/path?project=python&from=main&to=inner").await;
    assert_eq!((status, none["error"]["code"].as_str()), (404, Some("no_path")));
}
