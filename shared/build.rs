// `sqlx::migrate!` embeds the migrations at compile time, and on stable Rust
// cargo would not notice a new one without being told to look.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
