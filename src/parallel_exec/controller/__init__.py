"""The controller side: runs in the pytest process the user started.

``plugin`` (pytest hooks), ``run`` (one parallel run's dispatcher), the units it routes
between (launcher, collection gate, retries, crash attribution), ``canonical`` (the
merged collection), ``pool`` and the transports that start workers (spawned, forked
by the fork server: ``forkserver``, or started by an agent on another machine:
``remote``).
"""
