//! `AZURE_POSTGRESQL_CONNECTIONSTRING`, in the forms Azure Service Connector writes it.
//!
//! Service Connector picks the form from the client type chosen when the connection is
//! created (Microsoft Learn, "Integrate Azure Database for PostgreSQL with Service
//! Connector", <https://learn.microsoft.com/azure/service-connector/how-to-integrate-postgres>):
//!
//! | client type | form | example (managed identity; a secret connection adds the password) |
//! | --- | --- | --- |
//! | .NET | Npgsql keywords | `Server=<server>.postgres.database.azure.com;Database=<db>;Port=5432;Ssl Mode=Require;User Id=<user>;` |
//! | Python (psycopg2), Go (pg), PHP, Ruby | libpq key=value | `dbname=<db> host=<server>.postgres.database.azure.com port=5432 sslmode=require user=<user>` |
//! | Java (JDBC) | `jdbc:postgresql://` URL | `jdbc:postgresql://<server>.postgres.database.azure.com:5432/<db>?sslmode=require&user=<user>` |
//!
//! Node.js, Django and "Other" get one variable per setting instead (`AZURE_POSTGRESQL_HOST`
//! and so on, read in `env.rs`), Spring Boot gets Spring properties. A `postgresql://` URL,
//! which no client type gets but people write by hand, is read too.
//!
//! Every form comes out as libpq (key, value) pairs, so that [`super::Config::set`] stays
//! the one place that knows what a setting means. Errors follow `conninfo.rs`: a `;` in an
//! unquoted password cuts it into pieces that look like keywords, so an unknown piece is
//! reported by its position only; a keyword is named only when it is one of Npgsql's.

use super::conninfo;
use super::error::ConfigError;

/// The (key, value) pairs of a Service Connector connection string, with libpq's keys.
pub(super) fn pairs(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let s = s.trim();
    match s.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("jdbc:") => jdbc_pairs(&s[5..]),
        _ if s.starts_with("postgresql://") || s.starts_with("postgres://") => conninfo::pairs(s),
        _ if is_npgsql(s) => npgsql_pairs(s),
        _ if s.contains('=') => conninfo::pairs(s),
        _ => Err(ConfigError::new(
            "connection string",
            "expected one of the forms Service Connector writes: Npgsql's `Server=...;Database=...;` (.NET), libpq's `host=... dbname=...` (Python, Go, PHP, Ruby), `jdbc:postgresql://...` (Java), or a postgresql:// URL",
        )),
    }
}

/// The query parameter in which Microsoft's Java samples name the JDBC plugin that fetches
/// Entra tokens. This pool is that plugin, so the parameter is dropped.
const JDBC_TOKEN_PLUGIN: &str = "authenticationPluginClassName";

/// A JDBC URL (after `jdbc:`) is a libpq URL under another scheme for what Service
/// Connector writes: host, port, database, and `sslmode`, `user`, `password` parameters.
/// Other pgJDBC parameters are unknown keys, as in any URL.
fn jdbc_pairs(rest: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(url) = rest.strip_prefix("postgresql://") else {
        return Err(ConfigError::new(
            "connection string",
            "a JDBC URL is read only in the form jdbc:postgresql://host:port/database?...; this one names another driver or leaves out the host",
        ));
    };
    let url = match url.split_once('?') {
        Some((main, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| p.split('=').next() != Some(JDBC_TOKEN_PLUGIN))
                .collect();
            format!("postgresql://{main}?{}", kept.join("&"))
        }
        None => format!("postgresql://{url}"),
    };
    // Positions in errors count from `postgresql://`, as the parser sees the URL.
    conninfo::pairs(&url).map_err(|e| ConfigError {
        field: e.field,
        reason: format!(
            "{} (in the JDBC URL, counting from `postgresql://`)",
            e.reason
        ),
    })
}

/// Npgsql's form is told from libpq's by what ends the first setting: `;` there, white
/// space here (or nothing: a single `host=...` reads the same either way). A keyword with a
/// space in it (`Ssl Mode`, `User Id`) or a double-quoted value is Npgsql's too.
fn is_npgsql(s: &str) -> bool {
    let Some((key, rest)) = s.split_once('=') else {
        return false;
    };
    if key.contains(';') || key.trim().contains(char::is_whitespace) {
        return true;
    }
    let rest = rest.trim_start();
    if rest.starts_with('"') {
        return true;
    }
    // Past a single-quoted value, which either form allows.
    let after = match rest.strip_prefix('\'') {
        Some(q) => q.find('\'').map_or("", |i| &q[i + 1..]),
        None => rest,
    };
    after
        .find(|c: char| c == ';' || c.is_whitespace())
        .is_some_and(|i| after[i..].starts_with(';'))
}

/// Where byte `at` of `s` is, in 1-based characters.
fn position(s: &str, at: usize) -> usize {
    s.get(..at).map_or(0, |p| p.chars().count()) + 1
}

fn malformed(s: &str, at: usize, what: &str) -> ConfigError {
    ConfigError::new(
        "connection string",
        format!(
            "{what} at character {} (the text is not repeated here: it could be part of a password; in Npgsql's form, double-quote a value that holds `;`)",
            position(s, at)
        ),
    )
}

/// The settings of an Npgsql string as written (keyword, value, byte where the keyword
/// starts), with the syntax of .NET's `DbConnectionStringBuilder`: `keyword=value` pairs
/// separated by `;`, white space around both trimmed, values optionally in double or
/// single quotes with the quote doubled inside.
fn npgsql_settings(s: &str) -> Result<Vec<(String, String, usize)>, ConfigError> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars
            .next_if(|&(_, c)| c == ';' || c.is_whitespace())
            .is_some()
        {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|&(_, c)| c != '=' && c != ';') {
            key.push(c);
        }
        let key = key.trim().to_owned();
        if chars.next().map(|(_, c)| c) != Some('=') || key.is_empty() {
            return Err(malformed(s, start, "expected `keyword=value`"));
        }
        while chars
            .next_if(|&(_, c)| c != ';' && c.is_whitespace())
            .is_some()
        {}
        let mut value = String::new();
        match chars.next_if(|&(_, c)| c == '"' || c == '\'') {
            Some((_, quote)) => {
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    if c != quote {
                        value.push(c);
                    } else if chars.next_if(|&(_, n)| n == quote).is_some() {
                        value.push(quote);
                    } else {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(malformed(s, start, "a quoted value is not closed"));
                }
                while chars
                    .next_if(|&(_, c)| c != ';' && c.is_whitespace())
                    .is_some()
                {}
                if chars.next_if(|&(_, c)| c != ';').is_some() {
                    return Err(malformed(s, start, "text after a quoted value"));
                }
            }
            None => {
                while let Some((_, c)) = chars.next_if(|&(_, c)| c != ';') {
                    value.push(c);
                }
                value.truncate(value.trim_end().len());
            }
        }
        out.push((key, value, start));
    }
    Ok(out)
}

/// The pairs of an Npgsql string, with libpq's keys. Keywords as Npgsql matches them:
/// without regard to case, by display name (`SSL Mode`), property name (`SslMode`) or
/// synonym (`User Id`); a later one wins, as in Npgsql.
fn npgsql_pairs(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (key, value, at) in npgsql_settings(s)? {
        let norm: String = key
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect();
        if let Some(pair) = libpq_setting(s, &norm, &value, at)? {
            out.push(pair);
        }
    }
    Ok(out)
}

/// Npgsql's boolean (`true`/`false`, any case); the value is not repeated in the error.
fn npgsql_bool(keyword: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::new(keyword, "expected true or false")),
    }
}

/// One Npgsql setting as the libpq setting that means the same here; `None` for one that
/// is accepted and has no effect.
fn libpq_setting(
    s: &str,
    norm: &str,
    v: &str,
    at: usize,
) -> Result<Option<(String, String)>, ConfigError> {
    let pair = |k: &str, v: &str| Ok(Some((k.to_owned(), v.to_owned())));
    let lower: String = v
        .trim()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .collect();
    match norm {
        "host" | "server" => pair("host", v),
        "port" => pair("port", v),
        "database" | "db" => pair("dbname", v),
        "username" | "userid" | "uid" => pair("user", v),
        "password" | "psw" | "pwd" => pair("password", v),
        // Npgsql writes VerifyCA and VerifyFull; the others are libpq's names.
        "sslmode" => match lower.as_str() {
            "verifyca" => pair("sslmode", "verify-ca"),
            "verifyfull" => pair("sslmode", "verify-full"),
            _ => pair("sslmode", v),
        },
        "rootcertificate" => pair("sslrootcert", v),
        "applicationname" => pair("application_name", v),
        "timeout" => pair("connect_timeout", v),
        "options" => pair("options", v),
        "channelbinding" => pair("channel_binding", v),
        "targetsessionattributes" => match lower.as_str() {
            "readwrite" => pair("target_session_attrs", "read-write"),
            "readonly" => pair("target_session_attrs", "read-only"),
            _ => pair("target_session_attrs", v),
        },
        "loadbalancehosts" => {
            let on = npgsql_bool("Load Balance Hosts", v)?;
            pair("load_balance_hosts", if on { "random" } else { "disable" })
        }
        "tcpkeepalive" => {
            let on = npgsql_bool("Tcp Keepalive", v)?;
            pair("keepalives", if on { "1" } else { "0" })
        }
        "tcpkeepalivetime" => pair("keepalives_idle", v),
        "tcpkeepaliveinterval" => pair("keepalives_interval", v),
        "trustservercertificate" => {
            if npgsql_bool("Trust Server Certificate", v)? {
                Err(ConfigError::new(
                    "Trust Server Certificate",
                    "Trust Server Certificate=true would skip the server certificate check and hand the token or password to whoever answers; it is not supported. Remove it; for a private CA, set Root Certificate (sslrootcert) to its file",
                ))
            } else {
                Ok(None)
            }
        }
        _ => Err(unsupported(s, norm, at)),
    }
}

/// Npgsql's pool settings: this pool has its own.
const NPGSQL_POOL: &[(&str, &str)] = &[
    ("pooling", "Pooling"),
    ("minimumpoolsize", "Minimum Pool Size"),
    ("minpoolsize", "Minimum Pool Size"),
    ("maximumpoolsize", "Maximum Pool Size"),
    ("maxpoolsize", "Maximum Pool Size"),
    ("connectionidlelifetime", "Connection Idle Lifetime"),
    ("connectionpruninginterval", "Connection Pruning Interval"),
    ("connectionlifetime", "Connection Lifetime"),
    ("loadbalancetimeout", "Connection Lifetime"),
];

/// Npgsql's other documented keywords, which have no equivalent here
/// (<https://www.npgsql.org/doc/connection-string-parameters.html>).
const NPGSQL_OTHER: &[(&str, &str)] = &[
    ("passfile", "Passfile"),
    ("sslcertificate", "SSL Certificate"),
    ("clientcertificate", "SSL Certificate"),
    ("sslkey", "SSL Key"),
    ("clientcertificatekey", "SSL Key"),
    ("sslpassword", "SSL Password"),
    ("sslnegotiation", "SSL Negotiation"),
    ("gssencryptionmode", "GSS Encryption Mode"),
    ("checkcertificaterevocation", "Check Certificate Revocation"),
    ("integratedsecurity", "Integrated Security"),
    ("kerberosservicename", "Kerberos Service Name"),
    ("krbsrvname", "Kerberos Service Name"),
    ("includerealm", "Include Realm"),
    ("requireauth", "Require Auth"),
    ("persistsecurityinfo", "Persist Security Info"),
    ("logparameters", "Log Parameters"),
    ("includeerrordetail", "Include Error Detail"),
    ("enlist", "Enlist"),
    ("searchpath", "Search Path"),
    ("clientencoding", "Client Encoding"),
    ("encoding", "Encoding"),
    ("timezone", "Timezone"),
    ("commandtimeout", "Command Timeout"),
    ("cancellationtimeout", "Cancellation Timeout"),
    ("internalcommandtimeout", "Internal Command Timeout"),
    ("keepalive", "Keepalive"),
    ("hostrecheckseconds", "Host Recheck Seconds"),
    ("maxautoprepare", "Max Auto Prepare"),
    ("autoprepareminusages", "Auto Prepare Min Usages"),
    ("noresetonclose", "No Reset On Close"),
    ("multiplexing", "Multiplexing"),
    ("readbuffersize", "Read Buffer Size"),
    ("writebuffersize", "Write Buffer Size"),
    ("socketreceivebuffersize", "Socket Receive Buffer Size"),
    ("socketsendbuffersize", "Socket Send Buffer Size"),
    ("servercompatibilitymode", "Server Compatibility Mode"),
    ("arraynullabilitymode", "Array Nullability Mode"),
    ("loadtablecomposites", "Load Table Composites"),
];

/// The keywords read, for the error on an unknown one.
const READ: &str = "Host (Server), Port, Database (DB), Username (User Id, UserId, User Name, UID), Password (PSW, PWD), SSL Mode, Root Certificate, Trust Server Certificate (false only), Application Name, Timeout, Options, Channel Binding, Target Session Attributes, Load Balance Hosts, Tcp Keepalive, Tcp Keepalive Time, Tcp Keepalive Interval";

/// The error for a keyword not read: named when it is one of Npgsql's (then it cannot be a
/// piece of a password), by position otherwise.
fn unsupported(s: &str, norm: &str, at: usize) -> ConfigError {
    let named = |list: &[(&str, &'static str)]| {
        list.iter()
            .find(|(n, _)| *n == norm)
            .map(|(_, canonical)| *canonical)
    };
    if let Some(k) = named(NPGSQL_POOL) {
        return ConfigError::new(
            "connection string",
            format!(
                "`{k}` is Npgsql's pool setting; this pool has its own: max_size, min_connections, wait_timeout, retire.max_lifetime (the builder, Config or serde). Remove it from the string"
            ),
        );
    }
    if let Some(k) = named(NPGSQL_OTHER) {
        return ConfigError::new(
            "connection string",
            format!(
                "`{k}` is an Npgsql setting with no equivalent in this pool; remove it from the string. Read: {READ}"
            ),
        );
    }
    ConfigError::new(
        "connection string",
        format!(
            "unknown setting at character {} (not repeated here: it could be part of a password whose `;` was not quoted); read: {READ}",
            position(s, at)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::is_npgsql;

    #[test]
    fn the_form_is_told_by_what_ends_the_first_setting() {
        for s in [
            "Server=h;Database=d",
            "Ssl Mode=Require;Server=h",
            "Password=\"a b\";Server=h",
            "Password='it''s';Server=h",
            "x;Server=h",
        ] {
            assert!(is_npgsql(s), "{s}");
        }
        for s in [
            "host=h dbname=d",
            "host = h port=5432",
            "password='a;b' host=h",
            "host=h",
            "postgresql://h/d",
            "no equals sign",
        ] {
            assert!(!is_npgsql(s), "{s}");
        }
    }
}
