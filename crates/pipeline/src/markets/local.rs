//! One local pass of the crypto path: poll → in-process stream → sink →
//! transform → load, as the ingest, stream-sink, transform and load
//! functions do it in AWS with Kinesis in between.

use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tributary_lake::Lake;
use tributary_markets::mercado::MercadoBitcoin;

use crate::{
    Result,
    alerts::Alerts,
    markets::load::{MarketsLoadReport, load_markets},
    markets::poll::{PollOptions, PollReport, poll_markets},
    markets::sink::sink_batch,
    markets::stream::MemoryStream,
    markets::transform::transform_markets,
};

/// The local stream and how far the sink has read it.
#[derive(Debug, Default)]
pub struct LocalMarkets {
    /// The in-process stream.
    pub stream: MemoryStream,
    /// CoinCap, when a key is configured.
    pub coincap: Option<tributary_markets::coincap::CoinCap>,
    read: usize,
}

/// What one pass did.
#[derive(Debug, Clone)]
pub struct MarketsCycle {
    /// The poll.
    pub poll: PollReport,
    /// What reached the warehouse.
    pub loaded: MarketsLoadReport,
    /// Wall time of the pass.
    pub elapsed: Duration,
}

impl LocalMarkets {
    /// A local pass with CoinCap snapshots when `coincap` is given.
    pub fn new(coincap: Option<tributary_markets::coincap::CoinCap>) -> Self {
        Self {
            coincap,
            ..Self::default()
        }
    }

    /// Runs one pass.
    pub async fn cycle(
        &mut self,
        mercado: &MercadoBitcoin,
        raw: &Lake,
        processed: &Lake,
        warehouse: &mut Client,
        alerts: &dyn Alerts,
    ) -> Result<MarketsCycle> {
        let started = Instant::now();
        let poll = poll_markets(
            mercado,
            self.coincap.as_ref(),
            &self.stream,
            raw,
            &PollOptions::default(),
            alerts,
        )
        .await?;
        loop {
            let batch = self.stream.read(self.read, 500);
            if batch.is_empty() {
                break;
            }
            let report = sink_batch(raw, &batch, alerts).await;
            if !report.batch_item_failures.is_empty() {
                // Leave the batch for the next pass, as Kinesis would redeliver it.
                break;
            }
            self.read += batch.len();
        }
        transform_markets(raw, processed, alerts).await?;
        let loaded = load_markets(warehouse, processed, alerts).await?;
        Ok(MarketsCycle {
            poll,
            loaded,
            elapsed: started.elapsed(),
        })
    }
}
