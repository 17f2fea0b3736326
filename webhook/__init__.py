"""kcp_tmc.webhook: the admission webhook server (a Flask app served by gunicorn over TLS).

``create_app(config)`` builds the app; ``tmc-webhook`` (:mod:`kcp_tmc.webhook.cli`) serves it.
Imports are lazy so that the CLI can set up prometheus multiprocess mode before
``prometheus_client`` is first imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kcp_tmc.webhook.app import create_app
    from kcp_tmc.webhook.config import WebhookConfig, WebhookConfigError

__all__ = ["WebhookConfig", "WebhookConfigError", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from kcp_tmc.webhook.app import create_app  # noqa: PLC0415 - lazy on purpose, see above

        return create_app
    if name in ("WebhookConfig", "WebhookConfigError"):
        from kcp_tmc.webhook import config  # noqa: PLC0415 - lazy on purpose, see above

        return getattr(config, name)
    raise AttributeError(f"module 'kcp_tmc.webhook' has no attribute {name!r}")
