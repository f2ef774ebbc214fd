//! `GET /health`: liveness, plus (rig-rs additions) which rigd answers and which API it
//! speaks, so clients can tell an incompatible server from a broken one.

use serde::{Deserialize, Serialize};

/// The API version this build of rig-rs speaks. A client and a rigd work together when
/// they speak the same one; it changes only with an incompatible change to the wire
/// protocol (routes, spec, events), never with an additive one.
pub const API_VERSION: u32 = 1;

/// The body of `GET /health`: `{"status":"ok","version":"0.1.0","api":1}`. Upstream rigd
/// answers only `{"status":"ok"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// rigd's version (rig-rs addition; empty from upstream rigd).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The API version rigd speaks (rig-rs addition; absent from upstream rigd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<u32>,
}

impl Health {
    /// This build's own health body.
    pub fn current(version: &str) -> Health {
        Health {
            status: "ok".into(),
            version: version.into(),
            api: Some(API_VERSION),
        }
    }

    /// Why a client speaking [`API_VERSION`] cannot use this rigd, if it cannot. A rigd
    /// that states no API version (upstream rigd) is accepted: the wire protocol is
    /// upstream's.
    pub fn incompatibility(&self) -> Option<String> {
        match self.api {
            Some(api) if api != API_VERSION => {
                let version = if self.version.is_empty() {
                    String::new()
                } else {
                    format!(" {}", self.version)
                };
                Some(format!(
                    "rigd{version} speaks API v{api}, this client speaks v{API_VERSION}"
                ))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_and_rig_rs_bodies_decode() {
        let upstream: Health = serde_json::from_str(r#"{"status":"ok"}"#).unwrap();
        assert_eq!(upstream.api, None);
        assert_eq!(upstream.incompatibility(), None);
        let ours = Health::current("0.1.0");
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            format!(r#"{{"status":"ok","version":"0.1.0","api":{API_VERSION}}}"#)
        );
        assert_eq!(ours.incompatibility(), None);
    }

    #[test]
    fn another_api_version_is_incompatible() {
        let newer = Health {
            api: Some(API_VERSION + 1),
            ..Health::current("9.0.0")
        };
        assert_eq!(
            newer.incompatibility().unwrap(),
            format!(
                "rigd 9.0.0 speaks API v{}, this client speaks v{API_VERSION}",
                API_VERSION + 1
            )
        );
    }
}
