"""The use case "ingest a study", in steps that the Dagster ops call."""
