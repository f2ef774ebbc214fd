//! Handlers of the environment resource: create, list, inspect, keep alive, delete.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::resolved::resolve_environment;
use super::response::{json, ApiError};
use super::state::{AppState, CreateError};
use crate::orchestrator::OrchestrateError;
use crate::services::config_warnings;
use crate::spec::{decode_environment_noting_unknown, unknown_field_warning, validate_environment};

/// `POST /environments`: decode, validate and create an environment; it starts in the
/// background and the client follows it on the event stream.
pub(crate) async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::body("read body", &e))?;
    let (mut env, unknown) = decode_environment_noting_unknown(&body)
        .map_err(|e| ApiError::bad_request(format!("decode: {e}")))?;
    let errors = validate_environment(&mut env);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let instance = state.create(env).map_err(|e| match e {
        CreateError::ShuttingDown => ApiError::shutting_down(),
        // The spec asks for what this rigd cannot do (a type without a driver, a config
        // that does not say what to build): the client's to fix, as a validation error.
        CreateError::Orchestrate(
            e @ (OrchestrateError::UnknownType { .. }
            | OrchestrateError::Hooks { .. }
            | OrchestrateError::Artifacts { .. }),
        ) => ApiError::validation(vec![e.to_string()]),
        e @ CreateError::Orchestrate(_) => ApiError::internal(e.to_string()),
    })?;
    #[derive(Serialize)]
    struct Created<'a> {
        id: &'a str,
        /// What the client may want fixed in the spec: fields rigd ignored (rig-rs addition).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    }
    let mut warnings: Vec<String> = unknown
        .iter()
        .map(|path| unknown_field_warning(path))
        .collect();
    warnings.extend(config_warnings(instance.spec()));
    Ok(json(
        StatusCode::CREATED,
        &Created {
            id: instance.id(),
            warnings,
        },
    ))
}

/// One entry of `GET /environments`.
#[derive(Debug, Serialize)]
pub(crate) struct EnvironmentSummary {
    /// Instance id.
    pub(crate) id: String,
    /// Environment name.
    pub(crate) name: String,
    /// The spec's `ttl`, omitted when the default applies.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) ttl: String,
    /// Time left before the TTL expires, whole seconds, as a Go duration.
    pub(crate) remaining_ttl: String,
    /// Sorted names of the non-injected services.
    pub(crate) services: Vec<String>,
    /// `destroying` while being torn down, `abandoned` while the client that owned it is
    /// gone and rigd is about to end it (rig-rs addition; omitted otherwise).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) status: &'static str,
}

/// What [`EnvironmentSummary::status`] says of an environment being torn down.
const STATUS_DESTROYING: &str = "destroying";
/// What [`EnvironmentSummary::status`] says of an environment whose owner went away: rigd
/// ends it once the orphan grace has passed.
const STATUS_ABANDONED: &str = "abandoned";

/// `GET /environments`: every registered environment, then those being torn down (by DELETE,
/// TTL expiry, orphaning or shutdown) with `"status": "destroying"`, sorted by name (then
/// id). Upstream lists only the former.
pub(crate) async fn list(State(state): State<AppState>) -> Response {
    let listed = state.entries().into_iter().map(|e| {
        let status = if e.owners().abandoned() {
            STATUS_ABANDONED
        } else {
            ""
        };
        (e, status)
    });
    let ending = state
        .ending_entries()
        .into_iter()
        .map(|e| (e, STATUS_DESTROYING));
    let mut out: Vec<EnvironmentSummary> = listed
        .chain(ending)
        .map(|(entry, status)| {
            let instance = entry.instance();
            EnvironmentSummary {
                id: instance.id().to_string(),
                name: instance.name().to_string(),
                ttl: entry.ttl().spec_text().to_string(),
                remaining_ttl: entry.ttl().remaining_text(),
                // BTreeMap keys: already sorted.
                services: instance
                    .spec()
                    .services
                    .iter()
                    .filter(|(_, s)| !s.injected)
                    .map(|(name, _)| name.clone())
                    .collect(),
                status,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    json(StatusCode::OK, &out)
}

/// `GET /environments/{id}`: the resolved view (statuses, ingresses, egresses).
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let entry = state.get(&id).ok_or_else(ApiError::environment_not_found)?;
    let instance = entry.instance();
    let view = resolve_environment(
        instance.id(),
        instance.spec(),
        &instance.log().lifecycle_events(),
    )
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json(StatusCode::OK, &view))
}

/// `POST /environments/{id}/keepalive`: pushes the TTL deadline out by one TTL from now.
pub(crate) async fn keepalive(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if state.keepalive(&id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::environment_not_found())
    }
}

/// Query parameters of `DELETE /environments/{id}`. Exact string comparison, as upstream:
/// anything but `true` is false.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DeleteParams {
    /// `preserve=true`: keep the environment directory.
    pub(crate) preserve: bool,
    /// `reason=...`: why the environment ends (`test_failed` marks the log outcome).
    pub(crate) reason: String,
    /// `log=true`: write the log files.
    pub(crate) log: bool,
}

impl DeleteParams {
    /// Reads the parameters; for a repeated key the first value wins (Go's `Query().Get`).
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> DeleteParams {
        let first = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        DeleteParams {
            preserve: first("preserve") == Some("true"),
            reason: first("reason").unwrap_or("").to_string(),
            log: first("log") == Some("true"),
        }
    }
}

/// `DELETE /environments/{id}`: removes the environment, tears it down and waits for it;
/// with `log=true` also writes its log files (a file that could not be written is left out and
/// the error given in `log_error`) and gives the summary.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) =
        query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let params = DeleteParams::from_pairs(&pairs);
    let destroyed = state
        .destroy(&id, params.preserve, params.reason, params.log)
        .await
        .ok_or_else(ApiError::environment_not_found)?;
    let instance = &destroyed.instance;
    let logs = destroyed.logs.as_ref();
    Ok(json(
        StatusCode::OK,
        &DeleteResponse {
            id: instance.id(),
            status: "destroyed",
            env_dir: instance.env_dir().display().to_string(),
            log_file: logs
                .and_then(|l| l.jsonl.as_ref())
                .map(|p| p.display().to_string()),
            log_file_pretty: logs
                .and_then(|l| l.pretty.as_ref())
                .map(|p| p.display().to_string()),
            summary: logs.map_or("", |l| l.summary.as_str()),
            log_error: logs.and_then(|l| l.error.as_deref()),
        },
    ))
}

/// The body of a successful `DELETE /environments/{id}`.
#[derive(Debug, Serialize)]
struct DeleteResponse<'a> {
    id: &'a str,
    /// Always `destroyed`.
    status: &'a str,
    /// The environment directory, even when already removed.
    env_dir: String,
    /// The JSONL log, when `log=true` and writing succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    log_file: Option<String>,
    /// The pretty timeline, when `log=true` and writing succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    log_file_pretty: Option<String>,
    /// The condensed explanation of a failed run; omitted when empty.
    #[serde(skip_serializing_if = "str::is_empty")]
    summary: &'a str,
    /// Why a log file could not be written, when `log=true` (rig-rs addition).
    #[serde(skip_serializing_if = "Option::is_none")]
    log_error: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn delete_params_use_exact_comparison() {
        assert_eq!(DeleteParams::from_pairs(&[]), DeleteParams::default());
        assert_eq!(
            DeleteParams::from_pairs(&pairs(&[
                ("preserve", "true"),
                ("reason", "test_failed"),
                ("log", "true")
            ])),
            DeleteParams {
                preserve: true,
                reason: "test_failed".into(),
                log: true
            }
        );
        let loose = DeleteParams::from_pairs(&pairs(&[("preserve", "TRUE"), ("log", "1")]));
        assert!(!loose.preserve && !loose.log);
        let repeated =
            DeleteParams::from_pairs(&pairs(&[("preserve", "no"), ("preserve", "true")]));
        assert!(!repeated.preserve);
    }
}
