#!/usr/bin/env bash
# One command for the whole benchmark; needs nothing running beforehand.
# Installs wrk and pgbench (Debian) if missing and the project (virtualenv), then runs it
# (or, given a name, that program of bench/ with the arguments after it:
# `bench/run.sh django_compare`, `bench/run.sh instructions transactions`, `bench/run.sh inproc`).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v pgbench >/dev/null || need+=(postgresql-client)
if [ "${1:-}" = instructions ]; then command -v valgrind >/dev/null || need+=(valgrind); fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
make install >/dev/null
.venv/bin/pip install --quiet -c constraints.txt -e '.[dev,bench]'
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
mkdir -p bench/out
if [ $# -gt 0 ]; then  # another of bench/'s programs, e.g. `bench/run.sh django_compare`
  exec .venv/bin/python -m "bench.$1" "${@:2}"
fi
.venv/bin/python -m bench.run | tee bench/out/run.log
.venv/bin/python -m bench.chart bench/out/result.json bench/chart.png >&2
