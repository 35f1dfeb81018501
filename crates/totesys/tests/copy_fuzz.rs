//! Property tests of the binary COPY decoder: arbitrary input never panics
//! (it decodes or returns an error), and valid streams decode to the same
//! values however they are split. `PROPTEST_CASES=100000` for a long run.

use arrow_array::{Array, Int32Array, StringArray, TimestampMillisecondArray};
use proptest::prelude::*;
use tributary_totesys::{SourceTable, TableDef, copy_binary::CopyDecoder};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const PG_EPOCH_MS: i64 = 946_684_800_000;

fn stream(rows: &[(i32, Option<String>, i64)]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend([0u8; 8]);
    for (id, code, ms) in rows {
        out.extend(4i16.to_be_bytes());
        out.extend(4i32.to_be_bytes());
        out.extend(id.to_be_bytes());
        match code {
            Some(code) => {
                out.extend((code.len() as i32).to_be_bytes());
                out.extend(code.as_bytes());
            }
            None => out.extend((-1i32).to_be_bytes()),
        }
        for _ in 0..2 {
            out.extend(8i32.to_be_bytes());
            out.extend(((ms - PG_EPOCH_MS) * 1000).to_be_bytes());
        }
    }
    out.extend((-1i16).to_be_bytes());
    out
}

fn decode(bytes: &[u8], cuts: &[usize]) -> Result<Vec<arrow_array::RecordBatch>, String> {
    let table = TableDef::by_name("currency").unwrap();
    let mut decoder = CopyDecoder::new(SourceTable::from_model(table), 7);
    let mut out = Vec::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts.into_iter().chain([bytes.len()]) {
        if cut < start {
            continue;
        }
        decoder
            .feed(&bytes[start..cut], &mut out)
            .map_err(|e| e.to_string())?;
        start = cut;
    }
    out.extend(decoder.finish().map_err(|e| e.to_string())?);
    Ok(out)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..512),
        with_header in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut bytes = if with_header { [SIGNATURE, &[0u8; 8]].concat() } else { Vec::new() };
        bytes.extend(body);
        let _ = decode(&bytes, &cuts);
    }

    #[test]
    fn valid_streams_decode_identically_however_split(
        rows in prop::collection::vec((any::<i32>(), ".{0,40}".prop_map(Some), -2_000_000_000_000i64..4_000_000_000_000), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let bytes = stream(&rows);
        let batches = decode(&bytes, &cuts).map_err(TestCaseError::fail)?;
        let mut decoded = Vec::new();
        for batch in &batches {
            let ids = batch.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
            let codes = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            let times = batch.column(3).as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
            for row in 0..batch.num_rows() {
                let code = (!codes.is_null(row)).then(|| codes.value(row).to_string());
                decoded.push((ids.value(row), code, times.value(row)));
            }
        }
        prop_assert_eq!(decoded, rows);
    }
}
