"""The shape of the `swinir` package (issue 22, items 4 and 5): the command is a package of one module
per sub-command behind a registry, there is no import cycle, no library module imports a command
module, and each shared job (one-line error text, autocast, atomic writes, degradations, restoration
scores) has one definition."""

import ast
import json
import os
import sys
import types

import numpy as np
import pytest

from tests.helpers import ROOT, run_python

PACKAGE = os.path.join(ROOT, "swinir")


def _modules() -> dict[str, str]:
    """Dotted module name -> file, for every module of swinir/."""
    found = {}
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = path
    return found


def _imports(module: str, path: str, known: set[str]) -> set[str]:
    """The swinir modules `module` imports anywhere in its file (function-local imports included)."""
    is_package = path.endswith("__init__.py")
    package = module if is_package else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names = [source] + [f"{source}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # `from . import x` imports module swinir.x when it is one, else a name of the package
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("swinir"):
                targets.add(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "swinir.commands.restore" in graph and "swinir.train.loop" in graph  # the walk found the packages
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_library_module_imports_a_command_module():
    # the command's modules, and `python -m swinir` (swinir/__main__.py), its entry point
    command = ("swinir.commands", "swinir.__main__")
    offenders = {module: sorted(t for t in targets if t.startswith("swinir.commands"))
                 for module, targets in import_graph().items() if not module.startswith(command)}
    assert not {module: targets for module, targets in offenders.items() if targets}


def test_function_local_imports_count():
    graph = import_graph()
    # swinir.commands.restore imports swinir.tiling only inside functions (it needs torch)
    assert "swinir.tiling" in graph["swinir.commands.restore"]


def test_one_module_per_sub_command_behind_the_registry():
    from swinir import commands

    assert list(commands.COMMANDS) == ["restore", "eval", "degrade", "bench", "train", "export"]
    for name in commands.COMMANDS:
        module = commands.command_module(name)
        assert module.__name__.startswith("swinir.commands.")
        assert isinstance(module.HELP, str) and callable(module.add_arguments) and callable(module.run)
    for gone in ("cli", "export_cli", "train_cli", "training", "accelerate"):
        assert not os.path.exists(os.path.join(PACKAGE, gone + ".py")), gone


def test_adding_a_sub_command_is_a_module_and_a_registry_line(monkeypatch, capsys):
    from swinir import commands

    hello = types.ModuleType("swinir.commands.hello")
    hello.HELP, hello.DESCRIPTION = "say hello", None
    hello.add_arguments = lambda parser: parser.add_argument("--name", default="world")
    hello.run = lambda args: print(f"hello {args.name}") or 0
    monkeypatch.setitem(sys.modules, "swinir.commands.hello", hello)
    monkeypatch.setitem(commands.COMMANDS, "hello", "hello")
    assert commands.main(["hello", "--name", "you"]) == 0
    assert capsys.readouterr().out == "hello you\n"
    assert commands.main(["--help"]) == 0
    assert "say hello" in capsys.readouterr().out


def test_a_sub_command_imports_only_its_own_module():
    done = run_python("""
        import json, sys
        from swinir.commands import main
        code = main(["degrade", "--help"])
        print(json.dumps([code, sorted(m for m in sys.modules if m.startswith("swinir.commands.")),
                          "torch" in sys.modules]))
    """)
    code, loaded, torch_loaded = json.loads(done.stdout.splitlines()[-1])
    assert code == 0 and not torch_loaded, done.stderr
    assert "swinir.commands.degrade" in loaded
    assert not {"swinir.commands.restore", "swinir.commands.train", "swinir.commands.export"} & set(loaded)


def test_accelerate_is_a_plain_function_of_a_plain_module():
    done = run_python("""
        import sys, types
        import swinir
        import swinir.fusing  # binding the submodule must not replace the function
        print(type(sys.modules["swinir"]) is types.ModuleType, isinstance(swinir.accelerate, types.FunctionType))
    """)
    assert done.stdout.split() == ["True", "True"], done.stderr


# --- one definition of each shared job ---------------------------------------------------------------


def _definitions(name: str) -> list[str]:
    return sorted(module for module, path in _modules().items()
                  for node in ast.walk(ast.parse(open(path).read()))
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name)


def _calls(attribute: str) -> list[str]:
    """Modules that call something.<attribute>(...)."""
    return sorted({module for module, path in _modules().items()
                   for node in ast.walk(ast.parse(open(path).read()))
                   if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attribute})


def test_shared_jobs_are_defined_once():
    for private in ("_first_line", "_autocast", "_on_255_scale", "write_atomically", "_compare", "_scores",
                    "_degrade"):
        assert _definitions(private) == [], private
    assert _definitions("first_line") == ["swinir.errors"]
    assert _definitions("on_255_scale") == ["swinir.imageio"]
    assert _definitions("restoration_scores") == ["swinir.metrics"]
    assert _definitions("atomic_write") == ["swinir.files"]
    # torch.autocast itself: only in swinir.precision (the command, the trainer and the benchmark call it)
    autocast_users = {module for module, path in _modules().items() if "torch.autocast(" in open(path).read()}
    assert autocast_users == {"swinir.precision"}
    # timing: swinir.benchmark's rules are swinir_kernels.timing's (the selftest's too), not a copy
    import swinir_kernels.timing

    from swinir import benchmark

    assert _definitions("time_alternating") == [] and _definitions("_timed") == []
    assert benchmark.time_alternating is swinir_kernels.timing.time_alternating
    assert benchmark.spread_note is swinir_kernels.timing.spread_note
    # temporary files renamed into place: only swinir.files (hub.py's streaming download is the one other,
    # pending: it can write through files.atomic_write)
    assert set(_calls("mkstemp")) - {"swinir.hub"} == {"swinir.files"}


def test_training_degrades_exactly_as_the_degrade_command(tmp_path):
    from swinir import imageio
    from swinir.commands import main
    from swinir.train import Degradation, degrade_like_cli

    rng = np.random.default_rng(0)
    pixels = rng.random((24, 32, 3), dtype=np.float32)
    imageio.write_image(str(tmp_path / "in" / "a.png"), pixels)
    pixels = imageio.read_image(str(tmp_path / "in" / "a.png")).pixels
    for mode, option, degradation, level in (("sr", ["--scale", "2"], Degradation("sr", 2), None),
                                             ("noise", ["--sigma", "15", "--seed", "3"], Degradation("noise", 1, 15, 15), 15.0),
                                             ("jpeg", ["--quality", "20"], Degradation("jpeg", 1, 20, 20), 20)):
        assert main(["degrade", str(tmp_path / "in"), str(tmp_path / mode), "--mode", mode, *option, "-q"]) == 0
        written = imageio.read_image(str(tmp_path / mode / "a.png")).pixels
        np.testing.assert_array_equal(degrade_like_cli(pixels, degradation, level, 3, 8), written)


def test_validation_scores_are_eval_scores(tmp_path):
    from swinir import imageio, metrics
    from swinir.commands.evaluate import compare
    from swinir.train.validation import ValImage, scores

    rng = np.random.default_rng(1)
    truth, restored = rng.random((20, 24, 3), dtype=np.float32), rng.random((20, 24, 3), dtype=np.float32)
    imageio.write_image(str(tmp_path / "hr.png"), truth)
    imageio.write_image(str(tmp_path / "sr.png"), restored)
    hr = imageio.read_image(str(tmp_path / "hr.png"))
    from_files = compare(hr, imageio.read_image(str(tmp_path / "sr.png")), 2, 2)
    in_training = scores(restored, ValImage(None, imageio.on_255_scale(hr.pixels, 8), 8), 2)
    assert list(from_files) == pytest.approx(in_training, abs=0)
    assert from_files[0] == metrics.psnr(imageio.quantize(restored, 8), imageio.quantize(hr.pixels, 8), 2)


def test_the_console_script_and_python_m_swinir_run_the_command_package():
    import tomllib

    from swinir import commands

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        target = tomllib.load(handle)["project"]["scripts"]["swinir"]
    module, _, name = target.partition(":")
    assert (module, name) == ("swinir.commands", "main") and commands.main.__module__ == "swinir.commands"
    source = open(os.path.join(PACKAGE, "__main__.py")).read()
    assert "from .commands import main" in source



def test_every_submodule_is_reachable_from_a_bare_import_swinir():
    import swinir

    top_level = {name.split(".")[1] for name in _modules() if name.count(".") >= 1}
    assert top_level - {"__main__"} == set(swinir._SUBMODULES)
