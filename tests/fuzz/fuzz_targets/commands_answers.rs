#![no_main]

#[path = "../targets/commands_answers.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::run(data));
