"""The platform facade: everything roost runs in one process, behind one object."""

from roost.platform._local import LOCAL_SERVICES, AvailableModel, Platform, kv_commits_at

__all__ = ["LOCAL_SERVICES", "AvailableModel", "Platform", "kv_commits_at"]
