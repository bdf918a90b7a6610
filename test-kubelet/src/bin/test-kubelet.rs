//! `test-kubelet`: the main loop is not here yet.

fn main() {
    eprintln!("test-kubelet: not yet implemented");
    std::process::exit(2);
}
