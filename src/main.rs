//! `neoprobe`: the command line over the library (src/cli/).

mod cli;

fn main() -> std::process::ExitCode {
    // Mesa's Vulkan drivers probe for a Wayland display and print a misleading
    // "error: XDG_RUNTIME_DIR is invalid or not set" on headless machines, although nothing here
    // needs a display. Giving them a runtime folder keeps the terminal to neoprobe's own lines.
    // (Set before any thread starts.)
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    cli::main()
}
