"""The package's shape: the core never imports ray or streamlit, modules form no import cycle, and
imports follow the data flow spec -> plan -> tune -> train -> results -> dashboard.

Which imports count (the judgement call of this test): every import, the lazy ones inside
functions included. A cycle among module-level imports breaks or half-initialises an import; a
cycle through a lazy import does not crash, but it is still two modules that need each other
(the circles this project had, models/text <-> text_hf and search -> results -> search, were
both lazy ones), so both kinds are refused, and the layering rules count lazy imports too.
An `import x.y.z` also runs the `__init__` of `x.y`, so it counts as an edge to those packages as
well, except to the importer's own ancestor packages (a package's `__init__` importing its
submodules, which import their siblings, is Python's normal package pattern, not a cycle).
The layering rules read the module an import names (`from ..data.names import DATASETS` names
data/names.py, not data/), so that a leaf inside a package can be allowed alone; what that import
runs besides is held by test_the_spec_loads_no_torch_and_no_data_registry.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import lico_tune

PKG = Path(lico_tune.__file__).parent
RAY_SIDE = "lico_tune.tune"


def all_modules(pkg: Path = PKG) -> dict[str, Path]:
    """Module name -> file of every module of lico_tune (packages as their __init__)."""
    out = {}
    for file in sorted(pkg.rglob("*.py")):
        parts = ["lico_tune", *file.relative_to(pkg).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return out


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_pkg else parts[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(modules: dict[str, Path], lazy: bool, packages: bool = True) -> dict[str, set[str]]:
    """Module -> the lico_tune modules it imports (module level only unless `lazy`); with
    `packages`, also the packages whose __init__ each import runs."""
    graph: dict[str, set[str]] = {}
    for name, file in modules.items():
        tree = ast.parse(file.read_text(), str(file))
        is_pkg = file.name == "__init__.py"
        nodes = ast.walk(tree) if lazy else _module_level(tree.body)
        targets: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_pkg, node)
                targets.add(base)
                targets |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
        edges = set()
        for t in targets:
            if not t.startswith("lico_tune"):
                continue
            parts = t.split(".")
            for i in range(1 if packages else len(parts), len(parts) + 1):  # a.b.c runs a/, a/b/ __init__
                m = ".".join(parts[:i])
                if m in modules and m != name and not name.startswith(m + "."):
                    edges.add(m)
        graph[name] = edges
    return graph


def _module_level(body):
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            for part in (node.body, getattr(node, "orelse", []), getattr(node, "finalbody", []),
                         *[h.body for h in getattr(node, "handlers", [])]):
                yield from _module_level(part)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle():
    modules = all_modules()
    assert {"lico_tune.plan", "lico_tune.plan.cells", "lico_tune.layout", "lico_tune.tune.tuner",
            "lico_tune.models.text.hf", "lico_tune.results.tune_state", "lico_tune.train.loop"} <= set(modules)
    eager, every = imports(modules, lazy=False), imports(modules, lazy=True)
    assert "lico_tune.results.scan" in eager["lico_tune.results.catalog"]        # the graph is not empty
    assert "lico_tune.models.text.hf" in every["lico_tune.models.text"]          # lazy imports are seen
    assert "lico_tune.models.text.hf" not in eager["lico_tune.models.text"]
    for graph in (eager, every):
        cycle = find_cycle(graph)
        assert cycle is None, "import cycle: " + " -> ".join(cycle)


RULES = {  # importer prefix -> forbidden prefixes
    "lico_tune": [RAY_SIDE, "lico_tune.cli"],
    "lico_tune.results": ["lico_tune.plan", "lico_tune.train"],
    "lico_tune.train": ["lico_tune.plan", "lico_tune.results"],
    "lico_tune.plan": ["lico_tune.train", "lico_tune.results"],
    "lico_tune.spec": ["lico_tune.plan", "lico_tune.train", "lico_tune.models", "lico_tune.data",
                       "lico_tune.results", "lico_tune.saliency"],
    **{leaf: ["lico_tune."] for leaf in ("lico_tune.keys", "lico_tune.names", "lico_tune.errors",
                                          "lico_tune.layout", "lico_tune.legacy", "lico_tune.data.names")},
}
ALLOWED = {"lico_tune.cli": [RAY_SIDE],      # `lico-tune run/resume` start the Ray side
           "lico_tune.spec": ["lico_tune.data.names"]}   # data.name's choices: data/'s own list


def against_the_flow(graph: dict[str, set[str]]) -> list[str]:
    """'a imports b' for each import of `graph` that RULES forbid and ALLOWED does not excuse."""
    bad = []
    for mod, targets in graph.items():
        for prefix, forbidden in RULES.items():
            if mod != prefix and not mod.startswith(prefix + "."):
                continue
            if mod == RAY_SIDE or mod.startswith(RAY_SIDE + "."):
                continue
            for t in targets:
                hit = [f for f in forbidden if t == f or t.startswith(f if f.endswith(".") else f + ".")]
                inside = [f for f in hit if f != "lico_tune."        # a leaf's rule: all of lico_tune
                          and (mod == f or mod.startswith(f + "."))]   # else its own package
                if set(hit) - set(inside) and not any(t == a or t.startswith(a + ".") for a in ALLOWED.get(
                        next((k for k in ALLOWED if mod == k or mod.startswith(k + ".")), ""), [])):
                    bad.append(f"{mod} imports {t}")
    return sorted(set(bad))


def test_imports_follow_the_data_flow():
    """Lazy imports included: nothing outside the Ray side and the command imports them (the CLI
    starts the Ray side), the results never import the planner or the trainer, the trainer never
    imports the planner, the spec language imports nothing of the method but data/'s dataset list,
    and the modules every layer reads (keys, names, errors, layout, legacy, that list
    data/names.py) import nothing of lico_tune. A package's modules may import each other."""
    bad = against_the_flow(imports(all_modules(), lazy=True, packages=False))
    assert not bad, "imports against the data flow:\n" + "\n".join(bad)


def test_the_layering_check_catches_a_wrong_import(tmp_path):
    """The rules above on a small package: a results module importing the trainer is caught, a leaf
    importing anything of lico_tune is, and the spec may read data/names.py but nothing else of data/."""
    pkg = tmp_path / "lico_tune"
    for d in ("results", "train", "spec", "data"):
        (pkg / d).mkdir(parents=True)
    for f in ("__init__.py", "results/__init__.py", "train/__init__.py", "train/loop.py", "spec/__init__.py",
              "data/__init__.py", "data/registry.py", "errors.py"):
        (pkg / f).write_text("")
    (pkg / "results" / "scan.py").write_text("def f():\n    from ..train.loop import x\n")
    (pkg / "data" / "names.py").write_text("from ..errors import BadInput\n")
    (pkg / "spec" / "trial.py").write_text("from ..data.names import DATASETS\nfrom ..data import build_data\n")
    graph = imports(all_modules(pkg), lazy=True)
    assert "lico_tune.train.loop" in graph["lico_tune.results.scan"]
    assert "lico_tune.train.loop" not in imports(all_modules(pkg), lazy=False)["lico_tune.results.scan"]
    assert against_the_flow(imports(all_modules(pkg), lazy=True, packages=False)) == [
        "lico_tune.data.names imports lico_tune.errors", "lico_tune.results.scan imports lico_tune.train.loop",
        "lico_tune.spec.trial imports lico_tune.data"]


def test_the_spec_loads_no_torch_and_no_data_registry():
    """The spec reads data/names.py, which runs data/__init__: in a fresh interpreter, importing the
    spec loads neither torch nor any of data/ but that package file and its cheap leaves."""
    code = ("import json, sys, lico_tune.spec\n"
            "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.startswith('lico_tune.data'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PKG.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["lico_tune.data", "lico_tune.data.errors",
                                                              "lico_tune.data.names"]


def test_the_core_imports_neither_ray_nor_streamlit():
    """Every module outside lico_tune.tune, imported in a fresh interpreter, loads neither."""
    core = sorted(m for m in all_modules() if not (m == RAY_SIDE or m.startswith(RAY_SIDE + "."))
                  and not m.endswith(".__main__"))      # `python -m lico_tune.cli` runs the command
    assert {"lico_tune.spec", "lico_tune.plan", "lico_tune.data", "lico_tune.models", "lico_tune.losses",
            "lico_tune.train", "lico_tune.saliency", "lico_tune.results.scan", "lico_tune.results.catalog",
            "lico_tune.results.tune_state", "lico_tune.cli"} <= set(core)
    code = ("import importlib, json, sys\n"
            f"for m in {core!r}: importlib.import_module(m)\n"
            "print(json.dumps({k: k in sys.modules for k in ('ray', 'streamlit', 'lico_tune.train')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=PKG.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == {"ray": False, "streamlit": False, "lico_tune.train": True}


def test_pickles_of_experiments_started_before_the_moves_still_load():
    """tuner.pkl and searcher state written by older lico-tune versions name modules that have
    moved (lico_tune.search, lico_tune.selection, lico_tune.spec_trial, ...); each old name loads
    as the current object, through the import hook lico_tune installs (lico_tune/legacy.py)."""
    import importlib
    import pickle

    from lico_tune import keys, legacy
    from lico_tune.errors import TrialConfigError
    from lico_tune.plan import selection
    from lico_tune.tune import callbacks, searchers, tuner
    for old, new in [("lico_tune.search\n_OptunaCells", searchers.OptunaCells),
                     ("lico_tune.search\ntrial_dirname", tuner.trial_dirname),
                     ("lico_tune.tune_support\nLicoOptunaSearch", searchers.LicoOptunaSearch),
                     ("lico_tune.tune_support\nKeepResultsOnRetry", callbacks.KeepResultsOnRetry),
                     ("lico_tune.results.callback\nCatalogCallback", callbacks.CatalogCallback),
                     ("lico_tune.selection\nconfig_id", keys.config_id),
                     ("lico_tune.selection\ncheck_repeats", selection.check_repeats),
                     ("lico_tune.device\nTrialConfigError", TrialConfigError),
                     ("lico_tune.chance\nKINDS", keys.CHANCE_KINDS)]:
        assert pickle.loads(f"c{old}\n.".encode()) is new     # the GLOBAL opcode: module, name
    modules = all_modules()
    for old, new in legacy.RENAMED.items():
        assert old not in modules and new in modules, (old, new)
        assert importlib.import_module(old) is importlib.import_module(new)
    for old, names in legacy.SPLIT.items():
        assert old not in modules
        for name, where in names.items():
            assert getattr(importlib.import_module(old), name) is legacy.resolve(where), (old, name)


def test_no_module_imports_an_old_name():
    """The old names are for pickles only: lico_tune, its dashboard, tests and benchmarks import the
    current modules."""
    from lico_tune import legacy
    old = set(legacy.RENAMED) | set(legacy.SPLIT)
    bad = []
    for folder in (PKG, PKG.parent / "dashboards", PKG.parent / "tests", PKG.parent / "benchmarks"):
        for file in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                bad += [f"{file.relative_to(PKG.parent)}: {n}" for n in names if n in old]
    assert not bad, bad


def test_no_private_name_is_used_across_modules():
    """`from x import _name`, or `x._name` on a lico_tune module `x` this module imported, reaches into
    another module's internals (as text_openclip once did with text_hf's _hf_cache): refused between
    lico_tune's modules, lazy imports included. (Third-party internals are another matter:
    openclip.py builds open_clip's text tower alone with open_clip.model._build_text_tower, which
    open_clip has no public name for.)"""
    modules = all_modules()
    bad = []
    for name, file in modules.items():
        tree = ast.parse(file.read_text())
        bound = set()    # local names of lico_tune modules: `from . import keys`, `import lico_tune.x as y`
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("lico_tune")):
                bad += [f"{name}: from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
                base = _resolve(name, file.name == "__init__.py", node)
                bound |= {a.asname or a.name for a in node.names if f"{base}.{a.name}" in modules}
            elif isinstance(node, ast.Import):
                bound |= {a.asname for a in node.names if a.asname and a.name.startswith("lico_tune")}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{name}: {node.value.id}.{node.attr}")
    assert not bad, bad


def test_the_e2e_guard_knows_which_programs_start_processes():
    """tests/conftest.py fails an unmarked test that starts Ray, Streamlit, Chromium or the CLI; it
    does not count a syntax check or a probe whose arguments merely mention lico-tune."""
    from conftest import starts_e2e_process
    py = "/work/venv/bin/python"
    assert starts_e2e_process([py, "-m", "lico_tune.cli", "run", "spec.yaml"])
    assert starts_e2e_process(["setpriv", "--bounding-set=-dac_override", py, "-m", "lico_tune.cli", "report", "x"])
    assert starts_e2e_process([py, "-m", "streamlit", "run", "app.py"]) and starts_e2e_process(["/usr/bin/chromium", "--headless"])
    assert starts_e2e_process(["/x/site-packages/ray/core/src/ray/raylet/raylet", "--node"]) and starts_e2e_process(["make", "demo"])
    assert starts_e2e_process([py, "/x/site-packages/ray/dashboard/agent.py"])
    assert not starts_e2e_process(["bash", "-n", "deploy/slurm/lico-tune.sbatch"])
    assert not starts_e2e_process([py, "-c", "import pyarrow.fs", "s3://lico-tune-no-such-bucket/res"])
    assert not starts_e2e_process(["git", "rev-parse", "HEAD"]) and not starts_e2e_process([py, "-c", "import lico_tune"])


def test_the_package_top_holds_at_most_ten_plain_modules():
    """lico_tune/'s top keeps the modules every layer reads; the rest live in packages by job."""
    plain = sorted(p.name for p in PKG.glob("*.py") if p.name != "__init__.py")
    assert len(plain) <= 10, plain


def test_a_package_that_lists_its_modules_lists_them_all():
    """A package docstring with a module table ("    name.py   what it does") names every module of
    the package: a new module is found where a newcomer looks first (tune/__init__ once listed 15 of 18)."""
    import re
    row = re.compile(r"^ +\w+\.py {2,}\S", re.M)
    for init in sorted(PKG.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()), clean=False) or ""
        if not row.search(doc):
            continue
        listed = set(re.findall(r"\b(\w+)\.py\b", doc))
        modules = {p.stem for p in init.parent.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
        assert modules <= listed, f"{init.relative_to(PKG.parent)} does not list {sorted(modules - listed)}"
