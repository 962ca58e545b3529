"""The wire: what crosses between the controller and a worker, shared by both sides.

``protocol`` (every message, a frozen dataclass, pickled), ``reports`` (pytest reports
to and from plain data), ``progress`` (the files a worker leaves as crash evidence),
``remote`` (the messages between the controller and an agent on another machine) and
``socket_io`` (execnet on a Unix socket, for forked workers).  Nothing
here imports the controller side.
"""
