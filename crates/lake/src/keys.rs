//! The key layout of the lake, relative to a root (`docs/architecture.md`).
//!
//! Every key is built here, and the keys other code must recognise (manifest
//! keys in S3 events, processed datasets for the catalog) are parsed back
//! here, so that writers and readers cannot drift apart.

use chrono::NaiveDate;

use crate::RunId;

/// Which flow a manifest log feeds: what a stage triggered by it must run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    /// The totesys source and its star schema.
    Totesys,
    /// The crypto markets: trades, tickers, assets, candles.
    Markets,
    /// The catalog's own bookkeeping (triggers nothing).
    Catalog,
    /// A source declared by configuration (`sources/<name>.toml`), in its
    /// own folder of the raw lake; loaded by `tributary sources`.
    Sources,
    /// Exchange rates, applied to the warehouse by `tributary fx` itself
    /// (triggers nothing).
    Fx,
}

/// A numbered manifest log: the commit point of one source or stage.
///
/// The one list of logs in the codebase: event routing, status, reconcile
/// and the catalog all go through it, so a new log cannot be forgotten by one
/// of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Log {
    /// Raw: one manifest per totesys extract.
    Totesys,
    /// Raw: one manifest per Kinesis batch the stream sink kept.
    MarketsTrades,
    /// Raw: one manifest per market poll (tickers, CoinCap assets).
    MarketsPoll,
    /// Raw: one manifest per daily-candle backfill.
    MarketsCandles,
    /// Raw: one manifest per exchange-rate poll or backfill that kept a
    /// reply not kept before.
    Fx,
    /// Processed: one manifest per totesys transform run.
    Transform,
    /// Processed: one manifest per markets transform run.
    MarketsTransform,
    /// Processed: how far each processed log is registered in the catalog.
    Catalog,
    /// Raw: one manifest per run of a source declared by configuration. It
    /// lives in that source's folder (`sources/<name>/_manifests/source/`,
    /// a [`crate::Lake::child`]), never at a lake's root, so it is not in
    /// [`Log::ALL`].
    Source,
}

impl Log {
    /// Every log, raw ones first.
    pub const ALL: [Log; 8] = [
        Log::Totesys,
        Log::MarketsTrades,
        Log::MarketsPoll,
        Log::MarketsCandles,
        Log::Fx,
        Log::Transform,
        Log::MarketsTransform,
        Log::Catalog,
    ];

    /// The log's folder name under `_manifests/` (part of the lake contract:
    /// never rename one).
    pub fn name(self) -> &'static str {
        match self {
            Log::Totesys => "totesys",
            Log::MarketsTrades => "markets",
            Log::MarketsPoll => "markets_poll",
            Log::MarketsCandles => "markets_candles",
            Log::Fx => "fx",
            Log::Transform => "transform",
            Log::MarketsTransform => "markets_transform",
            Log::Catalog => "catalog",
            Log::Source => "source",
        }
    }

    /// The log named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<Log> {
        Log::ALL.into_iter().find(|log| log.name() == name)
    }

    /// The flow a new manifest in this log feeds.
    pub fn flow(self) -> Flow {
        match self {
            Log::Totesys | Log::Transform => Flow::Totesys,
            Log::MarketsTrades | Log::MarketsPoll | Log::MarketsCandles | Log::MarketsTransform => {
                Flow::Markets
            }
            Log::Catalog => Flow::Catalog,
            Log::Source => Flow::Sources,
            Log::Fx => Flow::Fx,
        }
    }

    /// `_manifests/<name>`: the folder holding the log's manifests.
    pub fn dir(self) -> String {
        format!("{MANIFESTS}/{}", self.name())
    }

    /// `_manifests/<name>/<seq:020>.json`
    pub fn manifest(self, seq: u64) -> String {
        format!("{MANIFESTS}/{}/{seq:020}.json", self.name())
    }

    /// The log a key relative to a root belongs to, when it is a manifest key
    /// (`_manifests/<name>/…`); `None` for data keys and unknown logs.
    pub fn of_key(key: &str) -> Option<Log> {
        let rest = key.strip_prefix(MANIFESTS)?.strip_prefix('/')?;
        let (name, _file) = rest.split_once('/')?;
        Log::from_name(name)
    }
}

impl std::fmt::Display for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const MANIFESTS: &str = "_manifests";

/// File name of the `part`-th file of a run: `<run_id>.<ext>`, then
/// `<run_id>-0001.<ext>` and so on for the later files of a large run.
pub fn run_file(run_id: &RunId, part: u32, extension: &str) -> String {
    if part == 0 {
        format!("{run_id}.{extension}")
    } else {
        format!("{run_id}-{part:04}.{extension}")
    }
}

fn day(date: NaiveDate) -> impl std::fmt::Display {
    date.format("%Y-%m-%d")
}

// ---- raw zone -------------------------------------------------------------

/// `totesys/<table>/date=YYYY-MM-DD/<run_id>.parquet`, or `<run_id>-<part>.parquet`
/// for the second and later files of a large extract.
pub fn raw_totesys_file(table: &str, date: NaiveDate, run_id: &RunId, part: u32) -> String {
    format!(
        "totesys/{table}/date={}/{}",
        day(date),
        run_file(run_id, part, "parquet")
    )
}

/// `totesys/<table>`: the folder of a totesys table's raw files, one
/// `date=YYYY-MM-DD/` folder per extract day.
pub fn raw_totesys_dir(table: &str) -> String {
    format!("totesys/{table}")
}

/// `markets/mercado_bitcoin/trades/date=D/<shard>-<first sequence>.jsonl.gz`:
/// one Kinesis batch, named by where it came from so a redelivery of the same
/// batch lands on the same key.
pub fn raw_trades_batch(date: NaiveDate, shard_id: &str, first_sequence: &str) -> String {
    format!(
        "{RAW_TRADES}/date={}/{shard_id}-{first_sequence}.jsonl.gz",
        day(date)
    )
}

/// Where the stream sink's trade batches live (one trade a line).
pub const RAW_TRADES: &str = "markets/mercado_bitcoin/trades";
/// Where the polls' `/tickers` replies live.
pub const RAW_TICKERS: &str = "markets/mercado_bitcoin/tickers";
/// Where the polls' CoinCap `/assets` replies live.
pub const RAW_COINCAP_ASSETS: &str = "markets/coincap/assets";
/// Where the history backfills' `/candles` replies live.
pub const RAW_CANDLES: &str = "markets/mercado_bitcoin/candles";

/// `markets/mercado_bitcoin/tickers/date=D/<run_id>.json.gz`: one poll's
/// `/tickers` reply, as received.
pub fn raw_tickers(date: NaiveDate, run_id: &RunId) -> String {
    format!("{RAW_TICKERS}/date={}/{run_id}.json.gz", day(date))
}

/// `markets/coincap/assets/date=D/<run_id>.json.gz`: one poll's CoinCap
/// `/assets` reply, as received.
pub fn raw_coincap_assets(date: NaiveDate, run_id: &RunId) -> String {
    format!("{RAW_COINCAP_ASSETS}/date={}/{run_id}.json.gz", day(date))
}

/// `markets/mercado_bitcoin/candles/date=D/<run_id>-<symbol>.json.gz`: one
/// symbol's `/candles` reply, as received, fetched by a history backfill on
/// day `date`.
pub fn raw_candles(date: NaiveDate, run_id: &RunId, symbol: &str) -> String {
    format!("{RAW_CANDLES}/date={}/{run_id}-{symbol}.json.gz", day(date))
}

/// The symbol of a [`raw_candles`] key (the reply itself does not name it).
pub fn raw_candles_symbol(key: &str) -> Option<&str> {
    let name = key.rsplit('/').next()?.strip_suffix(".json.gz")?;
    // `<run_id>-<symbol>`, and a run id holds exactly one `-`.
    let mut parts = name.splitn(3, '-');
    let (_, _, symbol) = (parts.next()?, parts.next()?, parts.next()?);
    (!symbol.is_empty()).then_some(symbol)
}

/// `fx/<api>/base=<base>/month=YYYY-MM/<sha256>.json`: one exchange-rate
/// reply of one month's days, as received, named by its content so that the
/// same reply fetched again lands on the same key (and writes nothing).
pub fn raw_fx_month(api: &str, base: &str, month: NaiveDate, sha256_hex: &str) -> String {
    format!(
        "fx/{api}/base={base}/month={}/{sha256_hex}.json",
        month.format("%Y-%m")
    )
}

/// `_quarantine/<source>/<table>/<name>.jsonl`, named by the run (or the
/// stream batch) whose rows it holds.
pub fn quarantine(source: &str, table: &str, name: impl std::fmt::Display) -> String {
    format!("{}/{name}.jsonl", quarantine_dir(source, table))
}

/// `_quarantine/<source>/<table>`: every quarantine file of one table.
pub fn quarantine_dir(source: &str, table: &str) -> String {
    format!("_quarantine/{source}/{table}")
}

/// `_requests/ingest`: backfills queued for the next scheduled ingest.
pub const INGEST_REQUESTS: &str = "_requests/ingest";

/// `_requests/ingest/<id>.json`: one queued backfill (the invoke payload).
pub fn ingest_request(id: &str) -> String {
    format!("{INGEST_REQUESTS}/{id}.json")
}

/// `_requests/ingest/attempts/<id>/<run_id>.json`: one run that took it up.
pub fn ingest_request_attempt(id: &str, run_id: &RunId) -> String {
    format!("{INGEST_REQUESTS}/attempts/{id}/{run_id}.json")
}

/// `_requests/ingest/parts/<id>/<run_id>.json`: one run that read a part of
/// a backfill too large for one run (and committed it).
pub fn ingest_request_part(id: &str, run_id: &RunId) -> String {
    format!("{INGEST_REQUESTS}/parts/{id}/{run_id}.json")
}

/// `_requests/ingest/outcomes/<id>.json`: how it ended (done or given up).
pub fn ingest_request_outcome(id: &str) -> String {
    format!("{INGEST_REQUESTS}/outcomes/{id}.json")
}

// ---- processed zone -------------------------------------------------------

/// `warehouse/<table>/date=YYYY-MM-DD/<run_id>.parquet` (parts as for raw files).
pub fn processed_warehouse_file(table: &str, date: NaiveDate, run_id: &RunId, part: u32) -> String {
    format!(
        "warehouse/{table}/date={}/{}",
        day(date),
        run_file(run_id, part, "parquet")
    )
}

/// `markets/trades/date=D/<run_id>.parquet`: one run's new trades of one day.
pub fn processed_trades(date: NaiveDate, run_id: &RunId) -> String {
    format!("{PROCESSED_TRADES}/date={}/{run_id}.parquet", day(date))
}

/// `markets/trades_compacted/date=D/gen=<run_id>/trades.parquet`: every trade
/// of a closed day in one file; a later generation supersedes an earlier one.
pub fn processed_trades_compacted(date: NaiveDate, run_id: &RunId) -> String {
    format!(
        "{PROCESSED_TRADES_COMPACTED}/date={}/gen={run_id}/trades.parquet",
        day(date)
    )
}

/// `markets/ohlcv_daily/year=Y/<run_id>.parquet`: one run's daily bars.
pub fn processed_ohlcv_daily(year: i32, run_id: &RunId) -> String {
    format!("{PROCESSED_OHLCV_DAILY}/year={year}/{run_id}.parquet")
}

/// `markets/ohlcv_history/year=Y/<run_id>.parquet`: bars from daily candles.
pub fn processed_ohlcv_history(year: i32, run_id: &RunId) -> String {
    format!("{PROCESSED_OHLCV_HISTORY}/year={year}/{run_id}.parquet")
}

/// `markets/assets/<run_id>.parquet`: one CoinCap assets snapshot.
pub fn processed_assets(run_id: &RunId) -> String {
    format!("markets/assets/{run_id}.parquet")
}

const PROCESSED_TRADES: &str = "markets/trades";
const PROCESSED_TRADES_COMPACTED: &str = "markets/trades_compacted";
const PROCESSED_OHLCV_DAILY: &str = "markets/ohlcv_daily";
const PROCESSED_OHLCV_HISTORY: &str = "markets/ohlcv_history";

/// `_state/<part>/<run_id>.<extension>`: state a stage carries between runs.
pub fn state_file(part: &str, run_id: &RunId, extension: &str) -> String {
    format!("_state/{part}/{run_id}.{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_lake_contract() {
        let run = RunId::new(chrono::Utc::now());
        let day = NaiveDate::from_ymd_opt(2024, 2, 3).unwrap();
        assert_eq!(
            raw_totesys_file("sales_order", day, &run, 0),
            format!("totesys/sales_order/date=2024-02-03/{run}.parquet")
        );
        assert_eq!(
            raw_totesys_file("sales_order", day, &run, 2),
            format!("totesys/sales_order/date=2024-02-03/{run}-0002.parquet")
        );
        assert_eq!(
            Log::Totesys.manifest(7),
            "_manifests/totesys/00000000000000000007.json"
        );
        assert_eq!(
            quarantine("totesys", "payment", &run),
            format!("_quarantine/totesys/payment/{run}.jsonl")
        );
        assert_eq!(
            raw_trades_batch(day, "shardId-000000000000", "4959"),
            "markets/mercado_bitcoin/trades/date=2024-02-03/shardId-000000000000-4959.jsonl.gz"
        );
        let candles = raw_candles(day, &run, "BTC-BRL");
        assert_eq!(
            candles,
            format!("markets/mercado_bitcoin/candles/date=2024-02-03/{run}-BTC-BRL.json.gz")
        );
        assert_eq!(raw_candles_symbol(&candles), Some("BTC-BRL"));
        assert_eq!(raw_candles_symbol(&raw_tickers(day, &run)), None);
        assert!(raw_totesys_file("payment", day, &run, 0).starts_with(&raw_totesys_dir("payment")));
        assert_eq!(
            raw_fx_month("frankfurter", "EUR", day, "ab12"),
            "fx/frankfurter/base=EUR/month=2024-02/ab12.json"
        );
        assert_eq!(
            Log::Fx.manifest(2),
            "_manifests/fx/00000000000000000002.json"
        );
        assert_eq!(
            processed_trades_compacted(day, &run),
            format!("markets/trades_compacted/date=2024-02-03/gen={run}/trades.parquet")
        );
    }

    #[test]
    fn every_log_name_parses_back_to_its_log_and_no_two_share_a_name() {
        for log in Log::ALL {
            assert_eq!(Log::from_name(log.name()), Some(log));
            assert_eq!(Log::of_key(&log.manifest(3)), Some(log));
        }
        let mut names: Vec<&str> = Log::ALL.iter().map(|l| l.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Log::ALL.len());
        assert_eq!(Log::of_key("_manifests/other thing/x.json"), None);
        assert_eq!(
            Log::of_key("totesys/payment/date=2024-01-01/a.parquet"),
            None
        );
        assert_eq!(Log::of_key("_manifests/totesys"), None);
    }
}
