#![no_main]

#[path = "../targets/deployment_spec.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::run(data));
