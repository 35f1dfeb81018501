"""Reads Tributary's Iceberg tables with independent readers.

    read.py rows TABLE_DIR [--columns a,b] [--reader pyiceberg|duckdb]
        the current snapshot's rows as JSON lines
    read.py query WAREHOUSE_DIR SQL [--json]
        DuckDB over every table under WAREHOUSE_DIR (one view per table,
        over the data files PyIceberg plans for its current snapshot);
        a table, or with --json JSON lines
    read.py dump WAREHOUSE_DIR '{"table": ["column", ...]}'
        several tables by both readers, as one JSON object
    read.py glue DATABASE '{"table": ["column", ...]}'
        tables through the Glue Data Catalog (moto_server when
        AWS_ENDPOINT_URL is set), as PyIceberg reads them
    read.py describe TABLE_DIR
        snapshot, file count, average file size and row count as JSON
    read.py raw DATABASE
        the raw zone's tables as the Glue Data Catalog declares them: each
        table's files found through its partition projection template and
        read with its declared format, as JSON {table: {rows, files, days,
        problems}}

TABLE_DIR is a table's location (a local path or file:// URL); the newest
metadata/v<N>.metadata.json is its current version.
"""

import argparse
import glob
import json
import os
import re
import sys


def metadata_path(location):
    path = location[len("file://"):] if location.startswith("file://") else location
    versions = []
    for name in glob.glob(os.path.join(path, "metadata", "v*.metadata.json")):
        match = re.search(r"/v(\d+)\.metadata\.json$", name)
        if match:
            versions.append((int(match.group(1)), name))
    if not versions:
        sys.exit(f"read.py: no metadata/v<N>.metadata.json under {path}")
    return max(versions)[1]


def load(location):
    from pyiceberg.table import StaticTable

    return StaticTable.from_metadata(metadata_path(location))


def local(path):
    return path[len("file://"):] if path.startswith("file://") else path


def duckdb_relation(con, table, columns=None):
    files = [local(task.file.file_path) for task in table.scan().plan_files()]
    select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
    if not files:
        arrow = table.scan(selected_fields=tuple(columns) if columns else ("*",)).to_arrow()
        return con.from_arrow(arrow)
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return con.sql(f"select {select} from read_parquet([{listing}], union_by_name = true)")


def rows(args):
    table = load(args.location)
    columns = args.columns.split(",") if args.columns else None
    if args.reader == "duckdb":
        import duckdb

        con = duckdb.connect()
        arrow = duckdb_relation(con, table, columns).arrow()
        if hasattr(arrow, "read_all"):
            arrow = arrow.read_all()
    else:
        fields = tuple(columns) if columns else ("*",)
        arrow = table.scan(selected_fields=fields).to_arrow()
    for row in arrow.to_pylist():
        print(json.dumps(row, default=str, sort_keys=True))


def dump(args):
    """Several tables at once, by both readers: {table: {reader: [rows]}}."""
    import duckdb

    wanted = json.loads(args.tables)
    con = duckdb.connect()
    out = {}
    for name, columns in wanted.items():
        table = load(os.path.join(local(args.location), name))
        py = table.scan(selected_fields=tuple(columns)).to_arrow().to_pylist()
        arrow = duckdb_relation(con, table, columns).arrow()
        if hasattr(arrow, "read_all"):
            arrow = arrow.read_all()
        out[name] = {"pyiceberg": py, "duckdb": arrow.to_pylist()}
    print(json.dumps(out, default=str, sort_keys=True))


def glue(args):
    """Tables through the Glue Data Catalog (AWS, or moto_server at
    AWS_ENDPOINT_URL): {table: [rows]} as PyIceberg reads them."""
    from pyiceberg.catalog.glue import GlueCatalog

    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    properties = {"glue.region": region, "s3.region": region}
    for prefix in ("glue", "s3"):
        if endpoint:
            properties[f"{prefix}.endpoint"] = endpoint
        if os.environ.get("AWS_ACCESS_KEY_ID"):
            properties[f"{prefix}.access-key-id"] = os.environ["AWS_ACCESS_KEY_ID"]
            properties[f"{prefix}.secret-access-key"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    catalog = GlueCatalog("tributary", **properties)
    out = {}
    for name, columns in json.loads(args.tables).items():
        table = catalog.load_table((args.database, name))
        out[name] = {
            "metadata": table.metadata_location,
            "rows": table.scan(selected_fields=tuple(columns)).to_arrow().to_pylist(),
        }
    print(json.dumps(out, default=str, sort_keys=True))


def raw(args):
    """Reads every raw table of DATABASE the way its Glue definition says:
    the files under its location must sit in the folders its projection
    template names (a date within the projected range), and each is read
    with the declared format; every declared column must be in every file."""
    import datetime
    import gzip
    import io

    import boto3
    import pyarrow.parquet as pq

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    glue = boto3.client("glue", endpoint_url=endpoint)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    out = {}
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=args.database):
        for table in page["TableList"]:
            params = table.get("Parameters", {})
            if params.get("projection.enabled") != "true":
                continue
            sd = table["StorageDescriptor"]
            serde = sd["SerdeInfo"]["SerializationLibrary"]
            columns = [c["Name"] for c in sd["Columns"]]
            [key] = [k["Name"] for k in table["PartitionKeys"]]
            since, until = params[f"projection.{key}.range"].split(",")
            first = datetime.date.fromisoformat(since)
            last = datetime.date.today() if until == "NOW" else datetime.date.fromisoformat(until)
            template = params["storage.location.template"]
            head, tail = template.split("${" + key + "}")
            bucket, _, prefix = head[len("s3://"):].partition("/")
            result = {"rows": 0, "files": 0, "days": set(), "problems": []}
            objects = []
            for listing in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                objects += [o["Key"] for o in listing.get("Contents", [])]
            for object_key in objects:
                rest = object_key[len(prefix):]
                day, _, name = rest.partition(tail) if tail else rest.partition("/")
                try:
                    date = datetime.date.fromisoformat(day)
                except ValueError:
                    result["problems"].append(f"{object_key}: not in a projected folder")
                    continue
                if not first <= date <= last or "/" in name:
                    result["problems"].append(f"{object_key}: outside the projection")
                    continue
                body = s3.get_object(Bucket=bucket, Key=object_key)["Body"].read()
                result["files"] += 1
                result["days"].add(day)
                if serde.endswith("ParquetHiveSerDe"):
                    read = pq.read_table(io.BytesIO(body))
                    missing = [c for c in columns if c not in read.column_names]
                    result["rows"] += read.num_rows
                else:
                    text = gzip.decompress(body) if object_key.endswith(".gz") else body
                    lines = [line for line in text.decode("utf-8").split("\n") if line.strip()]
                    result["rows"] += len(lines)
                    missing = []
                    for line in lines:
                        value = json.loads(line)
                        if serde.endswith("JsonSerDe"):
                            keys = {k.lower() for k in value} if isinstance(value, dict) else set()
                            missing += [c for c in columns if c not in keys]
                        elif len(columns) != 1:
                            missing.append("one column a line")
                if missing:
                    result["problems"].append(f"{object_key}: no {sorted(set(missing))}")
            result["days"] = sorted(result["days"])
            out[table["Name"]] = result
    print(json.dumps(out, sort_keys=True))


def describe(args):
    table = load(args.location)
    snapshot = table.current_snapshot()
    files = list(table.scan().plan_files())
    sizes = [task.file.file_size_in_bytes for task in files]
    print(json.dumps({
        "snapshot_id": snapshot.snapshot_id if snapshot else None,
        "summary": dict(snapshot.summary.additional_properties) if snapshot else {},
        "operation": str(snapshot.summary.operation.value) if snapshot else None,
        "snapshots": len(table.metadata.snapshots),
        "files": len(files),
        "rows": sum(task.file.record_count for task in files),
        "average_file_bytes": (sum(sizes) // len(sizes)) if sizes else 0,
        "partition_fields": [f.name for f in table.spec().fields],
    }, sort_keys=True))


def query(args):
    import duckdb

    con = duckdb.connect()
    root = local(args.location)
    for meta in sorted(glob.glob(os.path.join(root, "*", "metadata"))):
        location = os.path.dirname(meta)
        name = os.path.basename(location)
        relation = duckdb_relation(con, load(location))
        relation.create_view(name)
    result = con.sql(args.sql)
    if result is None:
        return
    if args.json:
        names = result.columns
        for row in result.fetchall():
            print(json.dumps(dict(zip(names, row)), default=str, sort_keys=True))
        return
    print(result)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("rows")
    r.add_argument("location")
    r.add_argument("--columns")
    r.add_argument("--reader", choices=["pyiceberg", "duckdb"], default="pyiceberg")
    r.set_defaults(run=rows)
    m = sub.add_parser("dump")
    m.add_argument("location", help="the warehouse directory holding the tables")
    m.add_argument("tables", help='JSON: {"table": ["column", ...], ...}')
    m.set_defaults(run=dump)
    g = sub.add_parser("glue")
    g.add_argument("database", help="the Glue database")
    g.add_argument("tables", help='JSON: {"table": ["column", ...], ...}')
    g.set_defaults(run=glue)
    w = sub.add_parser("raw")
    w.add_argument("database", help="the Glue database")
    w.set_defaults(run=raw)
    d = sub.add_parser("describe")
    d.add_argument("location")
    d.set_defaults(run=describe)
    q = sub.add_parser("query")
    q.add_argument("location")
    q.add_argument("sql")
    q.add_argument("--json", action="store_true", help="the rows as JSON lines")
    q.set_defaults(run=query)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
