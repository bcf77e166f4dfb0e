//! Any bytes as project.json.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    segadapt_fuzz::init();
    if let Ok(p) = segadapt_fuzz::project::project::Project::from_json(data) {
        let bytes = p.to_json().expect("a parsed project serialises");
        segadapt_fuzz::project::project::Project::from_json(&bytes).expect("a saved project parses again");
    }
});
