//! Fixed names: the emulated tenant, subscription and resource group, and what is used
//! when nothing is chosen.

/// The tenant every token is issued in.
pub const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The subscription `az` reports and resource ids use.
pub const SUBSCRIPTION_ID: &str = "00000000-0000-4000-8000-00000000e117";
/// The resource group resource ids use.
pub const RESOURCE_GROUP: &str = "entra-emulator";
/// Name of the system-assigned identity when none is chosen.
pub const DEFAULT_IDENTITY: &str = "app-identity";
/// UPN of the user logged in for `az` when none is chosen.
pub const DEFAULT_USER: &str = "dev@contoso.example";
/// Database created when none is chosen.
pub const DEFAULT_DATABASE: &str = "app";
/// The scope to request for Azure Database for PostgreSQL.
pub const OSSRDBMS_SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
