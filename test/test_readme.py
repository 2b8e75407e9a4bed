"""The README's tables and commands stay true to the code."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from hydranet_ros.messages.topics import OUTPUT_SPECS
from hydranet_ros.node.parameter_docs import parameter_table_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(name: str) -> str:
    match = re.search(rf"<!-- {name} -->\n(.*?)<!-- /{name} -->", README, re.S)
    assert match, f"README has no <!-- {name} --> section"
    return match.group(1).strip()


def _console_scripts() -> dict[str, str]:
    setup = (ROOT / "setup.py").read_text()
    return dict(re.findall(r'"(hydranet_\w+) = ([\w.]+:main)"', setup))


def test_parameter_table_is_generated_from_the_node() -> None:
    assert _section("parameters") == parameter_table_markdown().strip()


def test_output_topic_table_matches_the_output_specs() -> None:
    rows = [line for line in _section("output-topics").splitlines() if line.startswith("|")]
    assert len(rows) == len(OUTPUT_SPECS)
    for row, spec in zip(rows, OUTPUT_SPECS):
        assert f"`{spec.topic}`" in row and f"`{spec.encoding}`" in row and spec.description in row


def test_every_console_script_is_documented_and_has_help(capsys) -> None:
    scripts = _console_scripts()
    assert len(scripts) == 8
    documented = re.findall(r"^\| `(hydranet_\w+)` \|", _section("scripts"), re.M)
    assert sorted(documented) == sorted(scripts)
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        main = getattr(importlib.import_module(module), function)
        with pytest.raises(SystemExit) as exit_info:
            code = main(["--help"]) if name != "hydranet_node" else main(["hydranet_node", "--help"])
            raise SystemExit(code)
        assert exit_info.value.code in (0, None), name
        assert name in capsys.readouterr().out or name == "hydranet_node"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci
    block = README.split("<!-- test-command -->", 1)[1]
    command = block.split("```bash\n", 1)[1].split("```", 1)[0].strip()
    assert "pytest" in command and "\n" not in command
