"""Independent Parquet reader for the end-to-end tests (pyarrow, not arrow-rs).

Prints {"schema": {column: arrow type}, "rows": [[text or null, ...], ...]}
for the given files, values rendered as PostgreSQL renders them in the
tests' expected queries, so both sides compare as text.
"""
import datetime
import decimal
import json
import sys

try:
    import pyarrow.parquet as pq
except ImportError:
    sys.stderr.write("pyarrow is missing: pip install pyarrow (make test installs it)\n")
    sys.exit(3)


def render(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, datetime.time):
        return value.strftime("%H:%M:%S.%f")
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


schema = {}
rows = []
for path in sys.argv[1:]:
    table = pq.read_table(path)
    file_schema = {field.name: str(field.type) for field in table.schema}
    if schema and file_schema != schema:
        sys.stderr.write(f"schema differs between files: {schema} vs {file_schema}\n")
        sys.exit(4)
    schema = file_schema
    names = table.schema.names
    for record in table.to_pylist():
        rows.append([render(record[name]) for name in names])
json.dump({"schema": schema, "rows": rows}, sys.stdout)
