"""The timing history and what is learnt from a run: ``store`` (SQLite and the
duration estimates), ``learning`` (the outcome record), ``recording`` (the consumer that
writes both at the end of a run) and ``cli`` (the ``parallel-exec`` command)."""
