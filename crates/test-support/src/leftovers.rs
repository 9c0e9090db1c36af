//! What is left of a tenant in the backends, read directly (not through
//! the API, which treats a deleted tenant as absent and so cannot tell).

/// Every table of the database at `url` with a `tenant` column, outside
/// `except_schemas`, that still has rows of `tenant`: (`schema.table`,
/// rows). Tables added later are checked too.
pub async fn rows_naming_tenant(
    url: &str,
    tenant: &str,
    except_schemas: &[&str],
) -> anyhow::Result<Vec<(String, i64)>> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let tables = client
        .query(
            "SELECT table_schema, table_name FROM information_schema.columns
             WHERE column_name = 'tenant' AND table_schema NOT IN ('pg_catalog', 'information_schema')
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    let mut left = Vec::new();
    for row in tables {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        if except_schemas.contains(&schema.as_str()) {
            continue;
        }
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".\"{table}\" WHERE tenant = $1"), &[&tenant])
            .await?
            .get(0);
        if count > 0 {
            left.push((format!("{schema}.{table}"), count));
        }
    }
    Ok(left)
}

/// Keys of the Redis at `url` that start with `key_prefix` and have
/// `:{tenant}:` in their name.
pub async fn redis_keys_naming_tenant(url: &str, key_prefix: &str, tenant: &str) -> anyhow::Result<Vec<String>> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let (mut cursor, mut keys) = (0_u64, Vec::new());
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{key_prefix}*:{tenant}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut connection)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}
