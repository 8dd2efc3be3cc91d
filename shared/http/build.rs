//! Embeds the checked-in OpenAPI document (`openapi.json`, which `make docs` writes pretty
//! for review) without its whitespace and deflated: 0.46 MB of JSON is 0.06 MB deflated, in
//! a bootstrap with a 10 MB budget. A document that does not parse (a bad merge) embeds `{}`
//! with a warning, so that the crate still builds and `make docs` can write it anew; the
//! routes test fails until then.

use std::io::Write;
use std::path::PathBuf;

use flate2::write::DeflateEncoder;
use flate2::Compression;

fn main() {
    println!("cargo:rerun-if-changed=openapi.json");
    let document = std::fs::read_to_string("openapi.json")
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .unwrap_or_else(|| {
            println!("cargo:warning=shared/http/openapi.json is not JSON: run `make docs`");
            serde_json::Value::Object(Default::default())
        });
    let mut deflated = DeflateEncoder::new(Vec::new(), Compression::best());
    deflated
        .write_all(document.to_string().as_bytes())
        .and_then(|()| deflated.flush())
        .expect("deflating into memory");
    let deflated = deflated.finish().expect("deflating into memory");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("openapi.json.deflate"), deflated).expect("OUT_DIR is writable");
}
