"""Imports point one way: each package of sidjax imports only packages below it.

A short AST scan of every module (imports inside functions included), so a newcomer can read
the layers bottom-up and the shared trainer never depends on one model family. Stage modules
(the `train_and_evaluate` entries of `sidjax.stages.STAGES`) sit above every library package
and may import each other: a stage reads the files an earlier stage wrote.
"""

import ast
import pathlib

from absl.testing import absltest

from sidjax import stages

ROOT = pathlib.Path(__file__).resolve().parent.parent / "sidjax"

# Package -> layer; a module may import its own package or any package of a lower layer.
LAYERS = {
    "config_checks": 0,
    "config_files": 1, "train": 1,
    "data": 2,
    "model": 3,
    "embed": 4, "decode": 4, "tasks": 4,
    "sid": 5, "eval": 5, "sasrec": 5, "toy": 5,
    "sft": 6, "rl": 6,
    "plan": 7, "prepare": 7,
    "pipeline": 9,
    "stages": 10, "main": 11,
}
STAGE_LAYER = 8


def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sidjax_imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute `sidjax.*` import in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                    if node.module == "sidjax"]
    return [(line, m) for line, m in out if m.startswith("sidjax.")]


def stage_modules() -> set[str]:
    return {entry.split(":")[0] for entry in stages.STAGES.values()}


def layer_of(module: str, stage_set: set[str]) -> tuple[int, str]:
    """(layer, package) of a sidjax module; a module of an unknown package fails loudly."""
    package = module.split(".")[1]
    if package not in LAYERS:
        raise AssertionError(f"sidjax.{package} has no layer: add it to LAYERS in {__file__}.")
    if module in stage_set and LAYERS[package] < STAGE_LAYER:
        return STAGE_LAYER, package
    return LAYERS[package], package


def upward_imports(stage_set: set[str], root: pathlib.Path = ROOT) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        if name == "sidjax":  # The package's __init__: a docstring and the version.
            continue
        own_layer, own_package = layer_of(name, stage_set)
        for line, target in sidjax_imports(path):
            target_layer, target_package = layer_of(target, stage_set)
            if target_package == own_package:
                continue
            if target_layer > own_layer or (target_layer == own_layer
                                             and own_layer != STAGE_LAYER):
                problems.append(f"{path.relative_to(root.parent)}:{line} ({name}, layer "
                                f"{own_layer}) imports {target} (layer {target_layer})")
    return problems


class LayerTest(absltest.TestCase):

    def test_no_package_imports_a_package_above_it(self):
        problems = upward_imports(stage_modules())
        self.assertEqual(problems, [], "upward imports:\n" + "\n".join(problems))

    def test_the_scan_catches_an_upward_import(self):
        # The check must be able to fail: a data module importing the model (at top level or
        # inside a function) is reported; a stage importing another stage is not.
        root = pathlib.Path(self.create_tempdir().full_path) / "sidjax"
        files = {"data/reader.py": "from sidjax.model.chat import render_chat\n"
                                   "def f():\n    import sidjax.eval.metrics\n",
                 "sft/stage.py": "from sidjax.sid.stage import sid_dataset\n",
                 "sid/stage.py": "from sidjax.data.reader import f\n"}
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        problems = upward_imports({"sidjax.sft.stage", "sidjax.sid.stage"}, root)
        self.assertEqual(len(problems), 2, problems)
        self.assertIn("sidjax/data/reader.py:1", problems[0])
        self.assertIn("imports sidjax.model.chat", problems[0])
        self.assertIn("sidjax/data/reader.py:3", problems[1])

    def test_every_package_has_a_layer(self):
        packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()
                    or p.is_dir() and any(p.glob("*.py"))}
        modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
        self.assertEqual(sorted((packages | modules) - set(LAYERS)), [])

    def test_shared_machinery_and_data_import_nothing_above(self):
        # The two rules a newcomer relies on, stated on their own.
        for package, allowed in (("train", {"train"}), ("data", {"data"})):
            for path in (ROOT / package).rglob("*.py"):
                for line, target in sidjax_imports(path):
                    self.assertIn(target.split(".")[1], allowed, f"{path}:{line} {target}")


if __name__ == "__main__":
    absltest.main()
