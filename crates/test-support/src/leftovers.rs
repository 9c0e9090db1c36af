//! What is left of a tenant in the backends, read directly (not through
//! the API, which treats a deleted tenant as absent and so cannot tell).

/// Every table of the database at `url` with a `tenant` column (or a
/// `tenants` array of `tenants/{tenant}` names), outside `except_schemas`,
/// that still has rows of `tenant`: (`schema.table`, rows). Tables added
/// later are checked too.
pub async fn rows_naming_tenant(
    url: &str,
    tenant: &str,
    except_schemas: &[&str],
) -> anyhow::Result<Vec<(String, i64)>> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let tables = client
        .query(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns
             WHERE (column_name = 'tenant' OR (column_name = 'tenants' AND data_type = 'ARRAY'))
               AND table_schema NOT IN ('pg_catalog', 'information_schema')
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    let mut left = Vec::new();
    for row in tables {
        let (schema, table, column): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if except_schemas.contains(&schema.as_str()) {
            continue;
        }
        let (condition, value) = match column.as_str() {
            "tenant" => ("tenant = $1", tenant.to_owned()),
            _ => ("$1 = ANY(tenants)", format!("tenants/{tenant}")),
        };
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".\"{table}\" WHERE {condition}"), &[&value])
            .await?
            .get(0);
        if count > 0 {
            left.push((format!("{schema}.{table}"), count));
        }
    }
    Ok(left)
}

/// What the Redis at `url` still holds of `tenant` under `key_prefix`: key
/// names with `:{tenant}:` or `tenants/{tenant}/` in them, and fields or
/// members of hashes, sets and sorted sets that name it (`{tenant}:...`, or
/// a resource name `tenants/{tenant}/...`), each as `key` or `key field`.
pub async fn redis_naming_tenant(url: &str, key_prefix: &str, tenant: &str) -> anyhow::Result<Vec<String>> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let keys = scan(&mut connection, None, &format!("{key_prefix}*")).await?;
    let mut left = Vec::new();
    for key in keys {
        if key.contains(&format!(":{tenant}:")) || key.contains(&format!("tenants/{tenant}/")) {
            left.push(key);
            continue;
        }
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut connection).await?;
        if kind == "hash" {
            // Values too: a record or profile may name the tenant inside.
            let fields: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg(&key).query_async(&mut connection).await?;
            let names = [format!("tenants/{tenant}/"), format!("\"{tenant}\"")];
            for (field, value) in fields {
                if names.iter().any(|name| value.windows(name.len()).any(|window| window == name.as_bytes())) {
                    left.push(format!("{key} {field} (value)"));
                }
            }
        }
        let command = match kind.as_str() {
            "hash" => "HSCAN",
            "set" => "SSCAN",
            "zset" => "ZSCAN",
            _ => continue,
        };
        for pattern in [format!("{tenant}:*"), format!("*tenants/{tenant}/*")] {
            for member in scan(&mut connection, Some((command, &key)), &pattern).await? {
                left.push(format!("{key} {member}"));
            }
        }
    }
    Ok(left)
}

/// Key names matching `pattern`, or with `within`, the fields or members
/// of that key (`HSCAN`/`SSCAN`/`ZSCAN`) matching it.
async fn scan(
    connection: &mut redis::aio::MultiplexedConnection,
    within: Option<(&str, &str)>,
    pattern: &str,
) -> anyhow::Result<Vec<String>> {
    let (mut cursor, mut found) = (0_u64, Vec::new());
    loop {
        let mut command = match within {
            Some((command, key)) => redis::cmd(command).arg(key).to_owned(),
            None => redis::cmd("SCAN"),
        };
        let (next, page): (u64, Vec<String>) =
            command.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1_000).query_async(connection).await?;
        let pairs = matches!(within, Some(("HSCAN" | "ZSCAN", _)));
        found.extend(page.into_iter().step_by(if pairs { 2 } else { 1 }));
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

/// Runs `sql` (statements separated by `;`) on the database at `url`: for
/// tests that damage a store on purpose.
pub async fn execute_sql(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(sql).await?;
    Ok(())
}
