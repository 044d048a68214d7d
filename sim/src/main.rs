fn main() {
    eprintln!("murmur-sim: not built yet (issue 6)");
    std::process::exit(2);
}
