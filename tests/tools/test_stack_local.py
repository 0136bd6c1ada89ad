"""tools/stack-local.sh starts the compose topology: its tandem commands and flags exist, it parses."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import yaml

from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "stack-local.sh"


def _tandem_commands() -> list[list[str]]:
    text = SCRIPT.read_text().replace("\\\n", " ")
    commands = []
    for match in re.finditer(r'"\$BIN/tandem" ([^\n]+)', text):
        words = shlex.split(re.sub(r'"?\$[A-Z_{}]+"?', "1", match.group(1)))
        commands.append(words)
    return commands


def test_the_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_every_tandem_command_parses_and_matches_compose() -> None:
    commands = _tandem_commands()
    assert [words[0] for words in commands] == ["serve", "worker"]
    parser = build_parser()
    for words in commands:
        parser.parse_args(words)  # an unknown command or flag exits with status 2
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for service, words in zip(("api", "worker"), commands, strict=True):
        compose_flags = {word for word in compose[service]["command"] if word.startswith("--")}
        assert compose_flags - {"--host"} <= set(words), f"{service}: flags differ from docker-compose.yml"


def test_usage_without_a_command() -> None:
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "usage" in result.stderr
