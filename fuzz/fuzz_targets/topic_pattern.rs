//! Topic patterns: parsing, matching, the subscriber index and delivery through the C
//! ABI, against a reference matcher (weft::fuzzing::topics).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weft::fuzzing::topics(data));
