//! Print a topology, its weights and its spectral gap (the same report `murmur-sim topology`
//! can print through `murmur_topology::describe_as`).
//!
//! `cargo run -p murmur-topology --example describe -- <spec> <n> [seed] [text|dot|json]`
//! e.g. `... -- random-regular:4 64 7 json`.

use murmur_topology::{Format, TopologySpec, describe_as};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: describe <spec> <n> [seed] [text|dot|json]");
        eprintln!("specs: {}", TopologySpec::EXAMPLES.join(", "));
        std::process::exit(2);
    }
    let spec: TopologySpec = args[0].parse()?;
    let n: usize = args[1].parse()?;
    let seed: u64 = args.get(2).map_or(Ok(0), |s| s.parse())?;
    let format: Format = args.get(3).map_or(Ok(Format::Text), |s| s.parse())?;
    print!("{}", describe_as(&spec, n, seed, format)?);
    Ok(())
}
