//! The build script of every function (`build = "../link.rs"` in each manifest): links the
//! bootstrap as a position-dependent executable (`-no-pie`), with `cargo build` and with
//! `sam build` (cargo lambda) alike. A position-independent one carries a relocation for
//! every pointer in its data, applied at each start: about 1.1 MB of `api` (README,
//! "Bootstrap size"). The price: the executable's own code and data sit at a fixed address;
//! the C library, the heap and the stacks are still placed at random.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
