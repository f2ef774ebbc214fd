//! The `rig` command-line tool; everything lives in [`rigd::cli`].

fn main() {
    std::process::exit(rigd::cli::main(std::env::args_os().skip(1)));
}
