"""The package's layout by dependency: which parts need torch, which may import which."""

import ast
import shutil
import subprocess
import sys
import textwrap

from conftest import ROOT

PACKAGE = ROOT / "lfads_core"
# Layers, lowest first: a module imports only from its own part or from a lower layer.
LAYERS = {"base": 0, "nwb": 1, "analysis": 1, "lfads": 1, "workflow": 2}


def part_of(module: str) -> str:
    """``lfads_core.nwb.ingest`` -> ``nwb``; top-level modules are the base."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else "base"


def package_imports() -> dict[str, set[str]]:
    """``{module: {lfads_core modules it imports}}`` (every import statement, also inside
    functions), read from the source."""
    graph = {}
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for p in PACKAGE.rglob("*.py")}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            # the deepest lfads_core module each import names
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("lfads_core") and target != name:
                    found.add(target)
        graph[name] = found - {"lfads_core"}  # the package's __init__ holds only the version
    return graph


def test_the_nwb_side_and_the_analysis_need_no_torch():
    code = textwrap.dedent("""
        import sys
        import lfads_core.nwb.simulate, lfads_core.nwb.ingest, lfads_core.nwb.binning
        import lfads_core.nwb.alignment, lfads_core.nwb.export, lfads_core.merge
        import lfads_core.analysis.metrics, lfads_core.analysis.decoding
        import lfads_core.analysis.ground_truth, lfads_core.analysis.evaluation
        import lfads_core.analysis.plotting, lfads_core.provenance
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_imports_run_only_downwards_and_without_circles():
    graph = package_imports()
    assert {part_of(m) for m in graph} == set(LAYERS)
    for module, imported in graph.items():
        for target in imported:
            a, b = part_of(module), part_of(target)
            assert a == b or LAYERS[b] < LAYERS[a], f"{module} imports {target}"
    # no circle: a topological order exists
    remaining = {m: set(deps) for m, deps in graph.items()}
    while remaining:
        leaves = {m for m, deps in remaining.items() if not deps & remaining.keys()}
        assert leaves, f"import circle among {sorted(remaining)}"
        for m in leaves:
            del remaining[m]


def test_the_package_stands_alone(tmp_path):
    """A copy of the package with no workflow/ beside it loads and validates a sheet."""
    shutil.copytree(PACKAGE, tmp_path / "lfads_core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "schema.yaml").write_text(
        (ROOT / "workflow" / "schemas" / "datasets.schema.yaml").read_text())
    (tmp_path / "datasets.tsv").write_text("dataset\tnwb\tbin_width_ms\na\ta.nwb\t10\n"
                                           "b\tb.nwb\t0\n")
    code = textwrap.dedent(f"""
        import sys, yaml
        sys.path.insert(0, {str(tmp_path)!r})
        import lfads_core
        assert lfads_core.__file__.startswith({str(tmp_path)!r}), lfads_core.__file__
        from lfads_core.errors import InputDataError
        from lfads_core.workflow.settings import load_dataset_sheet, read_schema
        defaults = yaml.safe_load(open({str(ROOT / "config" / "config.yaml")!r}))["defaults"]
        schema = read_schema({str(tmp_path / "schema.yaml")!r})
        try:
            load_dataset_sheet({str(tmp_path / "datasets.tsv")!r}, defaults, schema)
        except InputDataError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, check=True)
    assert "dataset 'b'" in out.stdout and "field 'bin_width_ms'" in out.stdout
    assert not (tmp_path / "workflow").exists()


def test_the_wheel_carries_the_c_source_of_the_native_kernels(tmp_path):
    """model.native_kernels compiles native_kernels.c on first use, so an installed (not
    editable) package must ship it."""
    import zipfile  # noqa: PLC0415

    src = tmp_path / "src"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(PACKAGE, src / "lfads_core", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("lfads_core-*.whl")
    assert "lfads_core/lfads/loops/native_kernels.c" in zipfile.ZipFile(wheel).namelist()
