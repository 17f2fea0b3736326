"""kcp-tmc: the control-plane half of kcp's Transparent Multi-Cluster, in Python.

The sub-packages live in top-level folders of the repository and are mapped
into this namespace by ``setup.cfg`` (``package_dir``).  In a checkout, the
links in this folder point at those folders so that ``kcp_tmc.<package>``
imports the same files with or without an install.
"""

__version__ = "0.1.0"
