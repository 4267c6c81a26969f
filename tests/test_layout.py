"""The folder listing tells the method from its tooling: deepot_core's top-level modules never import
deepot_core.tooling, ComfyUI or the nodes (checked on the source, so a lazy import inside a function counts)."""
import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "deepot_core"
METHOD_MODULES = sorted(p for p in CORE.glob("*.py"))
FORBIDDEN_TOP = ("comfy", "comfy_api", "folder_paths", "nodes", "server", "execution")


def imported_modules(path: Path):
    """(line, absolute-ish module name) of every import in ``path``, relative ones resolved against deepot_core."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.lineno, node.module or ""
            elif node.level == 1:
                base = "deepot_core" + (f".{node.module}" if node.module else "")
                names = [base] if node.module else [f"{base}.{a.name}" for a in node.names]
                for name in names:
                    yield node.lineno, name
            else:
                yield node.lineno, "." * node.level + (node.module or "")  # above the package: never allowed


def test_the_method_modules_are_the_top_level_and_the_tooling_a_folder():
    names = {p.stem for p in METHOD_MODULES}
    assert {"statistics", "gaussian_ot", "patch_apply", "transport", "blend", "colour", "serialization"} <= names
    assert not names & {"pipeline", "experiments", "restorers", "degrade", "imageio", "spaces", "metrics", "cli"}
    assert (CORE / "tooling" / "__init__.py").is_file()


@pytest.mark.parametrize("path", METHOD_MODULES, ids=lambda p: p.name)
def test_a_method_module_imports_neither_the_tooling_nor_comfyui(path):
    if path.name == "__main__.py":  # `python -m deepot_core` is the command line's door, by design
        return
    bad = [(line, name) for line, name in imported_modules(path)
           if name.startswith(("deepot_core.tooling", ".")) or name.split(".")[0] in FORBIDDEN_TOP]
    assert not bad, f"{path.name} imports {bad}; the method must not depend on its tooling or on ComfyUI"
