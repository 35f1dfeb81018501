//! Olist-shaped data to go with the four real Olist tables (`../shared/olist`),
//! for tests and demos: the five tables the real data lacks, made to fit it
//! (`companions.sql`), and a month of business on top (`month.sql`): new
//! orders, status and delivery updates, deletes. Both are deterministic.

use tokio_postgres::Client;

use crate::Result;

const COMPANIONS: &str = include_str!("olist/companions.sql");
const MONTH: &str = include_str!("olist/month.sql");

/// Creates and fills `customers`, `orders`, `order_items`, `order_reviews`
/// and `geolocation` from the real `order_payments`, `products` and
/// `sellers` already in the database.
pub async fn create_companions(client: &Client) -> Result<()> {
    client.batch_execute(COMPANIONS).await?;
    Ok(())
}

/// Applies month number `month` of business: 3,000 new orders with their
/// customers, items and payments; shipped orders delivered, processing
/// ones shipped; canceled orders purged with their items and payments; some
/// reviews withdrawn.
pub async fn apply_month(client: &Client, month: u32) -> Result<()> {
    client
        .batch_execute(&MONTH.replace("{month}", &month.to_string()))
        .await?;
    Ok(())
}
