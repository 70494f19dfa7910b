//! End-to-end and fault scenarios: `deadpool-entra` with real `azure_identity` credentials
//! against `entra-emulator` (Entra ID token endpoints and an Azure-like PostgreSQL front
//! over TLS, on a real PostgreSQL cluster). One binary, one module per concern; every test
//! is named for the behaviour it proves and asserts on what the emulator and the pool
//! count, never on wall-clock speed. docs/testing.md lists them with their bounds.

mod auth_methods;
mod config_errors;
mod data_layer;
mod faults;
mod faults_past_expiry;
mod network;
mod rotation;
mod secrets;
mod soak;
