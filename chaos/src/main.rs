//! `holdfast-chaos`: the fault-injection harness. Lands with the chaos issue.

fn main() {
    eprintln!("holdfast-chaos: not built yet (see the chaos issue)");
    std::process::exit(2);
}
