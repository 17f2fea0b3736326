"""``tmc-policy``: evaluate, test, list and scaffold admission policies offline, with no cluster.

Commands::

    tmc-policy evaluate FILE       run a review (or an object) through the policies; print the response
    tmc-policy test DIR...         run the declarative suites (tmc-test.yaml) under DIR
    tmc-policy list                the loaded policies, their kinds, modes and sources
    tmc-policy scaffold FILE       an AdmissionReview for an object, as the apiserver would send it

Exit codes: ``evaluate`` 0 allowed, 1 denied; ``test`` 0 all passed, 1 a test failed; ``list`` 0,
1 when a plug-in failed to load; every command 2 for bad input (the reason is on stderr).
The policies are the built-in ones and every plug-in installed in the entry-point group
``kcp_tmc.policies``, evaluated by the engine the webhook uses.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import yaml

from kcp_tmc.policies.admission import OPERATIONS, AdmissionRequest, AdmissionReview, Operation
from kcp_tmc.policies.config import ConfigError, EngineConfig, load_config
from kcp_tmc.policies.documents import DocumentError, describe, load_documents
from kcp_tmc.policies.engine import Engine, Phase, UnknownPolicyError
from kcp_tmc.policies.plugins import PluginError, load_default_registry
from kcp_tmc.policies.policy import Object, Policy, StaticLookup
from kcp_tmc.policies.registry import Registry
from kcp_tmc.policies.reviews import ReviewError, make_review, parse_review, review_response
from kcp_tmc.policies.suites import (
    SuiteError,
    SuiteResult,
    build_engine,
    discover,
    junit_xml,
    run_suites,
)

__all__ = ["main"]

PROG = "tmc-policy"
EXIT_OK = 0
EXIT_DENIED = 1
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

# Options that describe the request to build around a plain object; a review carries its own.
_REQUEST_OPTIONS = (
    ("operation", "--operation"),
    ("old_object", "--old-object"),
    ("user", "--user"),
    ("groups", "--groups"),
    ("dry_run", "--dry-run"),
    ("sub_resource", "--sub-resource"),
    ("namespace", "--namespace"),
    ("uid", "--uid"),
)


class UsageError(Exception):
    """Bad input: the message goes to stderr and the exit code is 2."""


def load_registry() -> tuple[Registry, list[PluginError]]:
    """The built-in policies and the installed plug-ins (tests replace this)."""
    return load_default_registry()


# --- reading input ----------------------------------------------------------------------------


def _one_document(path: str) -> tuple[Any, str]:
    try:
        docs, source = load_documents(path)
    except DocumentError as exc:
        raise UsageError(str(exc)) from None
    if not docs:
        raise UsageError(f"{source}: the file is empty; give an AdmissionReview or a Kubernetes object")
    if len(docs) > 1:
        raise UsageError(f"{source}: holds {len(docs)} documents; give one AdmissionReview or one object")
    return docs[0], source


def _is_object(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("apiVersion"), str)
        and bool(value["apiVersion"])
        and isinstance(value.get("kind"), str)
        and bool(value["kind"])
    )


def _got(value: Any) -> str:
    """What a document that is not an object is, for messages."""
    return describe(value) if not isinstance(value, dict) else "a mapping without them"


def _read_object(path: str, what: str) -> Object:
    value, source = _one_document(path)
    if not _is_object(value):
        raise UsageError(
            f"{source}: {what} must be a Kubernetes object with a string apiVersion and kind "
            f"(got {_got(value)})"
        )
    obj: Object = value
    return obj


def _read_resources(paths: Iterable[str]) -> list[Object]:
    found: list[Object] = []
    for path in paths:
        try:
            docs, source = load_documents(path)
        except DocumentError as exc:
            raise UsageError(str(exc)) from None
        for doc in docs:
            # A kubectl List (kind: List, items: [...]) stands for its items.
            items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
            for item in items or ():
                if not _is_object(item):
                    raise UsageError(
                        f"{source}: --resource files hold Kubernetes objects with a string apiVersion "
                        f"and kind (got {_got(item)})"
                    )
                found.append(item)
    return found


def _read_config(path: str | None) -> EngineConfig | None:
    if path is None:
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _groups(values: Sequence[str] | None) -> list[str]:
    return [g.strip() for v in values or () for g in v.split(",") if g.strip()]


def _request(args: argparse.Namespace) -> tuple[str, AdmissionRequest]:
    """The review's ``apiVersion`` and its request: FILE's own, or one built around FILE's object."""
    value, source = _one_document(args.file)
    if isinstance(value, dict) and value.get("kind") == "AdmissionReview":
        given = [flag for attr, flag in _REQUEST_OPTIONS if getattr(args, attr, None) not in (None, False)]
        if given:
            raise UsageError(
                f"{source} is an AdmissionReview, which carries its own request; "
                f"{', '.join(given)} apply only to a plain object"
            )
        try:
            version, request = parse_review(value)
        except ReviewError as exc:
            raise UsageError(f"{source}: not a valid AdmissionReview: {exc}") from None
        return version, request
    if not _is_object(value):
        raise UsageError(
            f"{source}: neither an AdmissionReview nor a Kubernetes object: an object needs a string "
            f"apiVersion and kind (got {_got(value)})"
        )
    review = _scaffold(args, value)
    return review["apiVersion"], review["request"]


def _scaffold(args: argparse.Namespace, obj: Object) -> AdmissionReview:
    """The review the apiserver would send for ``obj`` with the request options of ``args``."""
    operation: Operation = args.operation or "CREATE"
    old: Object | None = None
    if args.old_object is not None:
        if operation != "UPDATE":
            raise UsageError(
                f"--old-object applies only to --operation UPDATE (the operation is {operation}; "
                "on DELETE, FILE is the object being deleted)"
            )
        old = _read_object(args.old_object, "--old-object")
        if (old["apiVersion"], old["kind"]) != (obj["apiVersion"], obj["kind"]):
            raise UsageError(
                f"--old-object {args.old_object} is a {old['kind']} ({old['apiVersion']}) but FILE is a "
                f"{obj['kind']} ({obj['apiVersion']}); both must be versions of the same object"
            )
    elif operation == "UPDATE":
        raise UsageError("--operation UPDATE needs --old-object FILE, the object as stored before the update")
    sent: Object | None = obj
    if operation == "DELETE":
        # The apiserver sends the object being deleted as oldObject, and no object.
        sent, old = None, obj
    return make_review(
        sent,
        operation=operation,
        old=old,
        user=args.user or "alice",
        groups=_groups(args.groups),
        dry_run=args.dry_run,
        sub_resource=args.sub_resource or "",
        namespace=args.namespace,
        uid=args.uid,
    )


def _dump(value: Any, output: str, out: TextIO) -> None:
    if output == "yaml":
        out.write(yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True))
    else:
        out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _report_plugin_errors(errors: Sequence[PluginError]) -> None:
    for error in errors:
        print(f"{PROG}: warning: {error}", file=sys.stderr)


# --- commands ---------------------------------------------------------------------------------


def _evaluate(args: argparse.Namespace) -> int:
    version, request = _request(args)
    config = _read_config(args.config)
    lookup = StaticLookup(_read_resources(args.resource or ()))
    registry, errors = load_registry()
    _report_plugin_errors(errors)
    engine = _engine(registry, config, args.policy)
    phase: Phase = "validate" if args.validate_only else "mutate" if args.mutate_only else "all"
    outcome = engine.evaluate(request, phase=phase, lookup=lookup)
    response = outcome.to_response(request["uid"], mutating=phase != "validate")
    _dump(review_response(version, response), args.output, sys.stdout)
    return EXIT_OK if outcome.allowed else EXIT_DENIED


def _engine(registry: Registry, config: EngineConfig | None, names: Sequence[str] | None) -> Engine:
    try:
        return build_engine(registry, config, names)
    except (ConfigError, UnknownPolicyError) as exc:
        raise UsageError(str(exc)) from None


def _scaffold_command(args: argparse.Namespace) -> int:
    value, source = _one_document(args.file)
    if isinstance(value, dict) and value.get("kind") == "AdmissionReview":
        raise UsageError(f"{source} is already an AdmissionReview; scaffold takes a plain object")
    if not _is_object(value):
        raise UsageError(
            f"{source}: not a Kubernetes object: it needs a string apiVersion and kind (got {_got(value)})"
        )
    _dump(_scaffold(args, value), args.output, sys.stdout)
    return EXIT_OK


def _kinds(policy: Policy) -> list[dict[str, str]]:
    return [{"group": k.group, "version": k.version, "kind": k.kind} for k in policy.kinds]


def _operations(policy: Policy) -> list[str]:
    return [op for op in OPERATIONS if op in policy.operations]


def _distributions() -> dict[str, list[str]]:
    try:
        return dict(metadata.packages_distributions())
    except Exception:  # pragma: no cover - a broken distribution's metadata must not break list
        return {}


def _origin(policy: Policy, dists: dict[str, list[str]]) -> str:
    top = policy.source.split(".", 1)[0]
    names = sorted(set(dists.get(top, ())))
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:  # pragma: no cover - listed, then uninstalled
            parts.append(name)
    return ", ".join(parts)


def _list(args: argparse.Namespace) -> int:
    config = _read_config(args.config)
    registry, errors = load_registry()
    engine = _engine(registry, config, None)
    dists = _distributions()
    rows: list[dict[str, Any]] = []
    for policy in engine.policies:
        rows.append(
            {
                "name": policy.name,
                "type": policy.type.value,
                "kinds": _kinds(policy),
                "operations": _operations(policy),
                "subresources": sorted(policy.subresources),
                "mode": engine.mode_of(policy.name).value,
                "defaultMode": policy.default_mode.value,
                "failureMode": engine.failure_mode_of(policy.name).value,
                "defaultFailureMode": policy.failure_mode.value,
                "enabled": engine.config.is_enabled(policy.name),
                "sideEffects": policy.side_effects,
                "source": policy.source,
                "distribution": _origin(policy, dists),
                "description": policy.description,
            }
        )
    plugin_errors = [
        {"entryPoint": e.entry_point, "distribution": e.dist, "value": e.value, "error": str(e)}
        for e in errors
    ]
    if args.output == "json":
        _dump({"policies": rows, "pluginErrors": plugin_errors}, "json", sys.stdout)
    else:
        table = [
            [
                row["name"],
                row["type"],
                ",".join(k["kind"] for k in row["kinds"]),
                ",".join(row["operations"]),
                ",".join(s or "main" for s in row["subresources"]),
                _configured(row["mode"], row["defaultMode"], row["enabled"]),
                _configured(row["failureMode"], row["defaultFailureMode"], True),
                row["source"] + (f" ({row['distribution']})" if row["distribution"] else ""),
            ]
            for row in rows
        ]
        headers = ["NAME", "TYPE", "KINDS", "OPERATIONS", "SUBRESOURCES", "MODE", "FAILURE", "SOURCE"]
        _table(headers, table, sys.stdout)
        if errors:
            print("\nplug-ins that failed to load:", file=sys.stdout)
            for error in errors:
                print(f"  {error}", file=sys.stdout)
    return EXIT_FAILED if errors else EXIT_OK


def _configured(value: str, default: str, enabled: bool) -> str:
    shown = value if value == default else f"{value} (default {default})"
    return shown if enabled else f"disabled ({shown})"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _test(args: argparse.Namespace) -> int:
    paths: list[Path] = []
    for root in args.paths:
        try:
            found = discover(root)
        except SuiteError as exc:
            raise UsageError(str(exc)) from None
        if not found:
            raise UsageError(f"{root}: no {'tmc-test.yaml'} found under it")
        paths.extend(found)
    registry, errors = load_registry()
    _report_plugin_errors(errors)
    results = run_suites(paths, registry)
    _print_results(results, sys.stdout)
    for result in results:
        if result.error is not None:
            print(f"{PROG}: error: {result.error}", file=sys.stderr)
    if args.junit:
        try:
            junit_xml(results).write(args.junit, encoding="utf-8", xml_declaration=True)
        except OSError as exc:
            raise UsageError(f"{args.junit}: cannot write the JUnit report: {exc.strerror or exc}") from None
    if any(r.error is not None for r in results):
        return EXIT_BAD_INPUT
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED


def _print_results(results: Sequence[SuiteResult], out: TextIO) -> None:
    rows: list[list[str]] = []
    failures: list[str] = []
    for suite in results:
        if suite.error is not None:
            rows.append([suite.name, "-", "-", "-", "-", "ERROR"])
        elif suite.skipped is not None:
            rows.append([suite.name, "-", "-", "-", "-", "SKIP"])
        for test in suite.tests:
            for check in test.checks:
                verdict = "PASS" if check.passed else "FAIL"
                rows.append([suite.name, test.name, check.policy, check.expected, check.got, verdict])
                if not check.passed:
                    failures.append(f"FAIL {suite.name} / {test.name} / {check.policy}: {check.detail}")
    _table(["SUITE", "TEST", "POLICY", "EXPECTED", "GOT", "RESULT"], rows, out)
    if failures:
        out.write("\n" + "\n".join(failures) + "\n")
    ran = [s for s in results if s.error is None and s.skipped is None]
    tests = [t for s in ran for t in s.tests]
    failed = sum(not t.passed for t in tests)
    summary = (
        f"\n{len(ran)} {_plural(len(ran), 'suite')}, {len(tests)} {_plural(len(tests), 'test')}: "
        f"{len(tests) - failed} passed, {failed} failed"
    )
    skipped = [s for s in results if s.skipped is not None]
    if skipped:
        summary += (
            f"; {len(skipped)} {_plural(len(skipped), 'suite')} skipped ("
            + "; ".join(f"{s.name}: {s.skipped}" for s in skipped)
            + ")"
        )
    bad = sum(s.error is not None for s in results)
    if bad:
        summary += f"; {bad} bad {_plural(bad, 'suite')}"
    out.write(summary + "\n")


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


# --- the parser -------------------------------------------------------------------------------


def _version() -> str:
    try:
        return metadata.version("kcp-tmc")
    except (
        metadata.PackageNotFoundError
    ):  # pragma: no cover - running from a checkout that was never installed
        return "unknown"


def _request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operation", choices=OPERATIONS, help="the request's operation for a plain object (default CREATE)"
    )
    parser.add_argument("--old-object", metavar="FILE", help="the stored object, for --operation UPDATE")
    parser.add_argument("--user", help="the requesting user's name (default alice)")
    parser.add_argument(
        "--groups", action="append", metavar="G1,G2", help="the user's groups (comma-separated, repeatable)"
    )
    parser.add_argument("--dry-run", action="store_true", help="mark the request as a dry run")
    parser.add_argument("--sub-resource", metavar="NAME", help="the subresource, e.g. status")
    parser.add_argument("--namespace", help="the request's namespace (default: the object's)")
    parser.add_argument("--uid", help="the request's uid (default: a random UUID)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate, test, list and scaffold kcp-tmc admission policies offline.",
        epilog="Exit codes: 0 allowed/passed, 1 denied/failed, 2 bad input.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log policy failures and audit lines")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[common],
        help="run an AdmissionReview or an object through the policies",
        description="Run FILE (an AdmissionReview, or a plain object with the request options) as "
        "kube-apiserver would: mutating policies, then validating ones on the mutated object. "
        "Prints the AdmissionReview response. Exit 0 allowed, 1 denied, 2 bad input.",
    )
    evaluate.add_argument("file", metavar="FILE", help="JSON or YAML file; - reads standard input")
    _request_options(evaluate)
    evaluate.add_argument("--config", metavar="FILE", help="the engine configuration (modes, exemptions...)")
    evaluate.add_argument(
        "--resource",
        action="append",
        metavar="FILE",
        help="objects the policies may look up (repeatable; multi-document YAML and kind: List allowed)",
    )
    evaluate.add_argument(
        "--policy", action="append", metavar="NAME", help="run only this policy (repeatable)"
    )
    phase = evaluate.add_mutually_exclusive_group()
    phase.add_argument("--validate-only", action="store_true", help="run the validating policies only")
    phase.add_argument("--mutate-only", action="store_true", help="run the mutating policies only")
    evaluate.add_argument("-o", "--output", choices=("json", "yaml"), default="json")
    evaluate.set_defaults(func=_evaluate)

    test = commands.add_parser(
        "test",
        parents=[common],
        help="run the declarative test suites (tmc-test.yaml) under directories",
        description="Find tmc-test.yaml files under each PATH and run them (see docs/policy-testing.md). "
        "Exit 0 when every test passes, 1 when one fails, 2 for a bad suite.",
    )
    test.add_argument("paths", nargs="+", metavar="PATH", help="a directory to search, or a suite file")
    test.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    test.set_defaults(func=_test)

    listing = commands.add_parser(
        "list",
        parents=[common],
        help="show the loaded policies",
        description="Show the loaded policies (built-in and plug-ins) with their kinds, operations, modes, "
        "failure modes and sources, and the plug-ins that failed to load (exit 1 then).",
    )
    listing.add_argument("--config", metavar="FILE", help="show the modes this configuration sets")
    listing.add_argument("-o", "--output", choices=("table", "json"), default="table")
    listing.set_defaults(func=_list)

    scaffold = commands.add_parser(
        "scaffold",
        parents=[common],
        help="write an AdmissionReview for an object",
        description="Write the AdmissionReview kube-apiserver would send for FILE (as kwctl scaffold "
        "admission-request does), to edit or to feed to evaluate.",
    )
    scaffold.add_argument("file", metavar="FILE", help="JSON or YAML object; - reads standard input")
    _request_options(scaffold)
    scaffold.add_argument("-o", "--output", choices=("json", "yaml"), default="json")
    scaffold.set_defaults(func=_scaffold_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``tmc-policy`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0)
    handler: logging.Handler
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
    else:
        # The response and the warnings above say what matters; without a handler of our own,
        # Python's last-resort handler would print the library's error records as well.
        handler = logging.NullHandler()
    logger = logging.getLogger("kcp_tmc")
    logger.addHandler(handler)
    saved_level = logger.level
    if args.verbose:
        logger.setLevel(logging.INFO)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)


if __name__ == "__main__":
    sys.exit(main())
