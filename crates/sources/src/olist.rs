//! Olist-shaped data to go with the four real Olist tables (`../shared/olist`),
//! for tests and demos: the five tables the real data lacks, made to fit it
//! (`companions.sql`), and a month of business on top (`month.sql`): new
//! orders, status and delivery updates, deletes. Both are deterministic.
//! Without the real data, [`generate`] makes all nine tables up
//! (`base.sql` for the real four, then the same companions).

use tokio_postgres::Client;

use crate::Result;

const BASE: &str = include_str!("olist/base.sql");
const COMPANIONS: &str = include_str!("olist/companions.sql");
const MONTH: &str = include_str!("olist/month.sql");

/// Creates all nine Olist tables, made up, in an empty database: `orders`
/// paid-for orders (about two items each) and sellers, products and
/// customers in proportion, with the real dataset's awkward parts (see
/// `base.sql`). For demos and benchmarks; the same `orders` gives the same
/// data.
pub async fn generate(client: &Client, orders: u64) -> Result<()> {
    if orders == 0 {
        return Err(crate::Error::Config {
            file: "olist generator".to_string(),
            reason: "an Olist database needs at least one order".to_string(),
        });
    }
    let tx_sql = format!(
        "BEGIN;\n{}\n{COMPANIONS}\nCOMMIT;\nANALYZE;",
        BASE.replace("{orders}", &orders.to_string())
    );
    client.batch_execute(&tx_sql).await?;
    Ok(())
}

/// The nine Olist tables, by name: the real four and the generated five.
pub const TABLES: [&str; 9] = [
    "customers",
    "geolocation",
    "order_items",
    "order_payments",
    "order_reviews",
    "orders",
    "product_category_name_translation",
    "products",
    "sellers",
];

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
    if month_applied(client, month).await? {
        return Err(crate::Error::Config {
            file: "olist generator".to_string(),
            reason: format!("month {month} was already applied to this database"),
        });
    }
    client
        .batch_execute(&MONTH.replace("{month}", &month.to_string()))
        .await?;
    Ok(())
}

/// Whether month `month` was applied: its first new order is there.
async fn month_applied(client: &Client, month: u32) -> Result<bool> {
    let first = format!("month {month} order 1");
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM orders WHERE order_id = md5($1))",
            &[&first],
        )
        .await?
        .get(0))
}

/// The first month not yet applied to this database.
pub async fn next_month(client: &Client) -> Result<u32> {
    let mut month = 1;
    while month_applied(client, month).await? {
        month += 1;
    }
    Ok(month)
}
