"""Medication platform (seed 001): six critical-path job types, each started by its own
endpoint under /api/v1/jobs: medication_reminder, refill_check, interaction_check,
supply_monitor, analytics_roll_up and backup.

A pack on the public job-type API only. Every job type here is sensitive: its data, result
and log lines are sealed at rest, and reading them is audited. Each part of the pack keeps
its job types in a Registry of its own, included here. A patient's regimen and supply live
in the pack state of the job's organisation (records.py).
"""

from conveyor import Registry
from conveyor.packs.medication import analytics, backup, interactions, reminders, supply

jobtypes = Registry()
jobtypes.include(reminders.jobtypes)
jobtypes.include(supply.jobtypes)
jobtypes.include(interactions.jobtypes)
jobtypes.include(analytics.jobtypes)
jobtypes.include(backup.jobtypes)
