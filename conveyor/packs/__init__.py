"""Job-type packs: the seeds' job types, each a plug-in built on the public job-type API only
(`conveyor.Registry`, `conveyor.Context`, pydantic input models), so that each doubles as an
example of writing one's own.

A pack exposes one Registry as an entry point in the group `conveyor.packs`; the runtime
loads the installed packs that CONVEYOR_PACKS names (by default, all of them).
"""
