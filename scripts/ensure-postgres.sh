#!/usr/bin/env bash
# Make sure a system PostgreSQL is up on 127.0.0.1:5432 and has the `test` database: what
# `make bench` uses (bench/run.py). `make run` and `make test` need none: they start an
# embedded PostgreSQL (payfirst.adapters.embedded_postgres); point the tests at this one with
# PAYFIRST_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test if you like.
set -euo pipefail
host=127.0.0.1
if ! command -v pg_ctlcluster >/dev/null; then
  echo "PostgreSQL is not installed; installing it from Debian's packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ! pg_isready -q -h "$host" -p 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 50); do pg_isready -q -h "$host" -p 5432 && break; sleep 0.2; done
fi
pg_isready -h "$host" -p 5432
if ! psql -h "$host" -U postgres -tAc "select 1 from pg_database where datname = 'test'" | grep -q 1; then
  createdb -h "$host" -U postgres test
fi
