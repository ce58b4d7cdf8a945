//! Fuzz target `front_matter`: artifact front matter through the verdict gate's parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baton_fuzz::front_matter::run(data);
});
