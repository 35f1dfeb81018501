//! Every supported column type, through the whole path, against a real
//! PostgreSQL: the catalog → binary COPY → Arrow (split anywhere) → Parquet,
//! read back by pyarrow and compared with what PostgreSQL says the values
//! are; then the same batches → COPY text → a warehouse table whose every
//! column prints exactly as the source's does. Unsupported types name the
//! column and the override that fixes them.

use std::{collections::BTreeMap, process::Command};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, pin_mut};
use serde_json::Value;
use tokio_postgres::Client;
use tributary_sources::{
    Error,
    decode::RowDecoder,
    text::put_rows,
    types::{PgColumnType, SourceColumn, arrow_schema, quote_ident, table_columns},
};
use tributary_testkit::{TestDb, skip, stack_required};

const SETUP: &str = r#"
SET TimeZone = 'UTC';
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy, "very"');
CREATE DOMAIN price AS numeric(8,2) CHECK (VALUE > -1000000);
CREATE DOMAIN short_code AS varchar(10) CHECK (VALUE <> 'forbidden');
CREATE TABLE matrix (
    id int4 PRIMARY KEY,
    c_int2 int2,
    c_int4 int4,
    c_int8 int8 NOT NULL DEFAULT 0,
    c_num numeric(12,3),
    c_num_free numeric,
    c_float4 float4,
    c_float8 float8,
    c_bool bool,
    c_text text,
    c_varchar varchar(20),
    c_char char(3),
    c_date date,
    c_time time,
    c_ts timestamp,
    c_tstz timestamptz,
    c_interval interval,
    c_uuid uuid,
    c_json json,
    c_jsonb jsonb,
    c_bytea bytea,
    c_mood mood,
    c_price price,
    c_code short_code,
    c_ints int4[],
    c_texts text[],
    c_prices numeric(6,2)[],
    c_moods mood[]
);
INSERT INTO matrix VALUES
(1, 1, 2, 3, 12.5, 1.5, 1.5, 2.25, true, 'hello', 'world', 'abc',
 '2024-02-29', '12:34:56.789', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.789012+02',
 '1 year 2 mons 3 days 04:05:06.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
 '{"b": 1, "a": [1, 2.50]}', '{"b": 1, "a": [1, 2.50]}', '\xdeadbeef', 'ok', 12.5, 'X1',
 '{1,2,3}', '{a,b}', '{1.5,2.25}', '{sad,ok}'),
(2, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(3, -32768, -2147483648, 9223372036854775807, -999999999.999,
 '-123456789012345678901234567890.123456789012345678', 'NaN', 'Infinity', false,
 E'tab\there\nnew line\\back "dq" ''sq'' \u00fc \u65e5\u672c \U0001F680\r', '', 'a',
 '0044-03-15 BC', '23:59:59.999999', '1969-07-20 20:17:40.000001', '1900-01-01 00:00:00.5+00',
 '-1 days -00:00:05', 'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF', '[]', E'{"k": "v\\u00fc\\n"}',
 '\x00000100ff00', 'happy, "very"', -999999.99, '', '{}',
 $${NULL,"NULL","a,b","q\"uote","back\\slash",""," sp ","{brace}","tab	in"}$$,
 '{NULL,-9999.99}', $${"happy, \"very\"",NULL}$$),
(4, 0, 0, -9223372036854775808, 0, 'NaN', '3.4028235e38', '-Infinity', true,
 '', NULL, '   ', '9999-12-31', '00:00:00', '2000-01-01 00:00:00', '4000-12-31 23:59:59.999999+00',
 '-1 year -2 mons +3 days -04:05:06.000001', '00000000-0000-0000-0000-000000000000',
 '{"a":1,  "a":2}', '[1, "x", null, 1.0e2]', '\x', 'sad', 0, 'forbidde',
 '{NULL,-1,2147483647}', '{}', '{}', '{}'),
(5, 32767, 2147483647, 1, 123456789.123, '0.000000000000000000000000000000000001', '1.17549435e-38',
 1e-300, NULL, 'NULL', E'\\N', 'xy', '0001-01-01', '24:00:00', '0001-01-01 00:00:00 BC',
 '1999-12-31 23:59:59.999999+00', '0', '123e4567-e89b-12d3-a456-426614174000',
 '"just a string"', '{}', '\x5c4e', NULL, 0.01, NULL, '{0}', $${"\\."}$$, '{0.01}', '{ok}'),
(6, -1, -1, -1, -0.001, 'Infinity', '-0', '-0', false,
 E'\\.', 'x', NULL, '2000-01-01', '00:00:00.000001', '2262-04-11 23:47:16.854775',
 '1677-09-21 00:12:43.145225+00', '100 years 11 mons 29 days 23:59:59.999999',
 NULL, 'null', 'null', '\x00', NULL, NULL, NULL, '{NULL}', '{NULL}', '{NULL}', '{NULL}');
CREATE TABLE odd (id int PRIMARY KEY, p point, v tsvector);
INSERT INTO odd VALUES (1, '(1.5,-2)', 'a fat cat'), (2, NULL, NULL);
CREATE TABLE inf (id int PRIMARY KEY, ts timestamp, d date);
INSERT INTO inf VALUES (1, 'infinity', '2020-01-01');
CREATE TABLE part (id int, v text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM (0) TO (100);
CREATE TABLE multi (id int PRIMARY KEY, m int[]);
CREATE DOMAIN prices AS numeric(6,2)[];
CREATE TABLE doms (id int PRIMARY KEY, a prices, b price[], c short_code[], n name, r int4range);
INSERT INTO multi VALUES (1, '{{1,2},{3,4}}');
"#;

/// Everything a binary COPY of `select` sends, chunk by chunk.
async fn copy_chunks(client: &Client, select: &str) -> Vec<Bytes> {
    let stream = client
        .copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))
        .await
        .expect("start COPY out");
    pin_mut!(stream);
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.expect("COPY out chunk"));
    }
    chunks
}

fn decode<'a>(
    table: &str,
    columns: &[SourceColumn],
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> tributary_sources::Result<Vec<arrow_array::RecordBatch>> {
    let mut decoder = RowDecoder::new(table, columns, 4);
    let mut batches = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk, &mut batches)?;
    }
    batches.extend(decoder.finish()?);
    Ok(batches)
}

fn select_list(columns: &[SourceColumn]) -> String {
    columns
        .iter()
        .map(SourceColumn::select_expr)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What PostgreSQL says a column's values are, in the form the pyarrow
/// reader renders them: scalars as text, arrays as JSON arrays of text.
fn expected_expr(column: &SourceColumn) -> String {
    let c = quote_ident(&column.name);
    match &column.ty {
        PgColumnType::Date => format!("({c} - date '1970-01-01')::text"),
        PgColumnType::Time | PgColumnType::Timestamp | PgColumnType::Timestamptz => {
            format!("(extract(epoch FROM {c}) * 1000000)::bigint::text")
        }
        PgColumnType::Bytea => format!("encode({c}, 'hex')"),
        PgColumnType::Array { .. } => format!(
            "CASE WHEN {c} IS NULL THEN NULL ELSE coalesce((SELECT json_agg(e::text ORDER BY i) \
             FROM unnest({c}) WITH ORDINALITY u(e, i)), '[]')::text END"
        ),
        // char(n) keeps its padding in the lake (its output function);
        // a cast to text would trim it.
        PgColumnType::Text => format!("CASE WHEN {c} IS NULL THEN NULL ELSE format('%s', {c}) END"),
        _ => format!("{c}::text"),
    }
}

/// Each column of each row as PostgreSQL prints it (`format('%s')`, so
/// `char(n)` keeps its padding), for source/warehouse comparison.
async fn printed(
    client: &Client,
    table: &str,
    columns: &[SourceColumn],
) -> Vec<Vec<Option<String>>> {
    let list = columns
        .iter()
        .map(|c| {
            let q = quote_ident(&c.name);
            format!("CASE WHEN {q} IS NULL THEN NULL ELSE format('%s', {q}) END")
        })
        .collect::<Vec<_>>()
        .join(", ");
    client
        .query(&format!("SELECT {list} FROM {table} ORDER BY id"), &[])
        .await
        .expect("print rows")
        .iter()
        .map(|row| (0..columns.len()).map(|i| row.get(i)).collect())
        .collect()
}

fn pyarrow_available() -> bool {
    Command::new("python3")
        .args(["-c", "import pyarrow.parquet"])
        .output()
        .is_ok_and(|o| o.status.success())
}

const READER: &str = r#"
import decimal, json, sys
import pyarrow as pa, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
cols = []
for col in t.columns:
    ty = col.type
    if pa.types.is_date32(ty):
        col = col.cast(pa.int32())
    elif pa.types.is_timestamp(ty) or pa.types.is_time64(ty):
        col = col.cast(pa.int64())
    cols.append(col.to_pylist())
def r(v):
    if v is None: return None
    if isinstance(v, bool): return 'true' if v else 'false'
    if isinstance(v, float): return repr(v)
    if isinstance(v, decimal.Decimal): return format(v, 'f')
    if isinstance(v, bytes): return v.hex()
    if isinstance(v, list): return [r(x) for x in v]
    return str(v)
print(json.dumps({
    "schema": {f.name: str(f.type) for f in t.schema},
    "rows": [[r(c[i]) for c in cols] for i in range(t.num_rows)],
}))
"#;

#[tokio::test]
async fn every_supported_type_lands_exactly() {
    let Some(source_db) = TestDb::create("types_src").await else {
        return;
    };
    let source = source_db.connect().await;
    source
        .batch_execute(SETUP)
        .await
        .expect("set up the source");
    source
        .batch_execute("SET TimeZone = 'UTC'; SET intervalstyle = 'iso_8601'")
        .await
        .unwrap();

    let columns = table_columns(&source, "public", "matrix", &BTreeMap::new())
        .await
        .expect("columns of matrix");
    assert_eq!(columns.len(), 28);
    let by_name = |name: &str| columns.iter().find(|c| c.name == name).unwrap().clone();
    assert_eq!(
        by_name("c_mood").ty,
        PgColumnType::Enum {
            name: "mood".into()
        }
    );
    assert_eq!(
        by_name("c_price").ty,
        PgColumnType::Numeric {
            precision: Some(8),
            scale: Some(2)
        }
    );
    assert_eq!(by_name("c_code").ty, PgColumnType::Text);
    assert_eq!(
        by_name("c_prices").ty.arrow_type(),
        arrow_schema::DataType::List(std::sync::Arc::new(arrow_schema::Field::new(
            "item",
            arrow_schema::DataType::Decimal128(6, 2),
            true
        )))
    );
    assert!(!by_name("id").nullable && !by_name("c_int8").nullable && by_name("c_int2").nullable);
    assert_eq!(by_name("c_varchar").pg_type, "character varying(20)");

    // Binary COPY, decoded as it arrived and one byte at a time.
    let select = format!(
        "SELECT {} FROM public.matrix ORDER BY id",
        select_list(&columns)
    );
    let chunks = copy_chunks(&source, &select).await;
    let batches = decode("matrix", &columns, chunks.iter().map(|c| c.as_ref())).expect("decode");
    let all: Vec<u8> = chunks.concat();
    let bytewise = decode("matrix", &columns, all.chunks(1)).expect("decode bytewise");
    assert_eq!(batches, bytewise, "chunk splits change nothing");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 6);
    assert!(batches.len() >= 2, "batches of 4 rows");

    // Parquet, read by pyarrow, against PostgreSQL's own account.
    let schema = arrow_schema(&columns);
    let parquet = tributary_lake::parquet::encode(schema, &batches).expect("encode parquet");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("matrix.parquet");
    std::fs::write(&path, &parquet).unwrap();
    if pyarrow_available() {
        let out = Command::new("python3")
            .args(["-c", READER])
            .arg(&path)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "pyarrow: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read: Value = serde_json::from_slice(&out.stdout).expect("reader JSON");
        let types = &read["schema"];
        for (column, ty) in [
            ("c_num", "decimal128(12, 3)"),
            ("c_price", "decimal128(8, 2)"),
            ("c_num_free", "string"),
            ("c_tstz", "timestamp[us, tz=UTC]"),
            ("c_ts", "timestamp[us]"),
            ("c_time", "time64[us]"),
            ("c_date", "date32[day]"),
            ("c_bytea", "binary"),
            ("c_ints", "list<item: int32>"),
            ("c_prices", "list<item: decimal128(6, 2)>"),
            ("c_int2", "int16"),
            ("c_float4", "float"),
        ] {
            assert_eq!(types[column], ty, "pyarrow type of {column}");
        }
        let got = read["rows"].as_array().unwrap();
        let expected_list = columns
            .iter()
            .map(expected_expr)
            .collect::<Vec<_>>()
            .join(", ");
        let want = source
            .query(
                &format!("SELECT {expected_list} FROM matrix ORDER BY id"),
                &[],
            )
            .await
            .expect("expected values");
        assert_eq!(got.len(), want.len());
        for (row, (got, want)) in got.iter().zip(&want).enumerate() {
            for (i, column) in columns.iter().enumerate() {
                let want: Option<String> = want.get(i);
                let got = &got[i];
                let context = format!("row {} column {}", row + 1, column.name);
                match (&column.ty, want) {
                    (_, None) => assert_eq!(got, &Value::Null, "{context}"),
                    (PgColumnType::Float4 | PgColumnType::Float8, Some(want)) => {
                        let single = column.ty == PgColumnType::Float4;
                        let got = got.as_str().unwrap();
                        let want_bits = if single {
                            u64::from(parse_f32(&want).to_bits())
                        } else {
                            parse_f64(&want).to_bits()
                        };
                        let got_bits = if single {
                            u64::from((parse_f64(got) as f32).to_bits())
                        } else {
                            parse_f64(got).to_bits()
                        };
                        let nan = |b: u64| {
                            if single {
                                f32::from_bits(b as u32).is_nan()
                            } else {
                                f64::from_bits(b).is_nan()
                            }
                        };
                        assert!(
                            want_bits == got_bits || (nan(want_bits) && nan(got_bits)),
                            "{context}: {got} vs {want}"
                        );
                    }
                    (PgColumnType::Array { .. }, Some(want)) => {
                        let want: Value = serde_json::from_str(&want).unwrap();
                        assert_eq!(got, &want, "{context}");
                    }
                    (_, Some(want)) => assert_eq!(got, &Value::String(want), "{context}"),
                }
            }
        }
    } else if stack_required() {
        panic!("pyarrow is required (TRIBUTARY_REQUIRE_STACK=1) but `import pyarrow` fails");
    } else {
        skip("pyarrow is not installed: the Parquet read-back part is skipped");
    }

    // The warehouse: the same rows through COPY text.
    let Some(warehouse_db) = TestDb::create("types_wh").await else {
        return;
    };
    let warehouse = warehouse_db.connect().await;
    warehouse
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .unwrap();
    source
        .batch_execute("SET intervalstyle = 'postgres'")
        .await
        .unwrap();
    let definition = columns
        .iter()
        .map(|c| format!("{} {}", quote_ident(&c.name), c.ty.warehouse_type()))
        .collect::<Vec<_>>()
        .join(", ");
    warehouse
        .batch_execute(&format!(
            "CREATE TABLE matrix ({definition}, PRIMARY KEY (id))"
        ))
        .await
        .expect("create the warehouse table");
    let mut text = Vec::new();
    for batch in &batches {
        put_rows(&mut text, batch, &columns).expect("COPY text");
    }
    let names = columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let sink = warehouse
        .copy_in::<_, Bytes>(&format!("COPY matrix ({names}) FROM STDIN"))
        .await
        .expect("start COPY in");
    pin_mut!(sink);
    sink.send(Bytes::from(text)).await.expect("send COPY text");
    let copied = sink.finish().await.expect("finish COPY in");
    assert_eq!(copied, 6);
    let want = printed(&source, "matrix", &columns).await;
    let got = printed(&warehouse, "matrix", &columns).await;
    assert_eq!(got.len(), want.len());
    for (row, (got, want)) in got.iter().zip(&want).enumerate() {
        for (i, column) in columns.iter().enumerate() {
            assert_eq!(
                got[i],
                want[i],
                "warehouse row {} column {}",
                row + 1,
                column.name
            );
        }
    }
    // And the plain `::text` of every column, char(n) aside (a cast trims it).
    for column in &columns {
        let c = quote_ident(&column.name);
        let query = format!("SELECT {c}::text FROM matrix ORDER BY id");
        let a: Vec<Option<String>> = source
            .query(&query, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let b: Vec<Option<String>> = warehouse
            .query(&query, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if column.name != "c_char" {
            assert_eq!(a, b, "{}::text", column.name);
        }
    }
}

fn parse_f64(text: &str) -> f64 {
    match text {
        "NaN" | "nan" => f64::NAN,
        "Infinity" | "inf" => f64::INFINITY,
        "-Infinity" | "-inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("float text {other}")),
    }
}

fn parse_f32(text: &str) -> f32 {
    match text {
        "NaN" => f32::NAN,
        "Infinity" => f32::INFINITY,
        "-Infinity" => f32::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("float text {other}")),
    }
}

#[tokio::test]
async fn unsupported_types_name_the_column_and_overrides_read_them() {
    let Some(db) = TestDb::create("types_odd").await else {
        return;
    };
    let client = db.connect().await;
    client.batch_execute(SETUP).await.expect("set up");

    let err = table_columns(&client, "public", "odd", &BTreeMap::new())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::UnsupportedType { .. }), "{err:?}");
    assert!(
        message.contains("odd.p") && message.contains("point"),
        "{message}"
    );
    assert!(
        message.contains("override") && message.contains("[tables.odd.types]"),
        "{message}"
    );

    let overrides: BTreeMap<String, String> = [("p", "text"), ("v", "text")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let columns = table_columns(&client, "public", "odd", &overrides)
        .await
        .unwrap();
    assert_eq!(columns[1].cast.as_deref(), Some("text"));
    assert_eq!(columns[1].ty, PgColumnType::Text);
    assert_eq!(columns[1].pg_type, "point");
    let select = format!(
        "SELECT {} FROM public.odd ORDER BY id",
        select_list(&columns)
    );
    let chunks = copy_chunks(&client, &select).await;
    let batches = decode("odd", &columns, chunks.iter().map(|c| c.as_ref())).unwrap();
    let mut text = Vec::new();
    for batch in &batches {
        put_rows(&mut text, batch, &columns).unwrap();
    }
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "1\t(1.5,-2)\t'a' 'cat' 'fat'\n2\t\\N\t\\N\n"
    );

    // An override that names no known type is a configuration error.
    let bad: BTreeMap<String, String> = [("p".to_string(), "geometry".to_string())].into();
    let err = table_columns(&client, "public", "odd", &bad)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("odd.p") && err.to_string().contains("geometry"));

    // A missing table is a configuration error too.
    let err = table_columns(&client, "public", "nope", &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");

    // Domains over arrays, arrays of domains; a range needs an override.
    let err = table_columns(&client, "public", "doms", &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("doms.r"), "{err}");
    let overrides: BTreeMap<String, String> = [("r".to_string(), "text".to_string())].into();
    let columns = table_columns(&client, "public", "doms", &overrides)
        .await
        .unwrap();
    let numeric62 = PgColumnType::Numeric {
        precision: Some(6),
        scale: Some(2),
    };
    let price = PgColumnType::Numeric {
        precision: Some(8),
        scale: Some(2),
    };
    let array = |element| PgColumnType::Array {
        element: Box::new(element),
    };
    assert_eq!(
        columns.iter().map(|c| c.ty.clone()).collect::<Vec<_>>(),
        [
            PgColumnType::Int4,
            array(numeric62),
            array(price),
            array(PgColumnType::Text),
            PgColumnType::Text,
            PgColumnType::Text,
        ]
    );
    assert_eq!(columns[2].ty.warehouse_type(), "numeric(8,2)[]");

    // A partitioned table's columns are its parent's.
    let columns = table_columns(&client, "public", "part", &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        columns
            .iter()
            .map(|c| (c.name.as_str(), c.ty.clone()))
            .collect::<Vec<_>>(),
        [("id", PgColumnType::Int4), ("v", PgColumnType::Text)]
    );

    // Infinite timestamps and multi-dimensional arrays are decode errors
    // naming the column, with the fix.
    for (table, column, needle) in [
        ("inf", "inf.ts", "infinite timestamp"),
        (
            "multi",
            "multi.m",
            "multi-dimensional arrays are not supported; override the column as text",
        ),
    ] {
        let columns = table_columns(&client, "public", table, &BTreeMap::new())
            .await
            .unwrap();
        let select = format!(
            "SELECT {} FROM public.{table} ORDER BY id",
            select_list(&columns)
        );
        let chunks = copy_chunks(&client, &select).await;
        let err = decode(table, &columns, chunks.iter().map(|c| c.as_ref())).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
        assert!(
            message.contains(column) && message.contains(needle),
            "{message}"
        );
    }
}
