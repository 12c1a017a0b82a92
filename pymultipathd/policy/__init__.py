"""The daemon's decisions, with no I/O: what to do when a path is checked, a map changed, a checker interval
passed or a map's paths changed.

Everything here is plain functions over the records of `state` and the typed values of `settings`, `events`
and `actions`. Nothing reads a clock, a file, the environment or the kernel: the daemon (pymultipathd.daemon)
feeds events in with the time they happened and carries out the actions that come back. That keeps the fault
handling the easiest code to test: tests/unit/test_policy.py drives it with tables of events, and
tests/unit/test_policy_imports.py proves it imports nothing that does I/O.
"""
