//! Gzip for the raw lake's JSON objects: written deterministically (no time
//! or name in the header), so a retry of the same content is the same bytes
//! and put-if-absent accepts it.

use std::io::{Read, Write};

use tributary_lake::Lake;

use crate::{Error, Result};

/// `bytes` compressed with an empty gzip header.
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(bytes)
        .and_then(|_| encoder.finish())
        .map_err(Error::Compress)
}

/// Reads the gzipped text object at `key`.
pub async fn read_text(lake: &Lake, key: &str) -> Result<String> {
    let compressed = lake.get(key).await?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .map_err(|source| Error::NotGzip {
            key: key.to_string(),
            source,
        })?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_content_compresses_to_the_same_bytes_and_reads_back() {
        let first = gzip(b"{\"tid\":1}\n").unwrap();
        assert_eq!(first, gzip(b"{\"tid\":1}\n").unwrap());
        let lake = Lake::from_url("memory://").unwrap();
        lake.put_once("a.json.gz", bytes::Bytes::from(first))
            .await
            .unwrap();
        assert_eq!(
            read_text(&lake, "a.json.gz").await.unwrap(),
            "{\"tid\":1}\n"
        );
        lake.put_once("b.json.gz", bytes::Bytes::from_static(b"plain"))
            .await
            .unwrap();
        let err = read_text(&lake, "b.json.gz").await.unwrap_err().to_string();
        assert!(err.contains("b.json.gz: not gzip text"), "{err}");
    }
}
