//! The fuzz targets' committed corpus (fuzz/corpus/<target>), replayed through the same
//! `weft::fuzzing` functions on stable Rust: every input the fuzzers kept, crashes they
//! found included once fixed, stays a regression test of `cargo test`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} holds no input", dir.display());
    for path in inputs {
        let data = std::fs::read(&path).expect("a corpus file");
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{} fails (cargo +nightly fuzz run {target} {})", path.display(), path.display());
        }
    }
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", weft::fuzzing::frames);
}

#[test]
fn topic_pattern_corpus() {
    replay("topic_pattern", weft::fuzzing::topics);
}

#[test]
fn api_sequence_corpus() {
    replay("api_sequence", weft::fuzzing::api_sequence);
}
