//! The fake `az` and `azd` commands: bash scripts that ask the emulator's identity
//! endpoint over bash's `/dev/tcp`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Error;

/// The fake `az` and `azd`: bash, talking HTTP/1.0 to the emulator over bash's /dev/tcp.
pub(crate) fn write_az(dir: &Path, port: u16) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io("cannot create the az directory", e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("cannot chmod the az directory", e))?;
    for (name, template) in [("az", AZ_SCRIPT), ("azd", AZD_SCRIPT)] {
        let p = dir.join(name);
        fs::write(&p, template.replace("@PORT@", &port.to_string()))
            .map_err(|e| Error::io(format!("cannot write {name}"), e))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(format!("cannot chmod {name}"), e))?;
    }
    Ok(())
}

const AZD_SCRIPT: &str = r#"#!/usr/bin/env bash
# Fake Azure Developer CLI written by entra-emulator: supports
# `azd auth token -o json --no-prompt --scope S [--tenant-id T]` as AzureDeveloperCliCredential
# runs it, for the user `az` is logged in as (`az logout` logs azd out too). Talks to the
# emulator on 127.0.0.1:@PORT@.
set -u
if [ "${1:-}" = "version" ] || [ "${1:-}" = "--version" ]; then
  echo "azd version 1.11.0 (entra-emulator)"; exit 0
fi
fail() {
  printf '{"type":"consoleMessage","timestamp":"%s","data":{"message":"\\nERROR: %s\\n"}}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" >&2
  exit 1
}
if [ "${1:-}" != "auth" ] || [ "${2:-}" != "token" ]; then
  echo "ERROR: entra-emulator's azd only implements 'azd auth token'" >&2; exit 2
fi
shift 2
scope=""; tenant=""
while [ $# -gt 0 ]; do
  case "$1" in
    --scope) scope="${2:-}"; shift 2 || shift ;;
    --tenant-id) tenant="${2:-}"; shift 2 || shift ;;
    *) shift ;;
  esac
done
exec 3<>"/dev/tcp/127.0.0.1/@PORT@" || fail "cannot reach entra-emulator on 127.0.0.1:@PORT@ (is it running?)"
printf 'GET /cli/token HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Az-Scope: %s\r\nX-Az-Resource: \r\nX-Az-Tenant: %s\r\n\r\n' \
  "$scope" "$tenant" >&3
IFS= read -r status <&3 || fail "fetching token: no answer from entra-emulator"
code=$(printf '%s' "$status" | cut -d' ' -f2)
while IFS= read -r line <&3; do line="${line%$'\r'}"; [ -z "$line" ] && break; done
body=$(cat <&3)
exec 3<&-
case "$code" in
  200) ;;
  401) fail 'not logged in, run `azd auth login` to login' ;;
  *) fail "fetching token: $(printf '%s' "$body" | sed -e 's/^ERROR: //' | tr -d '\n"')" ;;
esac
token=$(printf '%s' "$body" | sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')
exp=$(printf '%s' "$body" | sed -n 's/.*"expires_on":\([0-9]*\).*/\1/p')
printf '{"token":"%s","expiresOn":"%s"}\n' "$token" "$(date -u -d "@$exp" +%Y-%m-%dT%H:%M:%SZ)"
"#;

const AZ_SCRIPT: &str = r#"#!/usr/bin/env bash
# Fake Azure CLI written by entra-emulator: supports `az account get-access-token`
# (--scope/--scopes, --resource, --resource-type oss-rdbms, --tenant, --query accessToken -o tsv),
# `az account show`, and `az login` / `az logout` (which switch the logged-out fault). Talks to the emulator on 127.0.0.1:@PORT@.
set -u
if [ "${1:-}" = "--version" ] || [ "${1:-}" = "version" ]; then
  echo "azure-cli                         2.67.0 (entra-emulator)"; exit 0
fi
case "${1:-}" in
  login) path="/cli/login" ;;
  logout) path="/cli/logout" ;;
  account) path="" ;;
  *) echo "ERROR: entra-emulator's az only implements 'az account get-access-token', 'az account show', 'az login' and 'az logout'" >&2; exit 2 ;;
esac
if [ -n "$path" ]; then
  if ! exec 3<>"/dev/tcp/127.0.0.1/@PORT@"; then
    echo "ERROR: cannot reach entra-emulator on 127.0.0.1:@PORT@ (is it running?)" >&2; exit 1
  fi
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
  IFS= read -r status <&3 || exit 1
  while IFS= read -r line <&3; do line="${line%$'\r'}"; [ -z "$line" ] && break; done
  body=$(cat <&3)
  [ -n "$body" ] && printf '%s\n' "$body"
  exit 0
fi
sub="${2:-}"; shift 2 2>/dev/null || shift $#
scope=""; resource=""; tenant=""; query=""; output="json"
while [ $# -gt 0 ]; do
  case "$1" in
    --scope|--scopes) scope="${2:-}"; shift 2 || shift ;;
    --resource) resource="${2:-}"; shift 2 || shift ;;
    --resource-type)
      case "${2:-}" in
        oss-rdbms) resource="https://ossrdbms-aad.database.windows.net" ;;
        arm) resource="https://management.core.windows.net/" ;;
        ms-graph) resource="https://graph.microsoft.com/" ;;
        *) resource="${2:-}" ;;
      esac
      shift 2 || shift ;;
    --tenant|-t) tenant="${2:-}"; shift 2 || shift ;;
    --query) query="${2:-}"; shift 2 || shift ;;
    -o|--output) output="${2:-}"; shift 2 || shift ;;
    *) shift ;;
  esac
done
case "$sub" in
  get-access-token) path="/cli/token" ;;
  show) path="/cli/token"; scope="" ; resource="" ;;
  *) echo "ERROR: 'az account $sub' is not implemented by entra-emulator" >&2; exit 2 ;;
esac
if ! exec 3<>"/dev/tcp/127.0.0.1/@PORT@"; then
  echo "ERROR: cannot reach entra-emulator on 127.0.0.1:@PORT@ (is it running?)" >&2; exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Az-Scope: %s\r\nX-Az-Resource: %s\r\nX-Az-Tenant: %s\r\n\r\n' \
  "$path" "$scope" "$resource" "$tenant" >&3
IFS= read -r status <&3 || { echo "ERROR: no answer from entra-emulator" >&2; exit 1; }
code=$(printf '%s' "$status" | cut -d' ' -f2)
while IFS= read -r line <&3; do
  line="${line%$'\r'}"
  [ -z "$line" ] && break
done
body=$(cat <&3)
exec 3<&-
if [ "$code" != "200" ]; then
  if [ -z "$body" ]; then body="ERROR: entra-emulator answered $code"; fi
  printf '%s\n' "$body" >&2
  exit 1
fi
if [ "$sub" = "show" ]; then
  tenant_id=$(printf '%s' "$body" | sed -n 's/.*"tenant":"\([^"]*\)".*/\1/p')
  subscription=$(printf '%s' "$body" | sed -n 's/.*"subscription":"\([^"]*\)".*/\1/p')
  printf '{"id":"%s","tenantId":"%s","name":"entra-emulator","state":"Enabled","isDefault":true}\n' "$subscription" "$tenant_id"
  exit 0
fi
if [ -n "$query" ]; then
  key="${query#[}"; key="${key%]}"
  value=$(printf '%s' "$body" | sed -n "s/.*\"$key\":\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p")
  if [ "$output" = "tsv" ] || [ "$output" = "none" ]; then printf '%s\n' "$value"; else printf '"%s"\n' "$value"; fi
  exit 0
fi
printf '%s\n' "$body"
"#;
