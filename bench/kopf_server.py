"""Peer (c) of the webhook benchmark: kopf's ``WebhookServer`` with one ``@kopf.on.validate`` handler.

The handler runs the same SyncTarget check as ``tmc-webhook``'s ``synctarget-validation``
policy (it calls the policy function), so the two differ only in the server stack.  Wired the
way kopf's own operator wires its admission server, without a cluster:
``python -m bench.kopf_server --port P --cert-file C --key-file K``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
from typing import Any

import kopf
from kopf._cogs.structs import references
from kopf._core.engines import admission, indexing
from kopf._core.reactor import inventory

from kcp_tmc.policies.builtin.synctarget import sync_target_validation
from kcp_tmc.policies.clusters import cluster_of
from kcp_tmc.policies.policy import EMPTY_LOOKUP, PolicyRequest

REGISTRY = kopf.OperatorRegistry()


@kopf.on.validate("workload.kcp.io", "v1alpha1", "synctargets", registry=REGISTRY)  # type: ignore[arg-type]
def check_sync_target(
    body: Any, old: Any, operation: str, subresource: Any, dryrun: bool, userinfo: Any, **_: Any
) -> None:
    """Deny what ``synctarget-validation`` denies, with the same message."""
    obj = dict(body)
    request = PolicyRequest(
        request={},
        object=obj,
        old_object=dict(old) if old is not None else None,
        operation=operation,  # type: ignore[arg-type]
        sub_resource=subresource or "",
        dry_run=dryrun,
        user=dict(userinfo),  # type: ignore[arg-type]
        cluster=cluster_of(obj, "root"),
        lookup=EMPTY_LOOKUP,
        settings={},
    )
    verdict = sync_target_validation(request)
    if verdict is not None and verdict.errors:
        raise kopf.AdmissionError("\n".join(f"[synctarget-validation] {e}" for e in verdict.errors), code=403)


async def serve(port: int, cert_file: str, key_file: str) -> None:
    insights = references.Insights()
    insights.webhook_resources.add(
        references.Resource(
            group="workload.kcp.io", version="v1alpha1", plural="synctargets", kind="SyncTarget"
        )
    )
    fn = functools.partial(
        admission.serve_admission_request,
        settings=kopf.OperatorSettings(),
        registry=REGISTRY,
        insights=insights,
        memories=inventory.ResourceMemories(),
        memobase=kopf.Memo(),  # type: ignore[arg-type]
        indices=indexing.OperatorIndexers().indices,
    )
    server = kopf.WebhookServer(addr="127.0.0.1", port=port, certfile=cert_file, pkeyfile=key_file)
    async for _ in server(fn):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-file", required=True)
    parser.add_argument("--key-file", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.port, args.cert_file, args.key_file))


if __name__ == "__main__":
    main()
