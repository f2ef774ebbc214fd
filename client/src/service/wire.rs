//! Turning builders into the spec rigd receives, plus the callbacks the SDK must answer.

use std::collections::{BTreeMap, HashMap};

use rig_types::{ClientFuncSpec, GoDuration, HookSpec, Hooks, Protocol, ReadySpec};
use serde_json::Value;

use super::hooks::{hook_name, start_name, ClientFn, Handler, InitHook, Phase};
use super::Service;
use crate::environment::RIGD_CALLBACK_MARGIN;
use crate::error::{Error, Result};

/// The wire form of a set of services.
pub(crate) struct ServiceParts {
    /// `services` of the spec.
    pub(crate) services: BTreeMap<String, rig_types::Service>,
    /// Callback name → what to run.
    pub(crate) handlers: HashMap<String, Handler>,
    /// Variables set with [`Service::env`] that go into `host_env`.
    pub(crate) env: BTreeMap<String, String>,
}

/// Converts the services, naming every hook and in-test service, and checks what can be
/// checked before rigd sees the spec: builder misuse, duplicate names, `.env` conflicts.
pub(crate) fn build_services(services: Vec<(String, Service)>) -> Result<ServiceParts> {
    let mut parts = ServiceParts {
        services: BTreeMap::new(),
        handlers: HashMap::new(),
        env: BTreeMap::new(),
    };
    let mut env_owner: BTreeMap<String, String> = BTreeMap::new();
    for (name, service) in services {
        if parts.services.contains_key(&name) {
            return Err(Error::InvalidService {
                service: name,
                reason: "defined twice; service names must be unique".into(),
            });
        }
        for (key, value) in &service.env {
            match parts.env.get(key) {
                Some(existing) if existing != value => {
                    return Err(Error::EnvConflict {
                        variable: key.clone(),
                        first: env_owner.get(key).cloned().unwrap_or_default(),
                        second: name.clone(),
                    })
                }
                _ => {
                    parts.env.insert(key.clone(), value.clone());
                    env_owner.entry(key.clone()).or_insert_with(|| name.clone());
                }
            }
        }
        let wire = to_wire(&name, service, &mut parts.handlers)?;
        parts.services.insert(name, wire);
    }
    Ok(parts)
}

/// A `client_func` hook calling back `name`.
fn client_hook(name: String) -> HookSpec {
    HookSpec {
        hook_type: "client_func".into(),
        client_func: Some(ClientFuncSpec { name }),
        config: None,
        timeout: Default::default(),
    }
}

fn to_wire(
    name: &str,
    mut service: Service,
    handlers: &mut HashMap<String, Handler>,
) -> Result<rig_types::Service> {
    if let Some(path) = service.ready_path.take() {
        let mut applied = false;
        for ingress in service.ingresses.values_mut() {
            if ingress.protocol == Protocol::Http {
                ingress.ready.get_or_insert_with(ReadySpec::default).path = path.clone();
                applied = true;
            }
        }
        if !applied {
            service.problem(format!(
                ".ready_path({path:?}) needs an HTTP ingress, and this service has none"
            ));
        }
    }
    if let Some(timeout) = service.ready_timeout.take() {
        for ingress in service.ingresses.values_mut() {
            ingress.ready.get_or_insert_with(ReadySpec::default).timeout =
                GoDuration::from_std(timeout);
        }
    }
    if !service.problems.is_empty() {
        return Err(Error::InvalidService {
            service: name.to_string(),
            reason: service.problems.join("; "),
        });
    }

    let timeout = service.hook_timeout;
    let mut register = |phase: Phase, hooks: Vec<ClientFn>| -> Vec<HookSpec> {
        hooks
            .into_iter()
            .enumerate()
            .map(|(i, run)| {
                let callback = hook_name(name, phase, i + 1);
                handlers.insert(
                    callback.clone(),
                    Handler::Hook {
                        service: name.to_string(),
                        phase,
                        timeout,
                        run,
                    },
                );
                client_hook(callback)
            })
            .collect()
    };
    let prestart = register(Phase::Prestart, std::mem::take(&mut service.prestart));
    // Init hooks keep their order: client hooks are numbered among themselves.
    let mut init = Vec::new();
    let mut client_hooks = 0;
    for hook in std::mem::take(&mut service.init) {
        match hook {
            InitHook::Client(run) => {
                client_hooks += 1;
                let callback = hook_name(name, Phase::Init, client_hooks);
                handlers.insert(
                    callback.clone(),
                    Handler::Hook {
                        service: name.to_string(),
                        phase: Phase::Init,
                        timeout,
                        run,
                    },
                );
                init.push(client_hook(callback));
            }
            InitHook::Server { hook_type, config } => init.push(HookSpec {
                hook_type: hook_type.into(),
                client_func: None,
                config: Some(config),
                timeout: Default::default(),
            }),
        }
    }
    let mut prestart = prestart;
    if let Some(timeout) = timeout {
        for hook in prestart.iter_mut().chain(init.iter_mut()) {
            // rigd waits a little longer for the hooks the test runs, so the SDK, which names
            // the hook, is the one to report an overrun.
            let limit = match hook.client_func {
                Some(_) => timeout.saturating_add(RIGD_CALLBACK_MARGIN),
                None => timeout,
            };
            hook.timeout = GoDuration::from_std(limit);
        }
    }
    let hooks = (!prestart.is_empty() || !init.is_empty()).then_some(Hooks { prestart, init });

    if let Some(run) = service.start.take() {
        let callback = start_name(name);
        service
            .config
            .insert("start_handler".into(), Value::String(callback.clone()));
        handlers.insert(
            callback,
            Handler::Start {
                service: name.to_string(),
                run,
            },
        );
    }
    let config = match service.raw_config {
        Some(raw) => Some(raw),
        None if service.config.is_empty() => None,
        None => Some(Value::Object(service.config)),
    };
    Ok(rig_types::Service {
        service_type: service.service_type,
        config,
        args: service.args,
        ingresses: service.ingresses,
        egresses: service.egresses,
        hooks,
        injected: false,
    })
}
