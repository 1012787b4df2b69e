//! Rebuilds `rim` when a file under `web/dist` (the embedded web pages,
//! `src/web.rs`) is added, removed or changed: the embedding macro alone
//! sees only changes to the files that existed when it ran.

fn main() {
    println!("cargo:rerun-if-changed=web/dist");
    println!("cargo:rerun-if-changed=build.rs");
}
