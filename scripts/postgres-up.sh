#!/usr/bin/env bash
# Starts the machine's PostgreSQL 15 (installing it if missing) and makes sure the role and
# database that conveyor's tests, benchmarks and chaos script use by default exist:
#   postgresql://conveyor:conveyor@127.0.0.1:5432/conveyor   (role may create databases)
# Safe to run again: every step checks before it acts. Needs root (apt-get, su postgres).
set -euo pipefail

PG_VERSION=${PG_VERSION:-15}
PG_CLUSTER=${PG_CLUSTER:-main}
ROLE=${CONVEYOR_PG_ROLE:-conveyor}
PASSWORD=${CONVEYOR_PG_PASSWORD:-conveyor}
DB=${CONVEYOR_PG_DB:-conveyor}

if ! command -v pg_ctlcluster >/dev/null || [ ! -d "/usr/lib/postgresql/$PG_VERSION" ]; then
  echo "postgres-up: installing postgresql-$PG_VERSION"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$PG_VERSION" >/dev/null
fi
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $PG_CLUSTER"; then
  pg_createcluster "$PG_VERSION" "$PG_CLUSTER"
fi
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {print $4}' | grep -q online; then
  pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start
fi
for _ in $(seq 50); do
  su postgres -c "pg_isready -q" && break
  sleep 0.2
done

psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtA $*"; }
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'\"")" != 1 ]; then
  psql_admin "-c \"CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'\""
else
  psql_admin "-c \"ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'\""
fi
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname = '$DB'\"")" != 1 ]; then
  psql_admin "-c \"CREATE DATABASE $DB OWNER $ROLE\""
fi
echo "postgres-up: ready at postgresql://$ROLE:***@127.0.0.1:5432/$DB"
