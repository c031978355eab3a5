//! Prints the config's JSON Schema: `cargo run -p edgegate --features schema --example schema`.
//! `schema/edgegate.schema.json` is this output; the test command fails when they differ.
#![allow(clippy::unwrap_used, clippy::expect_used)]

fn main() {
    let schema = schemars::schema_for!(edgegate::config::Config);
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).expect("schema serializes")
    );
}
