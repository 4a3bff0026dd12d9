#!/usr/bin/env python3
"""Checks deploy/grafana/codegraph.json against the metrics the services register, without starting them:

  - the registered metrics are read from the Rust sources (services/*/src, shared/src): each `"codegraph_…"`
    literal that is the name argument of a registration (`register_int_counter_vec!(…)`, `IntGauge::new(…)`,
    `HistogramOpts::new(…)`, the gateway's `counter(…)`/`gauge(…)` helpers, …), with its type from that call;
  - every registered metric appears in at least one panel's expression (but those of NO_PANEL_YET, which say
    why), and every metric a panel or a variable reads is registered (a histogram through its `_bucket`, `_count`
    or `_sum` series);
  - each is read as its type allows: a counter only inside rate(), irate() or increase(); a gauge never inside
    them; a histogram's buckets inside rate()/increase() under histogram_quantile(), with `le` kept by any
    aggregation in between; its `_count`/`_sum` inside rate()/increase();
  - every label a query names (`by`, matchers, `label_values`) is one of its series' labels (the registration's
    `&["…"]`) or one Prometheus adds (job, instance), and a legend names only labels the result keeps
    (`sum by (sink) (…)` has no `{{instance}}`);
  - every panel has a title, a description, a unit, the `${datasource}` data source and unique query ids; panels
    do not overlap, and ids are unique;
  - each metric of deploy/README.md's table is registered with the type the table gives.

The PromQL reading is a small tokenizer, not Prometheus' parser: enough for the shapes a dashboard uses (function
calls, aggregations with `by`/`without` before or after their argument, binary operators, Grafana variables).

Usage: grafana_metrics.py              (exit 0 when everything holds, else one line per problem)
       grafana_metrics.py --self-test  (breaks each rule in a copy of the dashboard and checks that the check
                                        notices: exit 0 when every break is caught)
"""
import copy
import glob
import json
import os
import re
import sys

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DASHBOARD = os.path.join(REPO, "deploy/grafana/codegraph.json")
README = os.path.join(REPO, "deploy/README.md")
SOURCES = ["services/*/src/**/*.rs", "shared/src/**/*.rs"]

# The call whose first argument names a metric, and the metric's type. `Opts::new`/`opts!` wrap a name inside a
# constructor, so their type is the enclosing call's.
REGISTRATIONS = {
    "register_counter!": "counter", "register_counter_vec!": "counter",
    "register_int_counter!": "counter", "register_int_counter_vec!": "counter",
    "Counter::new": "counter", "IntCounter::new": "counter", "CounterVec::new": "counter",
    "IntCounterVec::new": "counter", "counter": "counter",
    "register_gauge!": "gauge", "register_gauge_vec!": "gauge",
    "register_int_gauge!": "gauge", "register_int_gauge_vec!": "gauge",
    "Gauge::new": "gauge", "IntGauge::new": "gauge", "GaugeVec::new": "gauge", "IntGaugeVec::new": "gauge",
    "gauge": "gauge",
    "register_histogram!": "histogram", "register_histogram_vec!": "histogram",
    "HistogramOpts::new": "histogram", "histogram_opts!": "histogram",
}
WRAPPERS = {"Opts::new", "opts!"}
README_TYPES = {"counter", "gauge", "histogram"}
# Registered metrics that may have no panel, each with why (none now). The check fails while one that has a panel
# stays in it.
NO_PANEL_YET = set()
# Labels Prometheus adds to every series it scrapes (deploy/prometheus/prometheus.yml).
SCRAPE_LABELS = {"job", "instance"}

RATES = {"rate", "irate", "increase"}
AGGREGATIONS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
                "count_values", "limitk", "limit_ratio"}
# Aggregations that keep the labels of what they select from.
SELECTING = {"topk", "bottomk", "limitk", "limit_ratio"}
FUNCTIONS = AGGREGATIONS | RATES | {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "count_over_time", "delta", "deriv", "exp", "floor", "histogram_quantile", "holt_winters", "idelta",
    "label_join", "label_replace", "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time",
    "predict_linear", "present_over_time", "quantile_over_time", "resets", "round", "scalar", "sgn", "sort",
    "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "time", "timestamp", "vector",
    # Grafana's template functions (variable queries only).
    "label_values", "label_names", "metrics", "query_result",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "atan2"}


# ------------------------------------------------------------------------------------------------ registrations
def callee_at(text, at):
    """The call whose argument list holds position `at` (`register_int_gauge!`, `IntGauge::new`, `counter`), and
    the position of its `(`; (None, -1) outside any call."""
    depth = 0
    i = at - 1
    while i >= 0:
        c = text[i]
        if c in ")]}":
            depth += 1
        elif c in "([{":
            if depth == 0:
                if c != "(":
                    return None, -1
                m = re.search(r"([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*!?)\s*$", text[max(0, i - 200):i])
                return (m.group(1).removeprefix("prometheus::") if m else None), i
            depth -= 1
        i -= 1
    return None, -1


def call_arguments(text, open_at):
    """The text between the `(` at open_at and its `)`."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1:i]
    return text[open_at + 1:]


def registered_metrics(repo=REPO):
    """{name: (type, where, labels)} of every metric the services and the shared crate register; the labels are
    the `&["a", "b"]` of a vector's registration."""
    found = {}
    problems = []
    for pattern in SOURCES:
        for path in sorted(glob.glob(os.path.join(repo, pattern), recursive=True)):
            text = open(path, encoding="utf-8").read()
            for m in re.finditer(r'"(codegraph_[a-z0-9_]*[a-z0-9])"', text):
                name, call_at = callee_at(text, m.start())
                while name in WRAPPERS:
                    name, call_at = callee_at(text, call_at)
                kind = REGISTRATIONS.get(name)
                if kind is None:
                    continue  # a name in an assertion, a message, a key prefix: not a registration
                where = f"{os.path.relpath(path, repo)}:{text.count(chr(10), 0, m.start()) + 1}"
                if m.group(1) in found and found[m.group(1)][0] != kind:
                    problems.append(f"{m.group(1)} is registered as a {found[m.group(1)][0]} "
                                    f"({found[m.group(1)][1]}) and as a {kind} ({where})")
                names = re.search(r'&\[((?:\s*"[a-z_][a-z0-9_]*"\s*,?)*)\]', call_arguments(text, call_at))
                labels = frozenset(re.findall(r'"([a-z_][a-z0-9_]*)"', names.group(1))) if names else frozenset()
                found.setdefault(m.group(1), (kind, where, labels))
    return found, problems


# ------------------------------------------------------------------------------------------------ PromQL
TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<number>[0-9][0-9.eE+\-]*[a-z]*)
  | (?P<matchers>\{[^}]*\})
  | (?P<range>\[[^\]]*\])
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=])
""", re.X)


class Call:
    def __init__(self, name):
        self.name = name  # None for a grouping parenthesis
        self.by = None  # labels of `by (…)`
        self.without = None  # labels of `without (…)`


class Query:
    """What one expression reads: its selectors, each with the calls around it, outermost first."""

    def __init__(self, expr):
        self.expr = expr
        self.selectors = []  # (metric, [Call outermost..innermost], matchers text)
        self.labels = set()  # labels named in by/without/on/ignoring and in matchers
        self.calls = []  # every Call, in the order it opened
        self.problems = []
        self.parse()

    def tokens(self):
        out, i = [], 0
        while i < len(self.expr):
            m = TOKEN.match(self.expr, i)
            if not m:
                self.problems.append(f"cannot read {self.expr[i:i + 20]!r}")
                return out
            if m.lastgroup != "space":
                out.append((m.lastgroup, m.group()))
            i = m.end()
        return out

    def parse(self):
        toks = self.tokens() + [(None, None)]
        stack = []
        last_closed = None  # the call a `by (…)` after its argument belongs to
        i = 0
        while toks[i][0] is not None:
            kind, text = toks[i]
            nxt = toks[i + 1]
            closed, last_closed = last_closed, None
            if kind == "ident" and text in AGGREGATIONS and nxt[0] == "ident" and nxt[1] in ("by", "without"):
                call = Call(text)  # `sum by (x) (…)`
                labels, i = self.label_list(toks, i + 1)
                setattr(call, nxt[1], labels)
                self.labels.update(labels)
                if toks[i][0] != "lparen":
                    self.problems.append(f"{text} {nxt[1]} (…) is not followed by its argument")
                    return
                stack.append(call)
                self.calls.append(call)
            elif kind == "ident" and text in ("by", "without") and closed is not None:
                labels, i = self.label_list(toks, i)  # `sum (…) by (x)`
                setattr(closed, text, labels)
                self.labels.update(labels)
                continue
            elif kind == "ident" and text in ("on", "ignoring", "group_left", "group_right"):
                if nxt[0] == "lparen":
                    labels, i = self.label_list(toks, i)
                    self.labels.update(labels)
                    continue
            elif kind == "ident" and nxt[0] == "lparen":
                if text not in FUNCTIONS:
                    self.problems.append(f"unknown function {text}()")
                call = Call(text)
                stack.append(call)
                self.calls.append(call)
                i += 1
            elif kind == "lparen":
                stack.append(Call(None))
            elif kind == "rparen":
                if not stack:
                    self.problems.append("unbalanced )")
                    return
                last_closed = stack.pop()
            elif kind == "ident" and text not in KEYWORDS:
                self.selectors.append((text, list(stack), nxt[1] if nxt[0] == "matchers" else ""))
            elif kind == "matchers":
                if "__name__" in text:
                    self.problems.append(f"selects by __name__ ({text}): name the metric")
                self.labels.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", text))
            i += 1
        if stack:
            self.problems.append("unbalanced (")

    def label_list(self, toks, i):
        """The labels of `by (a, b)` whose keyword is at toks[i], and the index after its `)`."""
        labels = []
        i += 2  # the keyword and its (
        while toks[i][0] not in ("rparen", None):
            if toks[i][0] == "ident":
                labels.append(toks[i][1])
            i += 1
        return labels, i + 1

    def result_labels(self):
        """Labels the result keeps, when an aggregation decides them; None when unknown (no aggregation,
        `without`, label_replace)."""
        if any(c.name in ("label_replace", "label_join") for c in self.calls):
            return None
        for call in self.calls:
            if call.name in AGGREGATIONS and call.name not in SELECTING:
                if call.without is not None:
                    return None
                return set(call.by or []) - {"le"}
        return None


# ------------------------------------------------------------------------------------------------ the checks
def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])  # a collapsed row holds its panels


def series_read(q, where, registered):
    """What the selectors of query `q` read: the labels their series carry (the scrape's included), each registered
    metric read as (metric, kind, part, calls), and a problem for each selector of a metric nobody registers."""
    exist, read, unknown = set(SCRAPE_LABELS), [], []
    for name, calls, _ in q.selectors:
        metric, kind, part = series_of(name, registered)
        if metric is None:
            unknown.append(f"{where}: {name} is registered by no service")
            continue
        read.append((metric, kind, part, calls))
        exist |= registered[metric][2] | ({"le"} if part == "_bucket" else set())
    return exist, read, unknown


def series_of(name, registered):
    """(metric, type, part) for a series name: a histogram's `_bucket`/`_count`/`_sum` name its histogram."""
    if name in registered:
        return name, registered[name][0], ""
    for part in ("_bucket", "_count", "_sum"):
        base = name.removesuffix(part)
        if base != name and registered.get(base, ("",))[0] == "histogram":
            return base, "histogram", part
    return None, None, None


def check_reading(metric, kind, part, calls, where):
    names = [c.name for c in calls if c.name]
    inner = names[-1] if names else None
    if kind == "counter" and inner not in RATES:
        return [f"{where}: counter {metric} is read without rate()/irate()/increase()"]
    if kind == "gauge" and inner in RATES | {"histogram_quantile"}:
        return [f"{where}: gauge {metric} is read with {inner}() (a gauge is read as it is, or *_over_time)"]
    if kind == "histogram" and part == "":
        return [f"{where}: histogram {metric} has no series of that name: read {metric}_bucket, _count or _sum"]
    if kind == "histogram" and part == "_bucket":
        if inner not in ("rate", "increase"):
            return [f"{where}: {metric}_bucket is read without rate()/increase()"]
        if "histogram_quantile" not in names:
            return [f"{where}: {metric}_bucket is read outside histogram_quantile()"]
        between = calls[max(i for i, c in enumerate(calls) if c.name == "histogram_quantile") + 1:]
        for c in between:
            if c.name in AGGREGATIONS and c.name not in SELECTING and (
                    (c.without is None and "le" not in (c.by or [])) or (c.without and "le" in c.without)):
                return [f"{where}: {c.name}() drops le under histogram_quantile() for {metric}"]
    if kind == "histogram" and part in ("_count", "_sum") and inner not in ("rate", "increase", "irate"):
        return [f"{where}: {metric}{part} is read without rate()/increase()"]
    return []


def check_dashboard(dash, registered):
    problems = []
    used = set()
    ids = set()
    boxes = []
    for p in panels_of(dash):
        title = p.get("title") or f"panel {p.get('id')}"
        if p.get("id") in ids:
            problems.append(f"panel id {p.get('id')} is used twice")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        box = (g.get("x", 0), g.get("y", 0), g.get("w", 0), g.get("h", 0))
        for other_title, (x, y, w, h) in boxes:
            if box[0] < x + w and x < box[0] + box[2] and box[1] < y + h and y < box[1] + box[3]:
                problems.append(f"{title!r} overlaps {other_title!r}")
        boxes.append((title, box))
        if p.get("type") == "row":
            continue
        if not p.get("description"):
            problems.append(f"{title!r} has no description")
        if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"{title!r} has no unit")
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{title!r} does not read the ${{datasource}} variable")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{title!r} has no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            problems.append(f"{title!r} repeats a refId: {refs}")
        for t in targets:
            where = f"{title!r} {t.get('refId')}"
            q = Query(t.get("expr", ""))
            problems += [f"{where}: {e}" for e in q.problems]
            exist, read, unknown = series_read(q, where, registered)
            problems += unknown
            for metric, kind, part, calls in read:
                used.add(metric)
                problems += check_reading(metric, kind, part, calls, where)
            for label in sorted(q.labels - exist):
                problems.append(f"{where}: no series it reads has the label {label}")
            keeps = q.result_labels()
            keeps = exist - {"le"} if keeps is None else keeps
            for label in re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", t.get("legendFormat", "")):
                if label not in keeps:
                    problems.append(f"{where}: the legend names {{{{{label}}}}}, which the result has not "
                                    f"(it keeps {sorted(keeps) or 'no label'})")
    for v in dash.get("templating", {}).get("list", []):
        query = v.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if v.get("type") != "query" or not query:
            continue
        # label_values(<series>, <label>): the label is no metric, and some series read must have it.
        wanted = re.match(r"^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", query)
        q = Query(wanted.group(1) if wanted else query)
        problems += [f"variable {v.get('name')}: {e}" for e in q.problems]
        exist, _, unknown = series_read(q, f"variable {v.get('name')}", registered)
        problems += unknown
        for label in sorted(q.labels - exist) + ([wanted.group(2)] if wanted and wanted.group(2) not in exist
                                                 else []):
            problems.append(f"variable {v.get('name')}: no series it reads has the label {label}")
    for name in sorted(set(registered) - used - NO_PANEL_YET):
        problems.append(f"{name} ({registered[name][0]}, {registered[name][1]}) is shown by no panel")
    for name in sorted(NO_PANEL_YET & used):
        problems.append(f"{name} has a panel now: take it out of NO_PANEL_YET")
    for name in sorted(NO_PANEL_YET - set(registered)):
        problems.append(f"{name} of NO_PANEL_YET is registered by no service")
    return problems


def check_readme(text, registered):
    problems = []
    for name, kind in re.findall(r"^\| `(codegraph_[a-z0-9_]+)` \| ([a-z]+) \|", text, re.M):
        if name not in registered:
            problems.append(f"deploy/README.md lists {name}, which no service registers")
        elif kind in README_TYPES and registered[name][0] != kind:
            problems.append(f"deploy/README.md calls {name} a {kind}; it is registered as a {registered[name][0]}")
    return problems


def check(dash, registered, readme):
    return check_dashboard(dash, registered) + check_readme(readme, registered)


# ------------------------------------------------------------------------------------------------ self-test
def self_test(dash, registered, readme):
    """Each break must be caught; returns what went unnoticed."""

    def panel(d, metric):
        return next(p for p in panels_of(d) if any(metric in t.get("expr", "") for t in p.get("targets", [])))

    def edit_expr(d, metric, old, new):
        for p in panels_of(d):
            for t in p.get("targets", []):
                if metric in t.get("expr", "") and old in t["expr"]:
                    t["expr"] = t["expr"].replace(old, new)
                    return
        raise AssertionError(f"no expression with {metric} holds {old!r}")

    def drop_metric(d, metric):
        for p in panels_of(d):
            p["targets"] = [t for t in p.get("targets", []) if metric not in t.get("expr", "")]
        d["panels"] = [p for p in d["panels"] if p.get("type") == "row" or p.get("targets")]

    def only_panel_of_some_metric(d):
        readers = {}
        for p in panels_of(d):
            for metric in {series_of(name, registered)[0] for t in p.get("targets", [])
                           for name, _, _ in Query(t.get("expr", "")).selectors}:
                readers.setdefault(metric, []).append(p)
        return next(ps[0] for ps in readers.values() if len(ps) == 1)

    shown = {n: k for n, (k, _, _) in registered.items() if n not in NO_PANEL_YET}
    counter, gauge, hist = (next(n for n, k in shown.items() if k == kind)
                            for kind in ("counter", "gauge", "histogram"))
    breaks = {
        "a registered metric without a panel": lambda d, r, m: drop_metric(d, counter),
        "a panel removed": lambda d, r, m: d["panels"].remove(only_panel_of_some_metric(d)),
        "a panel reads an unregistered metric": lambda d, r, m: edit_expr(d, gauge, gauge, gauge + "_typo"),
        "a metric registered nowhere any more": lambda d, r, m: r.pop(gauge),
        "a variable reads an unregistered metric": lambda d, r, m: d["templating"]["list"].append(
            {"name": "x", "type": "query", "query": {"query": "label_values(codegraph_nothing_total, job)"}}),
        "a counter read without rate()": lambda d, r, m: edit_expr(
            d, counter, f"rate({counter}", f"max_over_time({counter}"),
        "a gauge read with rate()": lambda d, r, m: edit_expr(d, gauge, gauge, f"rate({gauge}[5m])"),
        "a histogram read by its bare name": lambda d, r, m: edit_expr(d, hist, f"{hist}_bucket", hist),
        "a quantile that drops le": lambda d, r, m: edit_expr(d, hist, "by (le", "by (instance"),
        "a legend naming a dropped label": lambda d, r, m: panel(d, counter)["targets"][0].update(
            legendFormat="{{nolabel}}"),
        "an aggregation by a label no series has": lambda d, r, m: edit_expr(d, hist, "by (le", "by (le, project"),
        "a variable of a label no series has": lambda d, r, m: d["templating"]["list"].append(
            {"name": "x", "type": "query", "query": f"label_values({counter}, project)"}),
        "an unknown function": lambda d, r, m: edit_expr(d, counter, f"rate({counter}", f"rates({counter}"),
        "a panel without a unit": lambda d, r, m: panel(d, gauge)["fieldConfig"]["defaults"].pop("unit"),
        "a panel without a description": lambda d, r, m: panel(d, gauge).pop("description"),
        "two panels overlap": lambda d, r, m: panel(d, gauge)["gridPos"].update(x=0, y=1),
        "a repeated panel id": lambda d, r, m: panel(d, gauge).update(id=panel(d, counter)["id"]),
        "the README's table gives a wrong type": lambda d, r, m: m.append(f"| `{gauge}` | counter | — | x |\n"),
        "the README's table names an unregistered metric": lambda d, r, m: m.append(
            "| `codegraph_nothing_total` | counter | — | x |\n"),
    }
    if NO_PANEL_YET:
        waiting = min(NO_PANEL_YET)
        breaks["a metric of NO_PANEL_YET has a panel"] = lambda d, r, m: panel(d, counter)["targets"].append(
            {"refId": "Z", "expr": f"sum(rate({waiting}[5m]))", "legendFormat": ""})
    problems = check(dash, registered, readme)
    assert not problems, "the dashboard must pass before it is broken:\n" + "\n".join(problems)
    unnoticed = []
    for what, breaker in breaks.items():
        d, r, m = copy.deepcopy(dash), copy.deepcopy(registered), [readme]
        breaker(d, r, m)
        if not check(d, r, "".join(m)):
            unnoticed.append(what)
    return unnoticed


def main(argv):
    registered, problems = registered_metrics()
    # Fewer than this means the reading of the sources broke, not that the services lost their metrics.
    if len(registered) < 20:
        problems.append(f"found only {len(registered)} registered metrics in {SOURCES}: {sorted(registered)}")
    for service in ("graph-api", "ws-gateway", "stream-consumer", "analysis-worker"):
        if not any(w.startswith(f"services/{service}/") for _, w, _ in registered.values()):
            problems.append(f"found no metric registered by {service}")
    dash = json.load(open(DASHBOARD))
    readme = open(README, encoding="utf-8").read()
    if argv[:1] == ["--self-test"]:
        if problems:
            print("\n".join(problems))
            return 1
        unnoticed = self_test(dash, registered, readme)
        for what in unnoticed:
            print(f"not caught: {what}")
        return 1 if unnoticed else 0
    problems += check(dash, registered, readme)
    for p in problems:
        print(p)
    if not problems:
        print(f"{len(registered)} registered metrics: {len(registered) - len(NO_PANEL_YET)} shown, each read as its "
              f"type allows; {len(NO_PANEL_YET)} without a panel yet (NO_PANEL_YET)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
