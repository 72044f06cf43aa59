#!/bin/sh
# Run once by the postgres image, as the superuser, when the data volume is first created
# (docker-entrypoint-initdb.d). Creates the owner role `automl` (migrations, workers,
# clients) and the read-only role `automl_reader` (optuna-dashboard). Passwords come from
# the environment (deploy/.env), read by psql's \getenv: never on a command line.
# For separate client/worker roles, see docs/service.md ("Least-privilege roles").
set -eu
psql -v ON_ERROR_STOP=1 -X --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'EOSQL'
\getenv automl_pw AUTOML_DB_PASSWORD
\getenv reader_pw AUTOML_READER_PASSWORD
CREATE ROLE automl LOGIN PASSWORD :'automl_pw';
CREATE ROLE automl_reader LOGIN PASSWORD :'reader_pw';
ALTER DATABASE automl OWNER TO automl;
REVOKE ALL ON DATABASE automl FROM PUBLIC;
GRANT CONNECT ON DATABASE automl TO automl_reader;
GRANT USAGE ON SCHEMA public TO automl_reader;
-- tables that `automl db upgrade` (run as automl) creates later are readable by the reader
ALTER DEFAULT PRIVILEGES FOR ROLE automl IN SCHEMA public GRANT SELECT ON TABLES TO automl_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE automl IN SCHEMA public GRANT SELECT ON SEQUENCES TO automl_reader;
EOSQL
