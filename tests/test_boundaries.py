"""The layout's rules, checked on the source: no gradio in core, no torch in the run manager, serve
never reaches into train, no import circle in core (function-local imports count), imports point down
core's floors, every package has a documented face, names cited in docs exist, run-folder file names
are written only in core/layout.py, and files and functions stay small."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

CORE = REPO / "core"
PACKAGES = sorted(p.parent for p in CORE.rglob("__init__.py") if p.parent != CORE)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in CORE.rglob("*.py")}


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Absolute names a module imports (a `from` import of a submodule counts as that submodule)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            found |= set(subs) if all(s in MODULES for s in subs) else {base}
    return found


def _core_edges(top_level_only: bool = False) -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        targets = set()
        for imported in _imports(path, top_level_only):
            while imported and imported not in MODULES:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def _reachable(start: str, edges) -> set[str]:
    seen, todo = set(), [m for m in MODULES if m == start or m.startswith(start + ".")]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += edges[m]
    return seen


def test_core_never_imports_gradio():
    offenders = [m for m, p in MODULES.items() if any(i.split(".")[0] == "gradio" for i in _imports(p))]
    assert offenders == []
    code = "import sys, core.workspace; " + "; ".join(f"import {m}" for m in sorted(MODULES)) + \
        "; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_no_import_circle_in_core_counting_function_local_imports():
    edges = _core_edges()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert cycles == []


# core's packages from the ground up: a package imports only from floors below its own (a leaf
# imports no other package). A new edge upwards, even one that makes no circle yet, fails here.
FLOORS = (("core.errors", "core.paths", "core.fileio", "core.layout"), ("core.video",), ("core.schema",),
          ("core.config",), ("core.spec",), ("core.data",), ("core.models",), ("core.runs",), ("core.serve",),
          ("core.train",), ("core.hub",), ("core.workspace",))


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_imports_point_down_the_floors():
    floor = {name: level for level, names in enumerate(FLOORS) for name in names}
    assert set(floor) == {_package(m) for m in MODULES if m != "core"}  # every package has a floor
    upward = sorted(f"{a} imports {b}" for a, targets in _core_edges().items() if a != "core" for b in targets
                    if _package(a) != _package(b) and floor[_package(b)] >= floor[_package(a)])
    assert upward == []


def test_serve_never_imports_train():
    reached = _reachable("core.serve", _core_edges())
    assert sorted(m for m in reached if m.startswith("core.train")) == []


def test_run_manager_imports_no_ml_library():
    heavy = {"torch", "transformers", "peft", "accelerate", "xgrammar", "gradio"}
    edges = _core_edges(top_level_only=True)
    loaded = {i.split(".")[0] for m in _reachable("core.runs", edges) for i in _imports(MODULES[m], top_level_only=True)}
    assert loaded & heavy == set()
    # and at run time: import everything the app's run table uses and list runs
    code = ("import sys, tempfile; import core.runs as r; from core.runs import manager, launch, files, policy; "
            "m = r.RunManager(tempfile.mkdtemp()); m.list_runs(); policy.training_policy(); "
            f"print(sorted(k for k in sys.modules if k.split('.')[0] in {heavy!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: _module_name(p / "__init__.py"))
def test_every_package_has_a_documented_face(package):
    name = _module_name(package / "__init__.py")
    module = importlib.import_module(name)
    assert module.__doc__ and len(module.__doc__.split()) >= 20, f"{name}: say what the package owns and never does"
    assert module.__all__, f"{name}: re-export the public names"
    for public in module.__all__:
        assert getattr(module, public) is not None
    inner = [m for m in MODULES if m.startswith(name + ".")]
    faces = [m for m in inner if any(i == name for i in _imports(MODULES[m]))]
    assert faces == [], f"modules of {name} import their own package's face (a circle in waiting)"


def _cited_names(text: str):
    yield from re.findall(r"(?<![\w./])core(?:\.[A-Za-z_]\w*)+", text)


def _resolves(dotted: str) -> bool:
    """A module, or a name defined in (or re-exported by the face of) the module cited: a function
    or class cited under a module that merely imports it is stale, it moved."""
    parts = dotted.rstrip(".").split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        owner = obj
        try:
            for attr in parts[k:]:
                owner, obj = obj, getattr(obj, attr)
        except AttributeError:
            return False
        home = getattr(obj, "__module__", None)
        if k < len(parts) and home and home.startswith("core") and isinstance(owner, type(importlib)):
            return home == owner.__name__ or parts[k] in getattr(owner, "__all__", ())
        return True
    return False


NOTES_NOT_IN_THE_REPO = re.compile(r"FIELD-NOTES|closing note|DEVELOPERS\.md")


def test_names_and_paths_cited_in_code_and_docs_exist():
    sources = [p for p in REPO.rglob("*.py") if ".venv" not in p.parts] + \
        [REPO / name for name in ("README.md", "RELIABILITY.md", "BENCHMARKS.md", "run.sh")]
    stale = []
    for path in sources:
        text = path.read_text()
        where = path.relative_to(REPO)
        stale += [f"{where}: {n}" for n in set(_cited_names(text)) if not _resolves(n)]
        stale += [f"{where}: {p}" for p in set(re.findall(r"(?<![\w/])(?:core|tests|bench|commands|tabs)/[\w/]+\.py", text))
                  if not (REPO / p).exists()]
        if path.suffix == ".py" and path != Path(__file__):
            stale += [f"{where}: cites {m}, which is not in this repository" for m in NOTES_NOT_IN_THE_REPO.findall(text)]
    assert not stale, "stale references:\n" + "\n".join(sorted(stale))


def test_source_files_stay_small():
    sources = [*CORE.rglob("*.py"), *(REPO / "tabs").glob("*.py"), *(REPO / "commands").glob("*.py"), REPO / "app.py"]
    long = {str(p.relative_to(REPO)): n for p in sources if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}
    assert len((REPO / "cli.py").read_text().splitlines()) < 200


def test_file_names_on_disk_are_written_only_in_core_layout():
    """A run folder's and a dataset folder's file names (config.yaml, train.log, ...) appear as a string
    only in core/layout.py; everyone else imports the name. Prose (messages, docs) may cite them."""
    layout = importlib.import_module("core.layout")
    names = {v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str)}
    sources = [*CORE.rglob("*.py"), *(REPO / "tabs").glob("*.py"), *(REPO / "commands").glob("*.py"),
               REPO / "app.py", REPO / "cli.py"]
    written = [f"{p.relative_to(REPO)}:{n.lineno} {n.value!r}" for p in sources if p != CORE / "layout.py"
               for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Constant) and n.value in names]
    assert written == []
    assert {"config.yaml", "train.log", "status.json", "metrics.jsonl", "preprocessing.json"} <= names


def test_functions_stay_short():
    """Growth goes into named functions, not closures: none over 80 lines in the product's code."""
    sources = [*CORE.rglob("*.py"), *(REPO / "tabs").glob("*.py"), *(REPO / "commands").glob("*.py"),
               REPO / "app.py", REPO / "cli.py"]
    long = [f"{p.relative_to(REPO)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)" for p in sources
            for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and n.end_lineno - n.lineno + 1 > 80]
    assert long == []


# import name of a requirement where it differs from the package name
IMPORT_NAMES = {"opencv-python-headless": "cv2", "pillow": "PIL", "pyyaml": "yaml", "huggingface-hub": "huggingface_hub"}


def _requirements() -> list[str]:
    names = []
    for f in ("requirements.txt", "requirements-dev.txt"):
        for line in (REPO / f).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                names.append(re.split(r"[=<>!~;\[ ]", line)[0].strip().lower())
    return names


def test_every_dependency_is_imported_or_explained_in_readme():
    """A package earns its place by being imported by the product or its tests, or by README's
    Dependencies section saying what needs it; the ones chosen against stay out of requirements."""
    sources = "\n".join(p.read_text(errors="replace") for p in REPO.rglob("*.py")
                        if not {".venv", "node_modules"} & set(p.parts))
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Dependencies", 1)[1].split("\n## ", 1)[0]
    explained = set(re.findall(r"^- `([\w.-]+)`", section, re.M))
    names = _requirements()
    for name in names:
        module = IMPORT_NAMES.get(name, name.replace("-", "_"))
        imported = re.search(rf"^\s*(import|from)\s+{re.escape(module)}\b", sources, re.M)
        assert imported or name in explained, f"{name}: neither imported nor explained in README's Dependencies"
    for unused in ("decord", "trl"):
        assert unused in explained and unused not in names, unused


def test_ui_text_uses_glyphs_that_render_without_an_emoji_font():
    """Debian's Chromium has no emoji font: ✅ ❌ and any emoji-presentation character (or U+FE0F)
    render as empty boxes there. ✔ ✖ ⚠ ○ ● come from ordinary text fonts."""
    emoji = re.compile("[\u2705\u274c\u274e\ufe0f\U0001f300-\U0001faff]")
    for path in [*(REPO / "tabs").glob("*.py"), REPO / "app.py"]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not emoji.search(line), f"{path.name}:{n}: {line.strip()}"
