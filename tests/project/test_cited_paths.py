"""Every file, folder and module that the docs (README.md, docs/*.md) and the code's docstrings and
comments cite exists: a renamed module or a removed benchmark leaves no stale pointer behind.

What counts as a citation (the judgement call of this test):
* a repository path: a top-level folder of the repository then '/...', e.g. `benchmarks/ot_solvers.py`,
  `docs/method.md`, `lico_tune/train/` (a URL's path or a path under ~ or / is not one);
* a dotted module name `lico_tune.x.y`, optionally ending in a name defined at the top of that
  module (`lico_tune.keys.repeat_seed`);
* a bare `NAME.md` (README.md, RESULTS.md): a file of the repository by that name;
* in a Python file, a bare `name.py`: a file of the repository by that name (the files of the
  projects this one cites, Ray's and the released LICO code's, are listed in OTHER_PROJECTS).
legacy.py and test_architecture.py name the old modules on purpose (the import hook for old pickles).
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOP = sorted(p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".")
             and p.name not in ("build", "dist", "__pycache__") and not p.name.endswith(".egg-info"))
PATH = re.compile(r"(?<![\w./~:-])((?:%s)/[\w./-]*)" % "|".join(map(re.escape, TOP)))
MODULE = re.compile(r"(?<![\w./])(lico_tune(?:\.\w+)+)")
BARE_PY = re.compile(r"(?<![\w./-])(\w+\.py)\b")
BARE_MD = re.compile(r"(?<![\w./-])([A-Z][\w-]*\.md)\b")        # README.md, RESULTS.md: a file by that name
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SOURCES = sorted(p for d in ("lico_tune", "dashboards", "benchmarks", "tests") for p in (REPO / d).rglob("*.py"))
# Paths that name what a command makes, not what the repository holds.
MADE = ("build/", "dist/", ".venv", "tests/.", "docs/study/results/", "benchmarks/results-")
OTHER_PROJECTS = {"main.py", "text_encoder.py", "wideresnet_prompt.py",          # ymLeiFDU/LICO
                  "tuner_internal.py", "tune_controller.py", "experiment_state.py", "searcher.py",
                  "callback.py", "trial.py", "monitor.py"}                        # ray/tune, ray/autoscaler
OLD_NAMES_ON_PURPOSE = {"legacy.py", "test_architecture.py", "test_cited_paths.py"}
BASENAMES = {p.name for p in SOURCES} | {p.name for p in REPO.iterdir()} | \
    {p.name for d in ("dashboards", "deploy", "docs", "benchmarks", "scripts") for p in (REPO / d).rglob("*")}


def prose_of(file: Path) -> str:
    """A Python file's docstrings and comments (not its code: strings there are data)."""
    text = file.read_text()
    tree = ast.parse(text)
    parts = [ast.get_docstring(n, clean=False) or "" for n in ast.walk(tree)
             if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    parts += [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]
    return "\n".join(parts)


@lru_cache(maxsize=None)
def top_level_names(module_file: Path) -> frozenset[str]:
    names = set()
    for node in ast.parse(module_file.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


def module_exists(dotted: str) -> bool:
    """lico_tune.a.b[.name]: a module or package, or a name defined at the top of one."""
    parts = dotted.rstrip(".").split(".")
    for i in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:i])
        file = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if file.is_file():
            rest = parts[i:]
            return not rest or (len(rest) == 1 and rest[0] in top_level_names(file))
    return False


def path_exists(cited: str) -> bool:
    cited = cited.rstrip(".,;:)")
    if cited.startswith(MADE) or any(c in cited for c in "*<>{}"):
        return True
    return (REPO / cited).exists()


def bare_exists(name: str) -> bool:
    return name in BASENAMES or name in OTHER_PROJECTS


def test_the_cited_paths_and_modules_exist():
    missing = []
    for doc in DOCS:
        text = doc.read_text()
        missing += [f"{doc.relative_to(REPO)}: {p}" for p in PATH.findall(text) if not path_exists(p)]
        missing += [f"{doc.relative_to(REPO)}: {m}" for m in MODULE.findall(text) if not module_exists(m)]
        missing += [f"{doc.relative_to(REPO)}: {b}" for b in BARE_MD.findall(text) if b not in BASENAMES]
    for src in SOURCES:
        if src.name in OLD_NAMES_ON_PURPOSE:
            continue
        text = prose_of(src)
        where = src.relative_to(REPO)
        missing += [f"{where}: {p}" for p in PATH.findall(text) if not path_exists(p)]
        missing += [f"{where}: {m}" for m in MODULE.findall(text) if not module_exists(m)]
        missing += [f"{where}: {b}" for b in BARE_PY.findall(text) if not bare_exists(b)]
        missing += [f"{where}: {b}" for b in BARE_MD.findall(text) if b not in BASENAMES]
    assert not missing, "cited but not in the repository:\n" + "\n".join(sorted(set(missing)))


def test_the_check_finds_a_stale_citation(tmp_path):
    """The patterns see each kind of citation, and a missing one fails."""
    src = tmp_path / "m.py"
    src.write_text('"""Measured with `benchmarks/ot.py`; see lico_tune.keys.repeat_seed and\n'
                   'lico_tune.selection.repeat_seed."""\n# health_rules.py and gone_module.py\nX = "docs/nothing.md"\n')
    text = prose_of(src)
    assert PATH.findall(text) == ["benchmarks/ot.py"]                     # the string in code is not prose
    assert not path_exists("benchmarks/ot.py") and path_exists("benchmarks/ot_solvers.py")
    assert [module_exists(m) for m in MODULE.findall(text)] == [True, False]
    assert module_exists("lico_tune.tune.tuner.build_tuner") and not module_exists("lico_tune.keys.nothing_here")
    assert [bare_exists(b) for b in BARE_PY.findall(text)] == [True, False]   # health_rules.py, gone_module.py
