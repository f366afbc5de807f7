#![no_main]

#[path = "../targets/install_plan.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::run(data));
