//! The change scenario the incremental tests and the watch-mode test share: the files, each change, and the
//! exact graph events the change implies (the same whichever way the worker learns of it).

#![allow(dead_code)]

use std::collections::BTreeSet;

/// A file written as one step, and the graph events (`type id`) that must follow.
pub struct Step {
    pub path: &'static str,
    pub text: &'static str,
    pub events: &'static [&'static str],
}

/// The project before any change: `app.py` calls `helper` from `lib/util.py`.
pub const START: [(&str, &str); 2] = [
    ("lib/util.py", "def helper(x):\n    return x\n\ndef other():\n    pass\n"),
    ("app.py", "from lib.util import helper\n\ndef main():\n    helper(1)\n"),
];

/// An edit in one file: `helper` becomes `assist`; the call from the other file loses its edge and becomes an
/// unresolved call on `main`, and the import edge goes too.
pub const RENAME_HELPER: Step = Step {
    path: "lib/util.py",
    text: "def assist(x):\n    return x\n\ndef other():\n    pass\n",
    events: &[
        "node_added py:lib/util.py:assist",
        "node_deleted py:lib/util.py:helper",
        "node_updated py:app.py:main",
        "node_updated file:app.py",
        "relationship_added file:lib/util.py|defines|py:lib/util.py:assist",
        "relationship_deleted file:lib/util.py|defines|py:lib/util.py:helper",
        "relationship_deleted py:app.py:main|calls|py:lib/util.py:helper",
        "relationship_deleted file:app.py|imports|py:lib/util.py:helper",
    ],
};

/// A new file in a new folder that calls into `lib/util.py`.
pub const ADD_CLI: Step = Step {
    path: "tools/cli.py",
    text: "from lib.util import other\n\ndef run():\n    other()\n",
    events: &[
        "node_added dir:tools",
        "node_added file:tools/cli.py",
        "node_added py:tools/cli.py:run",
        "relationship_added dir:.|contains|dir:tools",
        "relationship_added dir:tools|contains|file:tools/cli.py",
        "relationship_added file:tools/cli.py|defines|py:tools/cli.py:run",
        "relationship_added file:tools/cli.py|imports|py:lib/util.py:other",
        "relationship_added py:tools/cli.py:run|calls|py:lib/util.py:other",
    ],
};

pub fn set(lines: &[&str]) -> BTreeSet<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

/// The events that take back what `events` added (an added file deleted again).
pub fn undone(events: &[&str]) -> BTreeSet<String> {
    events.iter().map(|e| e.replacen("_added ", "_deleted ", 1)).collect()
}

/// `events` with every path under folder `from` under folder `to` instead (the same file moved).
pub fn moved(events: &[&str], from: &str, to: &str) -> BTreeSet<String> {
    events.iter().map(|e| e.replace(&format!(":{from}"), &format!(":{to}"))).collect()
}
