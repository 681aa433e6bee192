//! A sequence of C ABI calls on a loop, checked against a model of exactly-once
//! accounting (weft::fuzzing::api_sequence).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weft::fuzzing::api_sequence(data));
