-- Second database for Dagster's own instance storage (the first is POSTGRES_DB).
CREATE DATABASE dagster;
-- Third: the schema registry's storage (Apicurio creates its tables there).
CREATE DATABASE schema_registry;
