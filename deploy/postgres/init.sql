-- Second database for Dagster's own instance storage (the first is POSTGRES_DB).
CREATE DATABASE dagster;
