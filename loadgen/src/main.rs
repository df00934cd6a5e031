fn main() { eprintln!("ringmail-loadgen: not built yet (issue 4)"); std::process::exit(2); }
