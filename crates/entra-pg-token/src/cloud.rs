//! Which Azure cloud a server is in, from its host name, and the token scope that cloud's
//! Azure Database for PostgreSQL accepts.
//!
//! The resource ids are the Azure CLI's `ossrdbmsResourceId` of each cloud
//! (`az cloud show --query endpoints.ossrdbmsResourceId`).

/// The default scope for Azure Database for PostgreSQL (public cloud).
pub const DEFAULT_SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";

/// The scope for Azure Database for PostgreSQL in Azure US Government.
pub const US_GOVERNMENT_SCOPE: &str = "https://ossrdbms-aad.database.usgovcloudapi.net/.default";

/// The scope for Azure Database for PostgreSQL in Azure operated by 21Vianet (China).
pub const CHINA_SCOPE: &str = "https://ossrdbms-aad.database.chinacloudapi.cn/.default";

/// Host name suffixes of each cloud's servers, and the scope their tokens need.
const CLOUDS: [(&str, &str, &str); 3] = [
    (
        ".postgres.database.azure.com",
        "Azure public cloud",
        DEFAULT_SCOPE,
    ),
    (
        ".postgres.database.usgovcloudapi.net",
        "Azure US Government",
        US_GOVERNMENT_SCOPE,
    ),
    (
        ".postgres.database.chinacloudapi.cn",
        "Azure operated by 21Vianet",
        CHINA_SCOPE,
    ),
];

/// Where the scope in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeFrom {
    /// Configured (`scope`, `AZURE_POSTGRESQL_SCOPE`, the builder).
    Explicit,
    /// The host name's suffix names the cloud.
    HostName(&'static str),
    /// Not an Azure host name we know (a private endpoint's custom name, an IP address, a
    /// local server): the public cloud's scope.
    Default,
}

/// The scope to request: the explicit one, else the one of the cloud the host name's
/// suffix names, else the public cloud's.
pub fn scope_for(explicit: Option<&str>, host: &str) -> (String, ScopeFrom) {
    if let Some(s) = explicit {
        return (s.to_owned(), ScopeFrom::Explicit);
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    for (suffix, cloud, scope) in CLOUDS {
        if host.ends_with(suffix) {
            return (scope.to_owned(), ScopeFrom::HostName(cloud));
        }
    }
    (DEFAULT_SCOPE.to_owned(), ScopeFrom::Default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cloud_comes_from_the_host_suffix_and_an_explicit_scope_wins() {
        let cases = [
            ("srv.postgres.database.azure.com", DEFAULT_SCOPE),
            ("SRV.Postgres.Database.Azure.Com.", DEFAULT_SCOPE),
            (
                "srv.postgres.database.usgovcloudapi.net",
                US_GOVERNMENT_SCOPE,
            ),
            ("srv.postgres.database.chinacloudapi.cn", CHINA_SCOPE),
            ("db.internal.contoso.com", DEFAULT_SCOPE),
            ("10.1.2.3", DEFAULT_SCOPE),
            (
                "postgres.database.usgovcloudapi.net.evil.example",
                DEFAULT_SCOPE,
            ),
        ];
        for (host, scope) in cases {
            assert_eq!(scope_for(None, host).0, scope, "{host}");
        }
        assert_eq!(
            scope_for(None, "srv.postgres.database.usgovcloudapi.net").1,
            ScopeFrom::HostName("Azure US Government")
        );
        assert_eq!(scope_for(None, "localhost").1, ScopeFrom::Default);
        let (s, from) = scope_for(
            Some("api://custom/.default"),
            "srv.postgres.database.chinacloudapi.cn",
        );
        assert_eq!(
            (s.as_str(), from),
            ("api://custom/.default", ScopeFrom::Explicit)
        );
    }
}
