"""Operator tools behind the ``tradepulse`` command: publish, tail, the main run."""
