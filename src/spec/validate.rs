//! Spec validation: every rule violation of an environment, in a deterministic order.
//!
//! The order is upstream's: environment rules (name, services, ttl), then each service in
//! sorted name order (type, ingresses by name, egresses by name), then at most one cycle
//! error. The messages of upstream's rules are upstream's, byte for byte; clients and tests
//! match on them.
//!
//! Rules rigd adds, reported with the service they concern:
//! * service, ingress and egress names must not be empty;
//! * names must not contain `~`, which rigd reserves for the names it generates (`~test`, its
//!   egresses `api~grpc`, proxy nodes `db~proxy~api`);
//! * a service name names a directory (and usually an egress), and ingress and egress names
//!   name environment variables, so names are made of ASCII letters, digits, `-` and `_`,
//!   start with a letter or digit and are at most 63 characters long; two ingresses (or two
//!   egresses) of a service must not give the same variables (`a-b` and `a_b`);
//! * `callback_timeout`, `ready.timeout`, `ready.interval` and a hook's `timeout` must not be
//!   negative (they fell back to their defaults, as if left out);
//! * `ready.type` must be one of [`READY_TYPES`] (upstream reads any other value, a typo such as
//!   `htpp` included, as a TCP check, and then ignores `ready.path`);
//! * ingress attribute templates may only use `${HOST}`, `${PORT}` and `${HOSTPORT}` (upstream
//!   finds out when it resolves them, after the service started);
//! * `injected: true` is reserved for those generated nodes. Upstream lets a client send it,
//!   which silently turns a real service into a virtual one (no `~test` edge, hidden from
//!   listings). A node that is exactly what rigd generates (`~test` of type `test`, or a
//!   `proxy` whose name contains `~proxy~`) passes, and is exempt from the `~` rules, so a
//!   transformed spec still validates;
//! * ingress attribute keys and string values, and the `config.env` maps of the types that
//!   run a process ([`ENV_CONFIG_TYPES`]), become environment variables: a name must not be
//!   empty nor hold `=` or NUL, and a value must not hold NUL (no process can be given them);
//! * an environment has at most [`MAX_INGRESSES`] ingresses (each takes a port, one more per
//!   edge in observe mode);
//! * no egress may name `~test`: it stands for the test, which serves nothing (rigd replaces
//!   a `~test` node a spec brings with its own, which depends on every service, so such an
//!   egress would be a cycle that holds the environment until its ttl).

use rig_types::{Environment, GoDuration, Service};

use super::defaults::resolve_defaults;
use super::go_quote;
use super::transform::TEST_NODE;
use crate::ready::READY_TYPES;
use crate::wiring::env::to_env_prefix;

/// Every service type a spec may name: upstream's set plus `cargo`.
///
/// `script` and `custom` are accepted here as upstream does, but no driver implements them,
/// so creating such an environment is refused (422, as a validation error).
pub const KNOWN_SERVICE_TYPES: &[&str] = &[
    "container",
    "process",
    "script",
    "go",
    "client",
    "postgres",
    "temporal",
    "redis",
    "s3",
    "sqs",
    "kafka",
    "custom",
    "proxy",
    "test",
    "cargo",
];

/// The service types whose config takes an `env` map for the service's process.
const ENV_CONFIG_TYPES: &[&str] = &["process", "go", "cargo", "container"];

/// The most ingresses an environment may have. Each takes a port (and another per edge in
/// observe mode), from candidates every environment of the machine shares.
const MAX_INGRESSES: usize = 1000;

/// Resolves egress defaults (see [`resolve_defaults`]) and returns every validation error,
/// in upstream's order. An empty vector means the spec is valid.
pub fn validate_environment(env: &mut Environment) -> Vec<String> {
    resolve_defaults(env);
    let mut errors = Vec::new();
    environment_rules(env, &mut errors);
    for (name, service) in &env.services {
        service_rules(env, name, service, &mut errors);
    }
    if let Some(cycle) = find_cycle(env) {
        errors.push(format!("cycle detected: {}", cycle.join(" \u{2192} ")));
    }
    errors
}

/// Name, at least one service, a positive ttl, and a callback timeout that is not negative.
fn environment_rules(env: &Environment, errors: &mut Vec<String>) {
    if env.name.is_empty() {
        errors.push("environment name is required".to_string());
    }
    if env.services.is_empty() {
        errors.push("environment must have at least one service".to_string());
    }
    if !env.ttl.is_empty() {
        match GoDuration::parse(&env.ttl) {
            Err(e) => errors.push(format!("invalid ttl {}: {e}", go_quote(&env.ttl))),
            Ok(d) if d.as_nanos() <= 0 => {
                errors.push(format!("ttl must be positive, got {}", go_quote(&env.ttl)));
            }
            Ok(_) => {}
        }
    }
    for (name, value) in &env.host_env {
        if name.contains(['=', '\0']) || value.contains('\0') {
            errors.push(format!(
                "host_env {}: a variable's name must not hold \"=\" or NUL (\\u0000), nor its \
                 value NUL: no process can be given it; remove it",
                go_quote(name)
            ));
        }
    }
    // The spec's own; the nodes rigd generates (a transformed spec) have more, and are its
    // to mind.
    let ingresses: usize = env
        .services
        .iter()
        .filter(|(name, service)| !is_generated_node(name, service))
        .map(|(_, service)| service.ingresses.len())
        .sum();
    if ingresses > MAX_INGRESSES {
        errors.push(format!(
            "environment has {ingresses} ingresses, over the {MAX_INGRESSES} one environment \
             may have (each takes a port); split it into smaller environments"
        ));
    }
    if env.callback_timeout.to_std().is_none() {
        errors.push(format!(
            "callback_timeout must not be negative, got {} (leave it out for the default)",
            env.callback_timeout
        ));
    }
}

/// True for a node exactly as rigd inserts it: `~test` of type `test`, or a proxy node.
fn is_generated_node(name: &str, service: &Service) -> bool {
    service.injected
        && ((name == TEST_NODE && service.service_type == "test")
            || (service.service_type == "proxy" && name.contains("~proxy~")))
}

/// The rules of one service: names, type, ingresses, egresses.
fn service_rules(env: &Environment, name: &str, service: &Service, errors: &mut Vec<String>) {
    let svc = go_quote(name);
    let generated = is_generated_node(name, service);

    if name.is_empty() {
        errors.push(
            "service \"\": name must not be empty; give every service a non-empty name".to_string(),
        );
    }
    if !generated && name.contains('~') {
        errors.push(format!(
            "service {svc}: name must not contain \"~\", which rigd reserves for the nodes it \
             generates (\"~test\", proxies); rename the service"
        ));
    }
    if !generated {
        if let Some(problem) = name_problem(name) {
            errors.push(format!(
                "service {svc}: name {problem} (it names the service's directory); rename the \
                 service"
            ));
        }
    }
    if service.injected && !generated {
        errors.push(format!(
            "service {svc}: \"injected\" is reserved for the nodes rigd inserts itself \
             (\"~test\", proxies); remove it from the spec"
        ));
    }

    if service.service_type.is_empty() {
        errors.push(format!("service {svc}: type is required"));
    } else if !KNOWN_SERVICE_TYPES.contains(&service.service_type.as_str()) {
        errors.push(format!(
            "service {svc}: unknown type {}{}",
            go_quote(&service.service_type),
            service_type_hint(&service.service_type)
        ));
    } else if !generated {
        if let Some(problem) = reserved_type_problem(service) {
            errors.push(format!("service {svc}: {problem}"));
        }
    }

    for (i, arg) in service.args.iter().enumerate() {
        if arg.contains('\0') {
            errors.push(format!(
                "service {svc}: args[{i}] contains a NUL character (\\u0000), which no program \
                 can be given; remove it"
            ));
        }
    }

    for (ingress_name, ingress) in &service.ingresses {
        let at = format!("service {svc}, ingress {}", go_quote(ingress_name));
        if ingress_name.is_empty() {
            errors.push(format!(
                "{at}: name must not be empty; name the ingress (\"default\" for the main one)"
            ));
        }
        if !generated && ingress_name.contains('~') {
            errors.push(format!(
                "{at}: name must not contain \"~\", which separates service and ingress in the \
                 names rigd generates; rename the ingress"
            ));
        }
        if !generated {
            if let Some(problem) = name_problem(ingress_name) {
                errors.push(format!(
                    "{at}: name {problem} (it names environment variables); rename the ingress"
                ));
            }
        }
        for (key, value) in ingress.attributes.iter().flatten() {
            if let Some(problem) = variable_problem(key, value.as_str()) {
                errors.push(format!(
                    "{at}: attribute {}: {problem} (it names an environment variable)",
                    go_quote(key)
                ));
            }
        }
        // Templates are resolved when the address is known; a typo would only show then, and
        // in every view of the environment after.
        if let Err(error) =
            crate::wiring::attributes::resolve_attributes(ingress.attributes.as_ref(), "host:1")
        {
            errors.push(format!("{at}: {error}"));
        }
        if let Some(ready) = &ingress.ready {
            if let Some(problem) = ready_type_problem(&ready.probe_type) {
                errors.push(format!("{at}: {problem}"));
            }
            for (field, value) in [("timeout", ready.timeout), ("interval", ready.interval)] {
                if value.to_std().is_none() {
                    errors.push(format!(
                        "{at}: ready.{field} must not be negative, got {value} (leave it out for \
                         the default)"
                    ));
                }
            }
        }
        if let Some(path) = ingress.ready.as_ref().map(|r| r.path.as_str()) {
            // Probed as `GET <path>` (a `/` is put in front when missing): a path that is not
            // a valid request target would fail every probe until the readiness timeout.
            let target = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            };
            if http::uri::PathAndQuery::try_from(target.as_str()).is_err() {
                errors.push(format!(
                    "{at}: ready.path {} is not a valid HTTP request path (spaces and control \
                     characters must be percent-encoded)",
                    go_quote(path)
                ));
            }
        }
        if !ingress.protocol.is_valid() {
            errors.push(format!(
                "{at}: invalid protocol {} (must be one of: tcp, http, grpc, kafka)",
                go_quote(ingress.protocol.as_str())
            ));
        }
    }

    if ENV_CONFIG_TYPES.contains(&service.service_type.as_str()) {
        let env_map = service.config.as_ref().and_then(|c| c.get("env"));
        // In name order, whatever order the spec wrote them in.
        let mut vars: Vec<_> = env_map
            .and_then(|e| e.as_object())
            .into_iter()
            .flatten()
            .collect();
        vars.sort_unstable_by_key(|(var, _)| *var);
        for (var, value) in vars {
            if let Some(problem) = variable_problem(var, value.as_str()) {
                errors.push(format!(
                    "service {svc}: config.env {}: {problem}",
                    go_quote(var)
                ));
            }
        }
    }

    for (egress_name, egress) in &service.egresses {
        let at = format!("service {svc}, egress {}", go_quote(egress_name));
        if egress_name.is_empty() {
            errors.push(format!(
                "{at}: name must not be empty; name the egress (usually after the service it \
                 connects to)"
            ));
        }
        if !generated && egress_name.contains('~') {
            errors.push(format!(
                "{at}: name must not contain \"~\", which rigd reserves for the names it \
                 generates; rename the egress"
            ));
        }
        if !generated {
            if let Some(problem) = name_problem(egress_name) {
                errors.push(format!(
                    "{at}: name {problem} (it names environment variables); rename the egress"
                ));
            }
        }
        let suggesting = errors.len() < SUGGESTING_ERRORS;
        if let Some(problem) = egress_target_problem(env, name, egress, suggesting) {
            errors.push(format!("{at}: {problem}"));
        }
    }
    if let Some(hooks) = &service.hooks {
        for (phase, list) in [("prestart", &hooks.prestart), ("init", &hooks.init)] {
            for (i, hook) in list.iter().enumerate() {
                if hook.timeout.to_std().is_none() {
                    errors.push(format!(
                        "service {svc}: hooks.{phase}[{i}].timeout must not be negative, got {} \
                         (leave it out for the default)",
                        hook.timeout
                    ));
                }
            }
        }
    }
    if !generated {
        let ingresses = service.ingresses.keys().map(String::as_str);
        let egresses = service.egresses.keys().map(String::as_str);
        for (kind, names) in [
            ("ingresses", ingresses.collect()),
            ("egresses", egresses.collect()),
        ] {
            if let Some((a, b)) = same_variables(names) {
                errors.push(format!(
                    "service {svc}: {kind} {} and {} give the same environment variables ({}*); \
                     rename one of them",
                    go_quote(a),
                    go_quote(b),
                    to_env_prefix(a)
                ));
            }
        }
        if let Some((ingress, egress)) = ingress_hidden_by_egress(service) {
            errors.push(format!(
                "service {svc}: ingress {} and egress {} give the same environment variables \
                 ({}*), and the egress's would hide the ingress's; rename one of them",
                go_quote(ingress),
                go_quote(egress),
                to_env_prefix(egress)
            ));
        }
    }
}

/// What is wrong with an environment variable named `name` whose value is `value` (when it
/// is a string), if anything.
fn variable_problem(name: &str, value: Option<&str>) -> Option<&'static str> {
    if name.is_empty() {
        Some("a variable's name must not be empty; name it or remove it")
    } else if name.contains(['=', '\0']) {
        Some(
            "a variable's name must not hold \"=\" or NUL (\\u0000): no process can be given \
             it; rename or remove it",
        )
    } else if value.is_some_and(|v| v.contains('\0')) {
        Some(
            "a variable's value must not hold NUL (\\u0000): no process can be given it; remove it",
        )
    } else {
        None
    }
}

/// An ingress and an egress of `service` whose variables would be the same names (the
/// `default` ingress has no prefix, so it never collides).
fn ingress_hidden_by_egress(service: &Service) -> Option<(&str, &str)> {
    let ingresses: std::collections::HashMap<String, &str> = service
        .ingresses
        .keys()
        .filter(|name| *name != "default")
        .map(|name| (to_env_prefix(name), name.as_str()))
        .collect();
    service.egresses.keys().find_map(|egress| {
        ingresses
            .get(&to_env_prefix(egress))
            .map(|ingress| (*ingress, egress.as_str()))
    })
}

/// What is wrong with a service written in the spec whose type rigd uses for the nodes it
/// inserts: a `test` node does nothing (the test itself is `~test`), and a `proxy` forwards
/// to its egress `target` from its one ingress `default`, without which it fails only once
/// started.
fn reserved_type_problem(service: &Service) -> Option<&'static str> {
    match service.service_type.as_str() {
        "test" => Some(
            "type \"test\" is reserved for the \"~test\" node rigd inserts for the test \
             itself; give the service a type that runs something",
        ),
        "proxy" if !service.egresses.contains_key("target") => Some(
            "a proxy forwards to its egress \"target\", and this one has none; add an egress \
             \"target\" naming the service to forward to",
        ),
        "proxy" if service.ingresses.len() != 1 || !service.ingresses.contains_key("default") => {
            Some(
                "a proxy publishes exactly one ingress, named \"default\" (it listens there and \
                 forwards to its egress \"target\"); declare \"ingresses\": {\"default\": \
                 {...}} and no other",
            )
        }
        _ => None,
    }
}

/// The longest name a service, ingress or egress may have.
const MAX_NAME: usize = 63;

/// What is wrong with `name` as a service, ingress or egress name, if anything. Empty names
/// and `~` have rules of their own, so they get nothing here.
fn name_problem(name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.contains('~') {
        None
    } else if !name.chars().all(allowed) {
        Some("may only contain ASCII letters, digits, \"-\" and \"_\"".to_string())
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("must start with a letter or a digit".to_string())
    } else if name.len() > MAX_NAME {
        Some(format!(
            "is {} characters long, over the {MAX_NAME} allowed",
            name.len()
        ))
    } else {
        None
    }
}

/// Two of `names` that give the same environment-variable prefix, if any.
fn same_variables(names: Vec<&str>) -> Option<(&str, &str)> {
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for name in names {
        if let Some(first) = seen.insert(to_env_prefix(name), name) {
            return Some((first, name));
        }
    }
    None
}

/// Upstream's exclusive egress target checks: the first that applies, if any.
///
/// An unknown target gets a "did you mean" when `suggesting` (see [`SUGGESTING_ERRORS`]).
fn egress_target_problem(
    env: &Environment,
    source: &str,
    egress: &rig_types::EgressSpec,
    suggesting: bool,
) -> Option<String> {
    let target_name = egress.service.as_str();
    let tq = go_quote(target_name);
    if target_name == source {
        return Some("cannot reference itself".to_string());
    }
    if target_name == TEST_NODE {
        return Some(format!(
            "references {tq}, which stands for the test itself and serves nothing (it depends \
             on every service); remove the egress"
        ));
    }
    let Some(target) = env.services.get(target_name) else {
        if target_name.is_empty() {
            return Some("\"service\" is required: name the service this egress calls".into());
        }
        let hint = suggesting
            .then(|| suggest(target_name, env.services.keys().map(String::as_str)))
            .flatten()
            .map(|s| format!(" (did you mean {}?)", go_quote(s)))
            .unwrap_or_default();
        return Some(format!("references unknown service {tq}{hint}"));
    };
    if target.ingresses.is_empty() {
        return Some(format!("target service {tq} has no ingresses"));
    }
    let available = || {
        target
            .ingresses
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !egress.ingress.is_empty() && !target.ingresses.contains_key(&egress.ingress) {
        return Some(format!(
            "target service {tq} has no ingress {} (available: {})",
            go_quote(&egress.ingress),
            available()
        ));
    }
    if egress.ingress.is_empty() && target.ingresses.len() > 1 {
        return Some(format!(
            "target service {tq} has {} ingresses \u{2014} specify which one ({})",
            target.ingresses.len(),
            available()
        ));
    }
    None
}

/// Errors found before "did you mean" hints stop being computed: a spec with this many
/// problems has more than a typo, and a hint costs a comparison with every service name.
const SUGGESTING_ERRORS: usize = 20;

/// Why `probe_type` is not a `ready.type` rigd knows, with the closest one when there is one;
/// `None` when it is known or empty (the ingress protocol's check).
fn ready_type_problem(probe_type: &str) -> Option<String> {
    if probe_type.is_empty() || READY_TYPES.contains(&probe_type) {
        return None;
    }
    let hint = suggest(probe_type, READY_TYPES.iter().copied())
        .map(|s| format!("did you mean {}? ", go_quote(s)))
        .unwrap_or_default();
    Some(format!(
        "unknown ready.type {} ({hint}must be one of: {}; leave it out to check by the \
         ingress protocol)",
        go_quote(probe_type),
        READY_TYPES.join(", ")
    ))
}

/// ` (did you mean "process"?)` for a misspelt service type close to one a spec may name
/// (not the `proxy` and `test` nodes rigd inserts itself); empty when none is close, so the
/// message stays upstream's.
fn service_type_hint(service_type: &str) -> String {
    let writable = KNOWN_SERVICE_TYPES
        .iter()
        .copied()
        .filter(|t| !matches!(*t, "proxy" | "test"));
    suggest(service_type, writable)
        .map(|s| format!(" (did you mean {}?)", go_quote(s)))
        .unwrap_or_default()
}

/// Names longer than this are neither given nor suggested as hints (no valid name is).
const MAX_HINTED_NAME: usize = 2 * MAX_NAME;

/// The closest candidate to `unknown` by byte-wise Levenshtein distance, if any is closer
/// than `len(unknown)/2 + 1`. On a tie the first candidate (in the given, sorted, order) wins.
fn suggest<'c>(unknown: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    if unknown.len() > MAX_HINTED_NAME {
        return None;
    }
    let mut best_distance = unknown.len() / 2 + 1;
    let mut best = None;
    for candidate in candidates {
        // The distance is at least the difference in length.
        if candidate.len() > MAX_HINTED_NAME
            || candidate.len().abs_diff(unknown.len()) >= best_distance
        {
            continue;
        }
        let distance = levenshtein(unknown.as_bytes(), candidate.as_bytes());
        if distance < best_distance {
            best_distance = distance;
            best = Some(candidate);
        }
    }
    best
}

/// Byte-wise Levenshtein edit distance.
fn levenshtein(a: &[u8], b: &[u8]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The first dependency cycle found by a depth-first search that visits services in sorted
/// order and egresses in sorted egress-name order, ignoring edges to unknown services. The
/// path starts and ends at the node that closes the loop (`a, b, c, a`).
///
/// Iterative, so a very long dependency chain cannot overflow the stack.
fn find_cycle(env: &Environment) -> Option<Vec<&str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    let mut marks: std::collections::HashMap<&str, Mark> = std::collections::HashMap::new();

    for (root, root_service) in &env.services {
        if marks.contains_key(root.as_str()) {
            continue;
        }
        marks.insert(root, Mark::OnPath);
        let mut path: Vec<&str> = vec![root];
        let mut pending = vec![root_service.egresses.values()];
        while let Some(edges) = pending.last_mut() {
            let Some(egress) = edges.next() else {
                pending.pop();
                if let Some(done) = path.pop() {
                    marks.insert(done, Mark::Done);
                }
                continue;
            };
            let Some((target, target_service)) = env.services.get_key_value(&egress.service) else {
                continue;
            };
            match marks.get(target.as_str()) {
                Some(Mark::OnPath) => {
                    let start = path.iter().position(|n| *n == target.as_str())?;
                    let mut cycle = path[start..].to_vec();
                    cycle.push(target);
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    marks.insert(target, Mark::OnPath);
                    path.push(target);
                    pending.push(target_service.egresses.values());
                }
            }
        }
    }
    None
}
