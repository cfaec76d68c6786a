"""Platform services: workers serving typed requests on the bus, and the client side."""

from roost.services._base import ServiceWorker, call_service, raise_for_error, reply_to

__all__ = ["ServiceWorker", "call_service", "raise_for_error", "reply_to"]
