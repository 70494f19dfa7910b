//! The emulator's `az` and `azd` for the scenarios: `emulator-cli az ...` and
//! `emulator-cli azd ...`, run by the shims in `Emulator::az_bin_dir`. A binary of this
//! package, so that cargo builds it, fresh, before the package's tests run.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    let status = entra_emulator::standin::run(std::env::args_os().skip(1));
    std::process::ExitCode::from(u8::try_from(status).unwrap_or(1))
}
