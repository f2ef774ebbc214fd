//! Wiring: how a service learns where its ingresses and egresses are.
//!
//! - [`expand`](mod@expand): `$NAME`/`${NAME}` expansion with Go `os.Expand` semantics, for service
//!   `args` and container `cmd`;
//! - [`attributes`]: resolving the `${HOST}`, `${PORT}` and `${HOSTPORT}` templates in
//!   endpoint attributes at the output boundaries;
//! - [`gofmt`]: rendering attribute values like Go's `%v`, so variables match upstream;
//! - [`env`](mod@env): the environment maps given to services and hooks (`RIG_WIRING`,
//!   `RIG_TEMP_DIR`, `HOST`/`PORT`, prefixed ingress and egress variables).

pub mod attributes;
pub mod env;
pub mod expand;
pub mod gofmt;

#[cfg(test)]
mod env_tests;

pub use attributes::{
    resolve_attributes, resolve_endpoint, resolve_endpoints, EndpointError, TemplateError,
};
pub use env::{
    build_init_hook_env, build_prestart_hook_env, build_service_env, to_env_prefix, wiring_context,
    wiring_json, ServiceEnvInput, WiringError,
};
pub use expand::{expand, expand_template, expand_templates, unset_names};
pub use gofmt::{go_format_float, go_format_value};
