"""The run's event stream and its consumers: ``events`` (typed events and the stream),
``replay`` (pytest's hooks), ``junit_order`` (``--junitxml`` in collection order),
``serial`` (the same events from an in-process run) and ``writers/`` (JUnit, JSON,
TAP)."""
