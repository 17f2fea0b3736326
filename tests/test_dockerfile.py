"""The Dockerfile, checked without docker: what each stage does, and that the final one only runs.

The image is the wheel ``tests/test_packaging.py`` builds and runs (same ``pip wheel`` flags, same
plain install with no extras), copied as a venv onto the same slim base; these tests hold the
Dockerfile to that and to the chart, which starts the console scripts by name.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
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


def _console_scripts() -> set[str]:
    declared = configparser.ConfigParser()
    declared.read(REPO / "setup.cfg", encoding="utf-8")
    lines = declared["options.entry_points"]["console_scripts"].strip().splitlines()
    return {line.split("=")[0].strip() for line in lines}


def _exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(word, str) for word in parsed), args
    return parsed


def test_hadolint_style_rules() -> None:
    # The hadolint rules that apply to this file, checked here because no linter binary is installed.
    _, stages = _stages()
    for index, stage in enumerate(stages):
        keywords = [kw for kw, _ in stage.instructions]
        assert "ADD" not in keywords, "DL3020: COPY, not ADD"
        assert "MAINTAINER" not in keywords, "DL4000: MAINTAINER is deprecated"
        assert all(path.startswith("/") for path in stage.all("WORKDIR")), "DL3000: absolute WORKDIR"
        assert keywords.count("CMD") <= 1 and keywords.count("ENTRYPOINT") <= 1, "DL4003/DL4004"
        for command in stage.all("RUN"):
            assert not re.search(r"(^|&&|;)\s*cd\s", command), f"DL3003: WORKDIR, not cd: {command}"
            assert not re.search(r"\bsudo\b", command), f"DL3004: no sudo: {command}"
            if re.search(r"\bpip\b.*\binstall\b", command):
                env = " ".join(stage.all("ENV"))
                assert "PIP_NO_CACHE_DIR=1" in env or "--no-cache-dir" in command, "DL3042: no pip cache"
        for program in stage.all("CMD") + stage.all("ENTRYPOINT"):
            _exec_form(program)  # DL3025: exec form, so signals reach the process
        for copy in stage.all("COPY"):
            source = re.match(r"--from=(\S+)", copy)
            if source:  # DL3022/DL3023: an earlier stage, never this one
                assert source.group(1) in [s.name for s in stages[:index]], copy
    base = _stages()[0]["PYTHON_IMAGE"]
    assert ":" in base and not base.endswith(":latest"), "DL3006/DL3007: a pinned tag"


def test_the_default_command_is_a_console_script_the_wheel_installs_on_path() -> None:
    _, (build, final) = _stages()
    (command,) = final.all("CMD")
    program = _exec_form(command)[0]
    assert program in _console_scripts()
    assert final.all("ENTRYPOINT") == []  # the chart's `command:` replaces the program, not its arguments
    # The build stage's smoke run is a console script too, from the venv the final stage copies.
    smoke = re.findall(r"/opt/kcp-tmc/bin/(tmc-[a-z-]+)", " && ".join(build.all("RUN")))
    assert smoke and set(smoke) <= _console_scripts()


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Whether docker leaves ``relative`` out of the context (its patterns match a path or a parent)."""
    parts = relative.split("/")
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        for depth in range(1, len(parts) + 1):
            candidate = "/".join(parts[:depth])
            if (
                fnmatch.fnmatchcase(candidate, glob)
                or (glob.startswith("**/") and fnmatch.fnmatchcase(candidate, glob[3:]))
                or (glob.startswith("**/") and fnmatch.fnmatchcase(parts[depth - 1], glob[3:]))
            ):
                excluded = not negate
                break
    return excluded


def test_the_build_context_keeps_every_file_the_wheel_is_built_from() -> None:
    # kcp_tmc.policies.crds is charts/kcp-tmc/crds: ignoring "charts" would ship a wheel without CRDs.
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    declared = configparser.ConfigParser()
    declared.read(REPO / "setup.cfg", encoding="utf-8")
    folders = [line.split("=")[1].strip() for line in declared["options"]["package_dir"].strip().splitlines()]
    needed = [
        "setup.cfg",
        "pyproject.toml",
        declared["metadata"]["long_description"].removeprefix("file:").strip(),
    ]
    for folder in folders:
        needed += [
            str(path.relative_to(REPO))
            for path in (REPO / folder).iterdir()
            if path.is_file() and path.suffix in (".py", ".json", ".yaml", ".typed")
        ]
    assert len(needed) > 3 + len(folders)
    assert [path for path in needed if _ignored(path, patterns)] == []
    # The patterns do leave out what they should.
    assert _ignored(".venv/bin/python", patterns)
    assert _ignored("testing/__pycache__/x.pyc", patterns)
    assert not _ignored("testing/__init__.py", ["testing", "!testing/__init__.py"])
