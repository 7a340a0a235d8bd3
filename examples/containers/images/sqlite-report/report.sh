#!/bin/sh
# sqlite-report: import /input/NAME (CSV with header
# date,region,product,units,unit_price_cents) into an in-memory SQLite
# database and write three reports to /output; totals on stdout.
#   report.sh [NAME]     (default sales.csv)
# Exit 0 on success, 1 on bad or missing input (sqlite's message on stderr),
# 2 on bad arguments.
set -eu
export LC_ALL=C
if [ $# -gt 1 ]; then
    echo "usage: report.sh [NAME]" >&2
    exit 2
fi
name="${1:-sales.csv}"
case "$name" in
"" | .* | *[!A-Za-z0-9._-]*)
    echo "usage: report.sh [NAME]: NAME is a plain file name under /input ([A-Za-z0-9._-], not starting with a dot)" >&2
    exit 2
    ;;
esac
[ -f "/input/$name" ] || { echo "report.sh: /input/$name not found" >&2; exit 1; }
exec /usr/bin/sqlite3 -batch -bail -init /app/init.sql :memory: \
    ".import --csv /input/$name sales" ".read /app/report.sql"
