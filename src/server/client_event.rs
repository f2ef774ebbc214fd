//! Events posted by clients to `POST /environments/{id}/events`.
//!
//! | `type` | fields read | effect |
//! |---|---|---|
//! | `callback.response` | `service`, `request_id`, `error`, `data` | `callback.response` with `result` |
//! | `service.error` | `service`, `error` | the service fails and the environment fails with it (upstream only recorded `service.failed`) |
//! | `service.log` | `service`, `stream` (default `stdout`), `log_data` | `service.log` |
//! | `test.note` | `error` | `test.note` |
//!
//! Unknown fields are ignored; `null` reads as absent, as with Go's decoder.

use rig_types::{CallbackResponse, Event, EventType, LogStream};
use serde::{Deserialize, Deserializer};

use crate::services::config::json_kind;

/// The body of a client event, every field optional.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ClientEvent {
    #[serde(default, rename = "type", deserialize_with = "null_as_empty")]
    event_type: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    service: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    request_id: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    error: String,
    #[serde(default)]
    data: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    stream: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    log_data: String,
}

/// What to do with a client event.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Publish this event.
    Publish(Box<Event>),
    /// Fail `service` with `error` (and the environment with it).
    FailService {
        /// The failing service.
        service: String,
        /// What went wrong.
        error: String,
    },
}

/// The `type` is not one clients may post. The message starts as upstream's does, then says
/// which types are accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnknownType(pub(crate) String);

impl std::fmt::Display for UnknownType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let missing = if self.0.is_empty() {
            "the event has no \"type\"; "
        } else {
            ""
        };
        write!(
            f,
            "unknown client event type: {} ({missing}clients may post callback.response, \
             service.error, service.log or test.note)",
            self.0
        )
    }
}

impl std::error::Error for UnknownType {}

impl ClientEvent {
    /// Decodes a request body, which must be one JSON object; the error says what to send.
    pub(crate) fn decode(body: &[u8]) -> Result<ClientEvent, String> {
        let first = body.iter().find(|b| !b" \t\r\n".contains(b));
        if first != Some(&b'{') {
            // Serde would read an array as the struct's fields in order, and name the struct.
            let got = match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(value) => json_kind(&value).to_string(),
                Err(e) => format!("invalid JSON ({e})"),
            };
            return Err(format!(
                "expected a JSON object like {{\"type\": \"test.note\", \"error\": \"...\"}}, \
                 got {got}"
            ));
        }
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }

    /// The action this event asks for.
    pub(crate) fn into_action(self) -> Result<Action, UnknownType> {
        match self.event_type.as_str() {
            "callback.response" => Ok(Action::Publish(Box::new(Event {
                result: Some(Box::new(CallbackResponse {
                    request_id: self.request_id,
                    error: self.error,
                    data: self.data,
                })),
                ..Event::for_service(EventType::CallbackResponse, self.service)
            }))),
            "service.error" => Ok(Action::FailService {
                service: self.service,
                error: self.error,
            }),
            "service.log" => {
                let stream = match self.stream.as_str() {
                    "" | "stdout" => LogStream::Stdout,
                    "stderr" => LogStream::Stderr,
                    _ => LogStream::Other(self.stream),
                };
                Ok(Action::Publish(Box::new(Event::log(
                    self.service,
                    stream,
                    self.log_data,
                ))))
            }
            "test.note" => Ok(Action::Publish(Box::new(
                Event::new(EventType::TestNote).with_error(self.error),
            ))),
            _ => Err(UnknownType(self.event_type)),
        }
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn action(body: serde_json::Value) -> Result<Action, UnknownType> {
        ClientEvent::decode(body.to_string().as_bytes())
            .unwrap()
            .into_action()
    }

    #[test]
    fn callback_response_carries_the_result() {
        let Ok(Action::Publish(event)) = action(json!({
            "type": "callback.response", "service": "api", "request_id": "r1",
            "error": "boom", "data": {"k": 1}, "unknown_field": true
        })) else {
            panic!("expected an event")
        };
        assert_eq!(event.event_type, EventType::CallbackResponse);
        assert_eq!(event.service, "api");
        let result = event.result.unwrap();
        assert_eq!(result.request_id, "r1");
        assert_eq!(result.error, "boom");
        assert_eq!(result.data.unwrap()["k"], json!(1));
    }

    #[test]
    fn service_error_fails_the_service() {
        assert_eq!(
            action(json!({"type": "service.error", "service": "w", "error": "crashed"})),
            Ok(Action::FailService {
                service: "w".into(),
                error: "crashed".into()
            })
        );
    }

    #[test]
    fn service_log_defaults_to_stdout() {
        let Ok(Action::Publish(event)) =
            action(json!({"type": "service.log", "service": "w", "log_data": "a\nb"}))
        else {
            panic!("expected an event")
        };
        let log = event.log.unwrap();
        assert_eq!(log.stream, LogStream::Stdout);
        assert_eq!(log.data, "a\nb");
        let Ok(Action::Publish(event)) = action(
            json!({"type": "service.log", "service": "w", "stream": "stderr", "log_data": "x"}),
        ) else {
            panic!("expected an event")
        };
        assert_eq!(event.log.unwrap().stream, LogStream::Stderr);
    }

    #[test]
    fn test_note_has_no_service() {
        let Ok(Action::Publish(event)) =
            action(json!({"type": "test.note", "service": "ignored", "error": "x_test.go:3: bad"}))
        else {
            panic!("expected an event")
        };
        assert_eq!(event.event_type, EventType::TestNote);
        assert_eq!(event.service, "");
        assert_eq!(event.error, "x_test.go:3: bad");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_as_such() {
        for (body, got) in [
            ("[]", "an array"),
            (" [{\"type\": \"test.note\"}]", "an array"),
            ("\"test.note\"", "a string"),
            ("3", "a number"),
            ("null", "null"),
            (
                "",
                "invalid JSON (EOF while parsing a value at line 1 column 0)",
            ),
        ] {
            assert_eq!(
                ClientEvent::decode(body.as_bytes()).unwrap_err(),
                format!(
                    "expected a JSON object like {{\"type\": \"test.note\", \"error\": \"...\"}}, \
                     got {got}"
                ),
                "{body:?}"
            );
        }
        assert!(ClientEvent::decode(b"\n {\"type\": \"test.note\"}").is_ok());
    }

    #[test]
    fn unknown_and_missing_types_are_rejected() {
        assert_eq!(
            action(json!({"type": "environment.up"}))
                .unwrap_err()
                .to_string(),
            "unknown client event type: environment.up (clients may post callback.response, service.error, service.log or test.note)"
        );
        assert_eq!(
            action(json!({})).unwrap_err().to_string(),
            "unknown client event type:  (the event has no \"type\"; clients may post callback.response, service.error, service.log or test.note)"
        );
        assert_eq!(
            action(json!({"type": null})).unwrap_err(),
            UnknownType(String::new())
        );
    }

    #[test]
    fn wrong_field_types_fail_to_decode() {
        assert!(ClientEvent::decode(br#"{"type": 5}"#).is_err());
        assert!(ClientEvent::decode(br#"{"type": "callback.response", "data": [1]}"#).is_err());
        assert!(ClientEvent::decode(b"").is_err());
    }
}
