"""The folder layout is the architecture: each layer imports only the layers beneath it.

Reads every module's imports (module level and inside functions) with ``ast`` and checks
them against the table below, and that no two modules import each other in a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "hydranet_ros"

# layer -> the layers it may import (besides itself). Only the node imports rclpy and nothing
# imports the node; only training (and the command-line tools that drive it) import training.
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "model": {"common"},
    "synthetic": {"common", "model"},
    "inference": {"common", "model"},
    "messages": {"common"},
    "node": {"common", "model", "inference", "messages"},
    "offline": {"common", "model", "inference", "messages", "synthetic"},
    "training": {"common", "model", "inference", "messages", "offline", "synthetic"},
    "tools": {"common", "model", "inference", "messages", "offline", "synthetic", "training"},
    "": {"inference"},   # hydranet_ros/__init__.py: the public API
}
# ROS Python packages and the layers that may import them: only the node talks to a ROS graph;
# the message conventions may use cv_bridge (a plain conversion library, as vision_opencv means it)
ROS_MODULES = {
    "rclpy": {"node"}, "rcl_interfaces": {"node"}, "lifecycle_msgs": {"node"}, "diagnostic_updater": {"node"},
    "diagnostic_msgs": {"node"}, "std_msgs": {"node"}, "vision_msgs": {"node"}, "builtin_interfaces": {"node"},
    "sensor_msgs": {"node", "messages"}, "cv_bridge": {"node", "messages"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(absolute module imported, at module level?) for every import in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                modules = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
            else:
                modules = [node.module or ""]
            found += [(m, id(node) in top_level) for m in modules]
        elif isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
    return found


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE_DIR / parts[1]).is_dir()) else ""


def all_modules() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def test_every_module_lives_in_a_known_layer():
    for path in all_modules():
        assert layer_of(module_name(path)) in ALLOWED, f"{path} is outside the layers of ALLOWED"


def test_layers_import_only_what_stands_beneath_them():
    wrong = []
    for path in all_modules():
        layer = layer_of(module_name(path))
        for target, _ in imports_of(path):
            ros_layers = ROS_MODULES.get(target.split(".")[0])
            if ros_layers is not None and layer not in ros_layers:
                wrong.append(f"{module_name(path)} imports {target} (allowed only in {sorted(ros_layers)})")
            if not target.startswith("hydranet_ros"):
                continue
            target_layer = layer_of(target)
            if target_layer != layer and target_layer not in ALLOWED[layer]:
                wrong.append(f"{module_name(path)} ({layer or 'top'}) imports {target} ({target_layer or 'top'})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_between_modules():
    modules = {module_name(p): p for p in all_modules()}
    graph = {name: {t for t, top in imports_of(path) if top and t in modules and t != name}
             for name, path in modules.items()}
    # a package's __init__ importing its own submodules is how re-exports work, not a cycle
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt):] + [node, nxt] if nxt in stack else [node, nxt])
                return True
            if nxt not in state and visit(nxt, stack + [node]):
                return True
        state[node] = 2
        return False

    for name in sorted(graph):
        if name not in state and visit(name, []):
            break
    assert not cycle, "import cycle: " + " -> ".join(cycle)
