"""The Dockerfile, checked without docker: what each stage does, and that the final one only runs.

The image is the wheel ``tests/test_packaging.py`` builds and runs (same ``pip wheel`` flags, same
plain install with no extras), copied as a venv onto the same slim base; these tests hold the
Dockerfile to that and to the chart, which starts the console scripts by name.
"""

from __future__ import annotations

import configparser
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|make|build-essential|clang|apt-get|apk|pip|pip3|wheel)\b")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "FROM":
            words = rest.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"every stage is named: FROM {rest}"
            stages.append(Stage(words[0], words[2]))
        elif not stages:
            assert keyword == "ARG", line
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def _stages() -> tuple[dict[str, str], list[Stage]]:
    return parse((REPO / "Dockerfile").read_text(encoding="utf-8"))


def test_two_stages_on_the_same_slim_python() -> None:
    args, stages = _stages()
    assert [s.name for s in stages] == ["build", "final"]
    assert {s.base for s in stages} == {"${PYTHON_IMAGE}"}
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base), base
    declared = configparser.ConfigParser()
    declared.read(REPO / "setup.cfg", encoding="utf-8")
    minimum = declared["options"]["python_requires"].removeprefix(">=")
    assert tuple(map(int, base.split(":")[1].split("-")[0].split("."))) >= tuple(map(int, minimum.split(".")))


def test_the_build_stage_builds_our_wheel_and_installs_it_without_extras() -> None:
    _, (build, _) = _stages()
    run = " && ".join(build.all("RUN"))
    wheel = re.search(r"pip wheel (.*?) \.(?: |$)", run)
    assert wheel is not None, run
    # The flags tests/test_packaging.py builds with, so its wheel is the image's.
    assert {"--no-deps", "--no-build-isolation"} <= set(shlex.split(wheel.group(1)))
    installs = re.findall(r"pip --python /opt/kcp-tmc/bin/python install (\S+)", run)
    assert installs == ["/dist/kcp_tmc-*.whl"]  # no [extras], no dev packages
    assert "python -m venv --without-pip /opt/kcp-tmc" in run
    assert build.all("COPY") == [". ."]


def test_the_final_stage_only_runs_as_a_non_root_user() -> None:
    _, (_, final) = _stages()
    assert final.all("COPY") == ["--from=build /opt/kcp-tmc /opt/kcp-tmc"]
    users = final.all("USER")
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users  # numeric, so runAsNonRoot can verify it
    assert [kw for kw, _ in final.instructions].index("USER") > max(
        i for i, (kw, _) in enumerate(final.instructions) if kw == "RUN"
    )
    for command in final.all("RUN"):
        installs = re.findall(r"(?:apt-get|apk|pip)\s+(?:install|add)", command)
        assert installs == [], command
        # The one RUN removes the base image's pip/setuptools/wheel and adds the user.
        assert not BUILD_TOOLS.search(
            re.sub(r"pip uninstall --yes --quiet pip setuptools wheel", "", command)
        )
    env = " ".join(final.all("ENV"))
    assert "PATH=/opt/kcp-tmc/bin:$PATH" in env


def test_the_chart_starts_console_scripts_the_wheel_declares() -> None:
    declared = configparser.ConfigParser()
    declared.read(REPO / "setup.cfg", encoding="utf-8")
    scripts = {line.split("=")[0].strip() for line in
               declared["options.entry_points"]["console_scripts"].strip().splitlines()}  # fmt: skip
    commands = set()
    for template in (REPO / "charts" / "kcp-tmc" / "templates").glob("*.yaml"):
        commands |= set(re.findall(r'command: \["(tmc-[a-z-]+)"\]', template.read_text(encoding="utf-8")))
        commands |= set(re.findall(r"^\s*(tmc-[a-z-]+) ", template.read_text(encoding="utf-8"), re.MULTILINE))
    for helper in (REPO / "charts" / "kcp-tmc" / "templates").glob("*.tpl"):
        commands |= set(re.findall(r"^\s*(tmc-[a-z-]+) ", helper.read_text(encoding="utf-8"), re.MULTILINE))
    assert {"tmc-webhook", "tmc-reconciler", "tmc-certs"} <= commands <= scripts
    values = yaml.safe_load((REPO / "charts" / "kcp-tmc" / "values.yaml").read_text(encoding="utf-8"))
    uid = int(_stages()[1][1].all("USER")[-1].split(":")[0])
    assert values["podSecurityContext"]["runAsUser"] == uid


def test_the_build_context_leaves_out_environments_and_caches() -> None:
    ignored = set((REPO / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".git", ".venv", "build", "dist", "*.egg-info"} <= ignored


def test_the_parser_rejects_an_unnamed_stage() -> None:
    with pytest.raises(AssertionError, match="every stage is named"):
        parse("FROM python:3.11-slim\nRUN true\n")
    args, stages = parse("ARG X=1\nFROM a AS b\n# c\nRUN x \\\n  y\n")
    assert args == {"X": "1"}
    assert stages[0].all("RUN") == ["x y"]
