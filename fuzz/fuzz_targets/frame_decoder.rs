//! The child→parent frame decoder, fed in the splits the input chooses, against a
//! reference decoder (weft::fuzzing::frames).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weft::fuzzing::frames(data));
