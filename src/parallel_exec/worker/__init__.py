"""The worker side: what runs inside a worker process.

``main`` (handshake and process set-up), ``session`` (the pytest plugin that turns a
session into a worker), ``collection`` (partial collection), ``forkserver`` (the
fork server's process) and ``agent`` (what runs on another machine to start workers
there).  It imports only ``wire/`` of this package (and pytest,
execnet): every worker pays its imports at start-up.  ``tests/unit/test_layout.py``
holds it to that.
"""
