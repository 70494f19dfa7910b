//! Check 2: each link of the credential chain, whether it was available, tried or failed,
//! and which one answered.

use std::{collections::HashMap, time::Duration};

use super::report::{Check, CheckName};
use crate::{config::AuthMethod, config::Config};
use entra_pg_token::{
    token::ChainSource,
    token::Token,
    token::UserAssignedId,
    token::chain::{LinkOutcome, LinkTrace},
};

/// The variables that show a managed identity (App Service, Functions, Container Apps,
/// Arc).
const MANAGED_IDENTITY_SHOWN: [&str; 3] = ["IDENTITY_ENDPOINT", "MSI_ENDPOINT", "IMDS_ENDPOINT"];

/// How long the chain may take, at most, when the configuration sets no `fetch_timeout`.
const WALK_LIMIT: Duration = Duration::from_secs(60);

/// Walks the chain the pool would build from `cfg` and `env`, for `scope`.
pub(crate) async fn check(
    cfg: &Config,
    env: &HashMap<String, String>,
    scope: &str,
) -> (Check, Option<Token>) {
    let id = cfg.client_id.clone().map(UserAssignedId::ClientId);
    let chain = match cfg.auth_method {
        AuthMethod::ManagedIdentity => ChainSource::managed_identity_only(id),
        _ => ChainSource::from_env_vars(env.clone(), id),
    };
    let limit = cfg.refresh.fetch_timeout.unwrap_or(WALK_LIMIT);
    let (result, trace) = match tokio::time::timeout(limit, chain.walk(scope)).await {
        Ok(walked) => walked,
        Err(_) => {
            return (
                Check::failed(
                    CheckName::Credential,
                    format!("the credential chain gave no answer within {limit:?}"),
                    "an identity endpoint or `az` that never answers: check the identity endpoint (IDENTITY_ENDPOINT) or run `az account get-access-token` by hand",
                ),
                None,
            );
        }
    };
    let mut check = Check::new(CheckName::Credential, "");
    for link in &trace {
        check.fact(link.name, outcome_text(&link.outcome));
    }
    let answered = trace
        .iter()
        .find(|l| l.outcome == LinkOutcome::Answered)
        .map(|l| l.name);
    match (result, answered) {
        (Ok(token), Some(name)) => {
            check.found = format!("{name} answered");
            if let Some(warning) = developer_stand_in(name, env, &trace) {
                check.warn(warning);
            }
            (check, Some(token))
        }
        (Ok(token), None) => {
            check.found = "the chain answered".to_owned();
            (check, Some(token))
        }
        (Err(e), _) => {
            check.fail(
                "no credential in the chain produced a token",
                e.hint.unwrap_or_else(|| e.message.clone()),
            );
            (check, None)
        }
    }
}

/// The warning when a developer tool answered where the environment shows a managed
/// identity.
fn developer_stand_in(
    name: &str,
    env: &HashMap<String, String>,
    trace: &[LinkTrace],
) -> Option<String> {
    let var = MANAGED_IDENTITY_SHOWN
        .iter()
        .find(|k| env.get(**k).is_some_and(|v| !v.is_empty()))?;
    developer_tool(name).then(|| {
        format!(
            "{name} (a developer's sign-in) answered, though this environment shows a managed identity ({var} is set): the pool logs in as the signed-in developer, not as the app's identity{}",
            failed_before(trace)
        )
    })
}

fn developer_tool(name: &str) -> bool {
    matches!(name, "AzureCliCredential" | "AzureDeveloperCliCredential")
}

/// Why the links before the developer tool did not answer, when one failed.
fn failed_before(trace: &[LinkTrace]) -> String {
    trace
        .iter()
        .find_map(|l| match &l.outcome {
            LinkOutcome::Failed(e) => Some(format!(" ({} failed: {e})", l.name)),
            _ => None,
        })
        .unwrap_or_default()
}

fn outcome_text(o: &LinkOutcome) -> String {
    match o {
        LinkOutcome::Unavailable(why) => format!("unavailable: {why}"),
        LinkOutcome::Failed(e) => format!("failed: {e}"),
        LinkOutcome::Answered => "answered".to_owned(),
        LinkOutcome::NotTried => "not tried".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn trace() -> Vec<LinkTrace> {
        vec![
            LinkTrace {
                name: "ManagedIdentityCredential",
                outcome: LinkOutcome::Failed("connection refused".into()),
            },
            LinkTrace {
                name: "AzureCliCredential",
                outcome: LinkOutcome::Answered,
            },
        ]
    }

    #[test]
    fn a_developer_tool_standing_in_for_a_managed_identity_is_a_warning() {
        let shown = env(&[("IDENTITY_ENDPOINT", "http://x")]);
        let w = developer_stand_in("AzureCliCredential", &shown, &trace()).unwrap();
        assert!(w.contains("(IDENTITY_ENDPOINT is set)"), "{w}");
        assert!(
            w.ends_with("(ManagedIdentityCredential failed: connection refused)"),
            "{w}"
        );
        assert!(developer_stand_in("AzureDeveloperCliCredential", &shown, &[]).is_some());
        // Not a developer tool, or no managed identity shown (an empty variable is unset).
        assert!(developer_stand_in("ManagedIdentityCredential", &shown, &trace()).is_none());
        let empty = env(&[("IDENTITY_ENDPOINT", "")]);
        assert!(developer_stand_in("AzureCliCredential", &empty, &trace()).is_none());
        assert!(developer_stand_in("AzureCliCredential", &env(&[]), &trace()).is_none());
    }

    #[test]
    fn each_link_outcome_is_said() {
        assert_eq!(outcome_text(&LinkOutcome::Answered), "answered");
        assert_eq!(outcome_text(&LinkOutcome::NotTried), "not tried");
        assert_eq!(
            outcome_text(&LinkOutcome::Unavailable("why".into())),
            "unavailable: why"
        );
        assert_eq!(outcome_text(&LinkOutcome::Failed("e".into())), "failed: e");
    }
}
