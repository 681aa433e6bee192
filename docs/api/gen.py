#!/usr/bin/env python3
"""Writes weft's API reference, docs/api/*.md, from the doc comments of include/weft.h
(C) and include/weft.hpp (C++): one page per concept, as libuv's docs are.

    python3 docs/api/gen.py           write the pages
    python3 docs/api/gen.py --check   exit 1 if any page is stale (make test runs this)

Every declaration of weft.h and every documented member of weft.hpp must belong to a
page (PAGES below names them); one that does not fails the run, so nothing new goes
undocumented. The pages are generated: edit the headers' comments (weft.h comes from
src/ffi's doc comments through cbindgen), then run this.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "api"

# page -> (title, introduction, C names, C++ names (Class::member or free name))
PAGES = {
    "loop": ("Loops", "A loop runs timers, watches, subscriptions and posts; every callback "
             "runs on the thread that runs it. Registrations return ids that `weft_cancel` "
             "ends.",
             ["weft_loop", "weft_id", "WEFT_ID_MIN", "weft_cb", "weft_free_fn", "weft_run_mode",
              "WEFT_RUN_DEFAULT", "WEFT_RUN_ONCE", "WEFT_RUN_NOWAIT", "weft_loop_new",
              "weft_loop_free", "weft_loop_run", "weft_loop_stop", "weft_loop_alive",
              "weft_post", "weft_cancel", "weft_version", "weft_abi_version",
              "WEFT_VERSION_MAJOR", "WEFT_VERSION_MINOR", "WEFT_VERSION_PATCH",
              "WEFT_ABI_VERSION"],
             ["loop", "loop::loop", "loop::reset", "loop::on_exception", "loop::run",
              "loop::stop", "loop::alive", "loop::post", "loop::cancel", "run_mode", "handle",
              "handle::id", "handle::cancel", "handle::active", "scoped_handle",
              "scoped_handle::release", "version"]),
    "timers": ("Timers", "One-shot and repeating timers, never early, with the deadline taken "
               "from the monotonic clock at the call.",
               ["weft_timer_after", "weft_timer_every"],
               ["loop::after", "loop::every"]),
    "watches": ("fd watches", "Level-triggered readiness of file descriptors: pipes, sockets, "
                "terminals, eventfds.",
                ["weft_fd_cb", "WEFT_READABLE", "WEFT_WRITABLE", "WEFT_HANGUP", "WEFT_ERROR",
                 "weft_watch_fd", "weft_watch_fd_modify"],
                ["io", "loop::watch", "loop::modify"]),
    "signals": ("Signals", "Signal deliveries, reported on the loop thread, never in a handler.",
                ["weft_signal_cb", "weft_watch_signal"],
                ["loop::on_signal"]),
    "topics": ("Topics", "Publish/subscribe on named topics: exact, prefix (\"job.*\") and "
               "\"*\" patterns; any thread emits.",
               ["weft_event_cb", "weft_subscribe", "weft_emit"],
               ["loop::subscribe", "loop::emit"]),
    "tasks": ("Pools and tasks", "Work on the loop, on the elastic IO pool or the "
              "work-stealing CPU pool, with `done` on the loop thread exactly once.",
              ["weft_pool", "weft_task", "weft_pool_kind", "WEFT_POOL_CPU", "WEFT_POOL_IO",
               "weft_thread_hook", "weft_pool_options", "weft_where", "WEFT_ON_LOOP",
               "WEFT_ON_IO", "WEFT_ON_CPU", "weft_work_fn", "weft_done_fn",
               "weft_spawn_options", "weft_pool_new", "weft_pool_free", "weft_shutdown",
               "weft_spawn", "weft_task_cancelled", "weft_task_write", "weft_task_emit"],
              ["where", "task", "task::cancelled", "task::write", "task::emit", "task_result",
               "spawn_options", "spawn_options::on", "spawn_options::native", "pool",
               "pool::options", "pool::pool", "pool::reset", "loop::spawn",
               "loop::spawn_future"]),
    "processes": ("Process tasks", "Work run in a forked child against a copy-on-write "
                  "snapshot of the process: nothing is pickled or serialised.",
                  ["WEFT_ON_PROCESS", "weft_fork_fn", "weft_adopt_child", "weft_child_task",
                   "weft_child_exit"],
                  []),
    "embedding": ("Embedding", "Running a weft loop inside a host's loop (poll, asyncio, "
                  "libuv, GLib, Node) through one fd.",
                  ["weft_loop_fd", "weft_loop_timeout_ms", "weft_loop_set_pass_limit"],
                  ["loop::fd", "loop::timeout", "loop::set_pass_limit", "loop::native",
                   "pool::native", "task::native"]),
    "monitoring": ("Monitoring", "What blocks the loop: the slow-callback watchdog, which "
                   "reports a callback while it still runs; labels that name registrations "
                   "in its reports; loop and pool statistics; task timings.",
                   ["weft_watchdog_report", "weft_watchdog_cb", "WEFT_CALLBACK_TIMER",
                    "WEFT_CALLBACK_POST", "WEFT_CALLBACK_FD", "WEFT_CALLBACK_SIGNAL",
                    "WEFT_CALLBACK_EVENT", "WEFT_CALLBACK_DONE", "weft_loop_set_watchdog",
                    "weft_set_label", "weft_loop_stats", "weft_loop_get_stats",
                    "weft_pool_stats", "weft_pool_get_stats", "weft_task_timing",
                    "weft_task_get_timing", "WEFT_SPAWN_TIMING"],
                   ["loop::stats", "loop::set_label", "pool::stats", "pool::default_stats",
                    "spawn_options::timing", "task_result::timing"]),
    "errors": ("Errors", "Bad input gets an error code and a message naming the function, the "
               "argument and the value.",
               ["weft_result", "weft_last_error", "weft_last_error_code", "weft_strerror"],
               ["category", "last_error", "error"]),
}

C_INTRO = "The C declarations, from `include/weft.h`:"
CPP_INTRO = "The C++ interface, from `include/weft.hpp` (namespace `weft`):"


def c_declarations(text):
    """(name, comment, declaration) for each documented declaration of weft.h."""
    lines = text.splitlines()
    out, comment, i = [], [], 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("//"):
            comment.append(line[2:].strip() if line[2:3] != " " else line[3:])
            i += 1
            continue
        if not line.strip() or not comment:
            comment = [] if not line.strip() else comment
            i += 1
            continue
        start = i
        if line.startswith("#define"):
            decl = line
        else:
            depth = 0
            while True:
                depth += lines[i].count("{") - lines[i].count("}")
                if depth == 0 and lines[i].rstrip().endswith(";"):
                    break
                i += 1
            decl = "\n".join(lines[start:i + 1])
        name = c_name(decl)
        if name:
            out.append((name, "\n".join(comment).strip(), decl))
        comment = []
        i += 1
    return out


def c_name(decl):
    first = decl.splitlines()[0]
    for pattern in (r"#define (\w+)", r"typedef (?:enum|struct) (\w+) \{",
                    r"typedef struct (\w+) \w+;", r"typedef [\w ]+\(\*(\w+)\)",
                    r"typedef [\w ]+ (\w+);", r"[\w *]*?\**(weft_\w+)\("):
        m = re.match(pattern, first)
        if m:
            return m.group(1)
    return None


def cpp_text():
    """weft.hpp with its parts (`#include "weft/....hpp"`, include/weft/) in place, in
    the order it includes them."""
    out = []
    for line in (ROOT / "include" / "weft.hpp").read_text().splitlines():
        m = re.match(r'#include "(weft/\w+\.hpp)"', line)
        out.append((ROOT / "include" / m.group(1)).read_text() if m else line)
    return "\n".join(out)


def cpp_declarations(text):
    """(qualified name, comment, declaration) for the public declarations of weft.hpp:
    namespace weft's and its classes' public members, not namespace detail's. The `///`
    comment above a declaration documents it; overloads without one are listed with it.
    Declarations inside `#if WEFT_HPP_EXCEPTIONS` are marked as needing exceptions."""
    out, comment = [], []
    scopes = []  # [name, depth, public now, is a namespace, visible itself]
    depth, exceptions_only = 0, []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i]
        line = raw.strip()
        i += 1
        if line.startswith("///"):
            comment.append(line[3:].strip())
            continue
        if line.startswith("#"):
            if line.startswith("#if"):
                exceptions_only.append("WEFT_HPP_EXCEPTIONS" in line)
            elif line.startswith("#else") and exceptions_only:
                exceptions_only[-1] = False
            elif line.startswith("#endif") and exceptions_only:
                exceptions_only.pop()
            continue
        if not line or line.startswith("//"):
            if not line:
                comment = []
            continue
        if re.match(r"(public|private|protected):$", line):
            if scopes:
                scopes[-1][2] = line == "public:"
            continue
        decl_lines = [raw]
        while not re.search(r"[{;}]\s*(//.*)?$", decl_lines[-1]) and i < len(lines):
            decl_lines.append(lines[i])
            i += 1
        if re.match(r"\s*enum\b", decl_lines[0]) and decl_lines[-1].rstrip().endswith("{"):
            while i < len(lines) and "}" not in decl_lines[-1]:
                decl_lines.append(lines[i])
                i += 1
        decl = "\n".join(decl_lines)
        visible = bool(scopes) and scopes[-1][1] == depth and scopes[-1][2] and scopes[-1][4]
        name = cpp_name(decl) if visible else None
        skip = name is None or re.search(
            r"= (delete|default)|\boperator\b|^\s*(friend|namespace|using)\b|\w::~?" + name + r"\s*\(",
            decl.strip()) if name else True
        if not skip:
            owners = [sc[0] for sc in scopes if not sc[3]]
            qualified = "::".join(owners + [name])
            shown = signature(decl)
            if any(exceptions_only):
                shown = "// with exceptions only\n" + dedent(shown)
            out.append((qualified, "\n".join(comment).strip(), shown))
        comment = []
        for l in decl_lines:
            depth = track(l, depth, scopes)
    return out


def track(line, depth, scopes):
    """Follows braces, remembering which namespace, class or struct each level is."""
    code = line.split("//")[0]
    m = re.match(r"\s*(?:template <.*> )?(namespace|class|struct|enum(?: class)?)\s+(\w+)", code)
    if m and re.search(r";\s*$", code) and "{" not in code:
        m = None  # a forward declaration
    for ch in code:
        if ch == "{":
            depth += 1
            parent = scopes[-1] if scopes else None
            seen = parent is None or (parent[4] and parent[2])
            if m:
                kind, name = m.group(1), m.group(2)
                seen = seen and name != "detail"
                scopes.append([name, depth, kind != "class", kind == "namespace", seen])
            else:
                scopes.append([None, depth, False, False, False])
            m = None
        elif ch == "}":
            if scopes and scopes[-1][1] == depth:
                scopes.pop()
            depth -= 1
    return depth


def cpp_name(decl):
    text = " ".join(l.strip() for l in decl.strip().splitlines())
    text = re.sub(r"^template <[^>]*(<[^>]*>[^>]*)*>\s*", "", text)
    while re.search(r"<[^<>]*>", text):
        text = re.sub(r"<[^<>]*>", "", text)
    text = re.sub(r"^\[\[\w+\]\]\s*", "", text)
    m = re.match(r"(?:class|struct|enum(?: class)?)\s+(\w+)", text)
    if m:
        return m.group(1)
    m = re.match(r"[^(=]*?(~?\w+)\s*\(", text)
    if m and m.group(1) not in ("if", "while", "for", "return"):
        return m.group(1)
    m = re.match(r"[\w:<>, *&]+\s+[*&]?(\w+)\s*(?:[;={]|$)", text)
    return m.group(1) if m else None


def signature(decl):
    """The declaration without its body (enums keep theirs) or member initialisers."""
    text = decl.rstrip()
    if re.match(r"\s*enum\b", text):
        return text
    if text.endswith("{"):
        text = text[:-1].rstrip()
    text = re.sub(r"\s*\{[^{}]*\}\s*$", "", text)
    text = re.sub(r"(\)(?:\s*noexcept)?)\s*:(?!:)[^;]*$", r"\1", text)
    return "\n".join(l for l in text.splitlines())


def dedent(text):
    lines = text.splitlines()
    pad = min((len(l) - len(l.lstrip()) for l in lines if l.strip()), default=0)
    return "\n".join(l[pad:] for l in lines)


def page(key, c_items, cpp_items):
    title, intro, c_names, cpp_names = PAGES[key]
    out = [f"# {title}", "", "<!-- generated by docs/api/gen.py from include/weft.h and "
           "include/weft.hpp: do not edit -->", "", intro, "", "## C", "", C_INTRO, ""]
    for name in c_names:
        comment, decl = c_items[name]
        out += [f"### `{name}`", "", "```c", decl, "```", ""]
        if comment:
            out += [comment, ""]
    if cpp_names:
        out += ["## C++", "", CPP_INTRO, ""]
        listed = {n for p in PAGES.values() for n in p[3]}
        for name in cpp_names:
            items = list(cpp_items[name])
            for other, more in cpp_items.items():  # members not on a page of their own
                if other.startswith(name + "::") and other not in listed and \
                        not any(other.startswith(l + "::") for l in listed if l != name and l.startswith(name + "::")):
                    items += more
            out += [f"### `weft::{name}`", "", "```cpp",
                    "\n".join(dedent(decl) for _, decl in items), "```", ""]
            comments = [c for c, _ in items if c]
            if comments:
                out += ["\n\n".join(comments), ""]
    return "\n".join(out).rstrip() + "\n"


def index():
    out = ["# weft API reference", "", "<!-- generated by docs/api/gen.py: do not edit -->",
           "", "Generated from the doc comments of `include/weft.h` (the C ABI) and "
           "`include/weft.hpp` (the header-only C++17 interface over it). The header's "
           "opening comment states the rules every function keeps: any thread may call any "
           "function unless its comment says otherwise; bad input returns an error and sets "
           "a message (see [Errors](errors.md)); a free_fn runs exactly once.", ""]
    for key, (title, intro, _, _) in PAGES.items():
        out.append(f"- [{title}]({key}.md): {intro}")
    return "\n".join(out) + "\n"


def build():
    c = {}
    for name, comment, decl in c_declarations((ROOT / "include" / "weft.h").read_text()):
        c[name] = (comment, decl)
    cpp = {}
    for name, comment, decl in cpp_declarations(cpp_text()):
        cpp.setdefault(name, []).append((comment, decl))
    placed_c = [n for p in PAGES.values() for n in p[2]]
    placed_cpp = [n for p in PAGES.values() for n in p[3]]
    problems = [f"weft.h: {n} is on no page" for n in c if n not in placed_c and n != "WEFT_H"]
    problems += [f"weft.h: no documented declaration {n}" for n in placed_c if n not in c]
    problems += [f"weft.hpp: {n} is on no page" for n in cpp
                 if not any(n == p or n.startswith(p + "::") for p in placed_cpp)]
    problems += [f"weft.hpp: no documented member {n}" for n in placed_cpp if n not in cpp]
    if problems:
        sys.exit("docs/api/gen.py:\n  " + "\n  ".join(problems))
    files = {"README.md": index()}
    for key in PAGES:
        files[f"{key}.md"] = page(key, c, cpp)
    return files


def main():
    files = build()
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in files.items():
        path = OUT / name
        if path.exists() and path.read_text() == text:
            continue
        if check:
            stale.append(name)
        else:
            path.write_text(text)
            print(f"gen.py: wrote docs/api/{name}")
    extra = [p.name for p in OUT.glob("*.md") if p.name not in files]
    if check and (stale or extra):
        sys.exit(f"docs/api is stale ({', '.join(stale + extra)}): run python3 docs/api/gen.py")


if __name__ == "__main__":
    main()
