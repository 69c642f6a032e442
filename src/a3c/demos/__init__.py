"""Demos built on the same engine as everything else: `a3c.demos.cliff` is the tutorial's practice
script (three asynchronous workers, shared actor-critic tables, CliffWalking)."""
