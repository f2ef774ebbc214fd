//! JSON responses and the API error type.
//!
//! Every JSON body rigd returns goes through [`json`]: `Content-Type: application/json`, compact
//! JSON and a trailing newline (what Go's `json.Encoder` writes, so byte-level comparisons with
//! upstream keep working). Every error goes through [`ApiError`], whose body is
//! `{"error": "<message>"}` plus, for spec validation failures, `validation_errors`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A JSON response with the given status.
///
/// Serialising the value cannot fail for the types rigd returns (no maps with non-string keys);
/// if it ever does, the client gets a 500 that says so instead of a panic.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response()
        }
        Err(e) => ApiError::internal(format!("encode response: {e}")).into_response(),
    }
}

/// An error answered as `{"error": "<message>"}` with a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    validation_errors: Option<Vec<String>>,
}

/// The wire shape of an error body.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    validation_errors: Option<&'a [String]>,
}

impl ApiError {
    /// An error with the given status and message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            validation_errors: None,
        }
    }

    /// The status code.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The message (the `error` field).
    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// 400 Bad Request.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The body could not be read: 413 with the limit when it is over
    /// [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES), else 400; `what` says what was being done.
    pub(crate) fn body(
        what: &str,
        rejection: &axum::extract::rejection::BytesRejection,
    ) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{what}: the body is over the {} MiB rigd accepts",
                    super::MAX_BODY_BYTES >> 20
                ),
            );
        }
        ApiError::bad_request(format!("{what}: {}", rejection.body_text()))
    }

    /// 404 `environment not found`, the answer for an unknown id on every `{id}` route.
    pub(crate) fn environment_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "environment not found")
    }

    /// 422 `spec validation failed` listing every validation error.
    pub(crate) fn validation(errors: Vec<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "spec validation failed".to_string(),
            validation_errors: Some(errors),
        }
    }

    /// 500 Internal Server Error.
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503 Service Unavailable (rigd is shutting down).
    pub(crate) fn shutting_down() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "rigd is shutting down; retry against a new rigd",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.message,
            validation_errors: self.validation_errors.as_deref(),
        };
        match serde_json::to_vec(&body) {
            Ok(mut bytes) => {
                bytes.push(b'\n');
                (
                    self.status,
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    bytes,
                )
                    .into_response()
            }
            // Unreachable for a struct of strings; answer without a body rather than panic.
            Err(_) => self.status.into_response(),
        }
    }
}
