//! Manual check of the real fetch: `cargo run -p ivg-assets --example fetch -- smollm2 [more..]`
//! (no names: every asset). Uses the environment's cache (`IVG_CACHE_DIR`, ...)
//! and prints each asset's path and the time it took.

use std::time::Instant;

use ivg_assets::{ensure_default, Asset};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), ivg_assets::AssetError> {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let assets: Vec<Asset> = match names.is_empty() {
        true => Asset::ALL.to_vec(),
        false => names.iter().map(|n| n.parse()).collect::<Result<_, _>>()?,
    };
    for asset in assets {
        let start = Instant::now();
        let path = ensure_default(asset)?;
        println!(
            "{asset}\t{}\t{:.1}s",
            path.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
