"""``roostd``: the daemon of roost's distributed mode.

``roostd start`` (or plain ``roostd``) runs this node's workers under a
:class:`~roost.supervisor.Supervisor`: one process per worker of each role in
``[distributed] workers``, every one the same program (``python -m roost.daemon.worker``)
told its role by ``ROOST_WORKER_ROLE``. ``roostd serve`` keeps the simple one-process mode:
the platform services on NATS in this process.
"""
