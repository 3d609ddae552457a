"""Dagster definitions: ops, jobs, hooks, sensors, schedules and resources."""
