"""The one exception type the certificate tooling raises for bad input or state."""

from __future__ import annotations


class CertsError(Exception):
    """A problem the user must fix: bad input, unreadable or inconsistent files, an expired CA.

    ``str(error)`` is the complete, user-facing message (the CLI prints it after
    ``tmc-certs: error: `` and exits with status 2).  Whenever this is raised,
    nothing on disk has been changed.
    """
