"""kcp_tmc.reconcilers: ``tmc-reconciler``, the poll-based companion process of kcp TMC.

- :mod:`.engine`: the poll engine (one list per kind per cycle, diff-only writes, due-time scheduling,
  per-object backoff); :mod:`.leases`: leader election and partitions on Leases.
- :mod:`.synctarget`: key label, virtual workspaces, heartbeat and syncedResources of SyncTargets
  (pure steps in :mod:`.virtualworkspaces`, :mod:`.heartbeat`, :mod:`.syncedresources`, :mod:`.compat`).
- :mod:`.cluster`: the ``tmc.kcp.io`` Cluster controller (pure parts in :mod:`.capacity`,
  :mod:`.imports`, :mod:`.syncer_install`).
- :mod:`.client`: a small typed client over the ``kubernetes`` package; :mod:`.cli`: the command.

See ``docs/reconciler.md``.
"""
