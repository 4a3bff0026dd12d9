#!/usr/bin/env python3
"""Checks what `docker build` would only find out on a machine with a Docker engine: every Dockerfile under
deploy/docker names only build stages that exist earlier in the file (`COPY --from=`, `RUN --mount=from=`), and
only sources that exist in the build context (the repository root) and that its .dockerignore lets through.
Build arguments come from the ARG defaults and from every `build.args` of docker-compose-multi.yml that uses the
Dockerfile, so `COPY services/${SERVICE}` is checked for each service. The compose builds must name existing
Dockerfiles and known services. Sources under target/docker/ are what deploy/docker/build-images.sh stages from
the host build (BINARY_FROM=host, FRONTEND_FROM=host): they need not exist yet, but .dockerignore must let them
through. The Kubernetes manifests of deploy/k8s/base must run the images the compose file builds
(codegraph/<service>) on the ports those images use.

Usage: check_dockerfiles.py [REPO]   (exit 0 when everything holds; one line per problem otherwise)
"""
import glob
import json
import os
import re
import shlex
import sys

SERVICES = {"graph-api", "ws-gateway", "stream-consumer", "analysis-worker"}
# Staged by build-images.sh from the host's builds, so absent from a fresh clone.
HOST_BUILT = "target/docker/"
VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:[:]?[-+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")


def instructions(text):
    """Yields (line number, keyword, rest) with continuation lines joined and comments dropped."""
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, rest = buf.partition(" ")
        yield start, keyword.upper(), rest.strip()
        buf = ""


def substitute(value, args):
    """Expands $VAR and ${VAR}; returns (value, names left unresolved)."""
    missing = []

    def repl(m):
        name = m.group(1) or m.group(2)
        if args.get(name) is None:
            missing.append(name)
            return m.group(0)
        return args[name]

    return VAR.sub(repl, value), missing


def split_flags(rest):
    """COPY/ADD arguments: (flags dict, sources, destination). Handles the JSON array form."""
    flags = {}
    words = shlex.split(rest, posix=True) if not rest.lstrip().startswith("[") else None
    if words is None:
        words = json.loads(rest)
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    if words and words[0].startswith("["):
        words = json.loads(" ".join(words))
    return flags, words[:-1], words[-1] if words else None


def ignore_patterns(dockerfile, repo):
    """The .dockerignore BuildKit uses for this Dockerfile: <Dockerfile>.dockerignore, else the context's."""
    for path in (dockerfile + ".dockerignore", os.path.join(repo, ".dockerignore")):
        if os.path.exists(path):
            with open(path) as f:
                lines = [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
            return path, lines
    return None, []


def pattern_regex(pattern):
    """A .dockerignore pattern as a regex: `**` any depth, `*` and `?` within one path element."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            j = pattern.index("]", i)
            out, i = out + pattern[i : j + 1], j + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def excluded(path, patterns):
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for p in patterns:
        negate = p.startswith("!")
        p = os.path.normpath(p[1:] if negate else p).lstrip("/")
        if any(pattern_regex(p).match(prefix) for prefix in prefixes):
            result = not negate
    return result


def check_dockerfile(path, repo, arg_sets):
    problems = []
    rel = os.path.relpath(path, repo)
    ignore_file, patterns = ignore_patterns(path, repo)
    with open(path) as f:
        text = f.read()
    for build_args in arg_sets:
        label = f"{rel}" + (f" ({', '.join(f'{k}={v}' for k, v in sorted(build_args.items()))})" if build_args else "")
        global_args, stage_args, stages, in_stage = {}, None, [], False
        for line, keyword, rest in instructions(text):
            where = f"{label}:{line}"
            if keyword == "ARG":
                name, _, default = rest.partition("=")
                value = build_args.get(name, default.strip('"') if default else None)
                (stage_args if in_stage else global_args)[name] = value
            elif keyword == "ENV":
                if in_stage:
                    for m in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', rest):
                        stage_args[m.group(1)], _ = substitute(m.group(2).strip('"'), stage_args)
            elif keyword == "FROM":
                words = rest.split()
                if len(words) >= 3 and words[1].upper() == "AS":
                    stages.append(words[2].lower())
                else:
                    stages.append(None)
                in_stage = True
                # Only global ARGs that the stage re-declares are visible inside it; keep defaults for the check.
                stage_args = {k: v for k, v in global_args.items()}
            elif keyword in ("COPY", "ADD"):
                flags, sources, dest = split_flags(rest)
                if not sources or dest is None:
                    problems.append(f"{where}: {keyword} needs a source and a destination")
                    continue
                if "from" in flags:
                    ref = flags["from"].lower()
                    earlier = stages[:-1]
                    if ref.isdigit():
                        if int(ref) >= len(earlier):
                            problems.append(f"{where}: --from={ref}: no earlier stage with that index")
                    elif ref not in earlier and not re.search(r"[/:]", ref):
                        problems.append(f"{where}: --from={flags['from']}: no earlier stage of that name")
                    continue
                for src in sources:
                    if keyword == "ADD" and re.match(r"^(https?|git)://", src):
                        continue
                    value, missing = substitute(src, stage_args)
                    if missing:
                        problems.append(f"{where}: {src}: build argument(s) {', '.join(missing)} have no value")
                        continue
                    norm = os.path.normpath(value).lstrip("/")
                    if norm.startswith(HOST_BUILT):
                        if excluded(norm, patterns):
                            problems.append(f"{where}: {src} is excluded by {os.path.relpath(ignore_file, repo)}")
                        continue
                    if norm.startswith(".."):
                        problems.append(f"{where}: {src} is outside the build context")
                        continue
                    matches = glob.glob(os.path.join(repo, norm)) if any(c in norm for c in "*?[") else (
                        [os.path.join(repo, norm)] if os.path.exists(os.path.join(repo, norm)) else [])
                    if not matches:
                        problems.append(f"{where}: {src} does not exist in the build context (repository root)")
                    elif norm != "." and all(excluded(os.path.relpath(m, repo), patterns) for m in matches):
                        problems.append(f"{where}: {src} is excluded by {os.path.relpath(ignore_file, repo)}")
            elif keyword == "RUN":
                for m in re.finditer(r"--mount=(\S+)", rest):
                    opts = dict(kv.partition("=")[::2] for kv in m.group(1).split(","))
                    ref = opts.get("from", "").lower()
                    if ref and ref not in stages[:-1] and not re.search(r"[/:]", ref):
                        problems.append(f"{where}: --mount from={opts['from']}: no earlier stage of that name")
        if not stages:
            problems.append(f"{label}: no FROM")
    return problems


def compose_builds(repo):
    """(dockerfile path, build args) for every service of docker-compose-multi.yml that builds an image."""
    path = os.path.join(repo, "docker-compose-multi.yml")
    if not os.path.exists(path):
        return [], []
    import yaml

    with open(path) as f:
        doc = yaml.safe_load(f)
    builds, problems = [], []
    for name, svc in (doc.get("services") or {}).items():
        build = svc.get("build")
        if not build:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = os.path.normpath(os.path.join(repo, build.get("context", ".")))
        dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
        if not os.path.exists(dockerfile):
            problems.append(f"docker-compose-multi.yml: {name}: {os.path.relpath(dockerfile, repo)} does not exist")
            continue
        args = build.get("args") or {}
        if isinstance(args, list):
            args = dict(a.partition("=")[::2] for a in args)
        args = {k: str(v) for k, v in args.items()}
        if "SERVICE" in args and args["SERVICE"] not in SERVICES:
            problems.append(f"docker-compose-multi.yml: {name}: SERVICE={args['SERVICE']} is not a service")
        builds.append((os.path.normpath(dockerfile), args))
    return builds, problems


def k8s_matches_compose(repo):
    """Every codegraph image of deploy/k8s/base is one the compose file builds, on the port that image uses."""
    import yaml

    with open(os.path.join(repo, "docker-compose-multi.yml")) as f:
        compose = yaml.safe_load(f)
    ports = {}
    for svc in compose["services"].values():
        image = (svc.get("image") or "").split(":")[0]
        if svc.get("build") and image.startswith("codegraph/"):
            args = svc["build"].get("args") or {}
            ports[image] = int(args.get("PORT", 8080))  # the dashboard listens on LISTEN=8080
    problems, seen = [], set()
    for path in sorted(glob.glob(os.path.join(repo, "deploy", "k8s", "base", "*.yaml"))):
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]
        for doc in docs:
            spec = (doc.get("spec") or {}).get("template", {}).get("spec", {})
            for c in spec.get("containers", []):
                image = c.get("image", "").split(":")[0]
                if not image.startswith("codegraph/"):
                    continue
                seen.add(image)
                rel = os.path.relpath(path, repo)
                if image not in ports:
                    problems.append(f"{rel}: image {image} is not built by docker-compose-multi.yml")
                    continue
                container_ports = {p.get("containerPort") for p in c.get("ports", [])}
                if ports[image] not in container_ports:
                    problems.append(f"{rel}: {image} listens on {ports[image]}, not on {sorted(container_ports)}")
    for image in sorted(set(ports) - seen):
        problems.append(f"deploy/k8s/base: no workload runs {image}")
    return problems


def main():
    repo = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
    builds, problems = compose_builds(repo)
    dockerfiles = sorted(glob.glob(os.path.join(repo, "deploy", "docker", "*Dockerfile")))
    if not dockerfiles:
        problems.append("no Dockerfile under deploy/docker")
    for path in dockerfiles:
        arg_sets = [args for f, args in builds if f == os.path.normpath(path)] or [{}]
        problems += check_dockerfile(path, repo, arg_sets)
    if os.path.isdir(os.path.join(repo, "deploy", "k8s", "base")):
        problems += k8s_matches_compose(repo)
    notes = sorted({args["SERVICE"] for _, args in builds if "SERVICE" in args} - {
        d for d in SERVICES if os.path.exists(os.path.join(repo, "services", d, "Cargo.toml"))})
    for svc in notes:
        print(f"note: services/{svc} is not in the workspace yet; its image cannot build until it is")
    for p in problems:
        print(p)
    print(f"{len(dockerfiles)} Dockerfile(s), {len(builds)} compose build(s): "
          + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
