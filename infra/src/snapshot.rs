//! Saves the local table to a JSON-lines file on shutdown and loads it on start, because
//! the stand-in keeps everything in memory.

use std::io::{BufRead, Write};
use std::path::Path;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;

pub type SnapshotError = Box<dyn std::error::Error + Send + Sync>;

/// Writes every item of `table` to `path`, one JSON object per line. Returns the count.
pub async fn save(client: &Client, table: &str, path: &Path) -> Result<usize, SnapshotError> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut start = None;
    let mut count = 0;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        for item in page.items() {
            let json: serde_json::Value = serde_dynamo::from_item(item.clone())?;
            writeln!(out, "{json}")?;
            count += 1;
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    out.flush()?;
    Ok(count)
}

/// Loads a snapshot written by [`save`] into `table`. Returns the count.
pub async fn load(client: &Client, table: &str, path: &Path) -> Result<usize, SnapshotError> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut batch = Vec::new();
    let mut count = 0;
    for line in file.lines() {
        let json: serde_json::Value = serde_json::from_str(&line?)?;
        let item = serde_dynamo::to_item(json)?;
        batch.push(
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                .build(),
        );
        if batch.len() == 25 {
            count += write(client, table, std::mem::take(&mut batch)).await?;
        }
    }
    count += write(client, table, batch).await?;
    Ok(count)
}

async fn write(
    client: &Client,
    table: &str,
    mut batch: Vec<WriteRequest>,
) -> Result<usize, SnapshotError> {
    let count = batch.len();
    while !batch.is_empty() {
        let output = client
            .batch_write_item()
            .request_items(table, std::mem::take(&mut batch))
            .send()
            .await?;
        batch = output
            .unprocessed_items
            .and_then(|mut m| m.remove(table))
            .unwrap_or_default();
    }
    Ok(count)
}
