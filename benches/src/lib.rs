//! Benchmarks for rigd; the code lives under `benches/` (run with `cargo bench -p rig-benches`).
