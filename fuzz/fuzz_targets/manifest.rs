//! The manifest parser on arbitrary bytes: never panics, and whatever it accepts passes
//! every manifest rule.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = ferry_bundle::Manifest::parse(data) {
        assert!(manifest.check().is_ok());
        // Re-serialising an accepted manifest gives one that parses to the same value.
        let again = ferry_bundle::Manifest::parse(&manifest.to_json()).expect("round trip");
        assert_eq!(again, manifest);
    }
});
