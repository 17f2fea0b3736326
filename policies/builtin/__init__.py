"""Built-in policies; importing this package registers them on :data:`kcp_tmc.policies.REGISTRY`.

=================================  ==========  ===========  ======================  ==============
policy                             type        kind         operations              subresources
=================================  ==========  ===========  ======================  ==============
``synctarget-validation``          validating  SyncTarget   CREATE, UPDATE          "", status
``synctarget-deletion-protection`` validating  SyncTarget   DELETE                  ""
``synctarget-defaults``            mutating    SyncTarget   CREATE, UPDATE          ""
``cluster-validation``             validating  Cluster      CREATE, UPDATE          "", status
``cluster-defaults``               mutating    Cluster      CREATE, UPDATE          ""
``location-validation``            validating  Location     CREATE, UPDATE          ""
``federatedquota-validation``      validating  FedQuota     CREATE, UPDATE          "", status
``resourcequota-validation``       validating  ResQuota     CREATE, UPDATE          ""
``quota-enforcement``              validating  workloads    CREATE, UPDATE          "", scale
=================================  ==========  ===========  ======================  ==============

The names are part of the public API: configuration files and denial messages use them.
"""

from kcp_tmc.policies.builtin import cluster, federatedquota, location, quotaenforcement, synctarget

__all__ = ["cluster", "federatedquota", "location", "quotaenforcement", "synctarget"]
