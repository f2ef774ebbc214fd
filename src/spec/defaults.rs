//! The only defaulting rigd applies to a spec: egress ingress shorthand.

use rig_types::Environment;

/// Fills in the target ingress of every egress that names none, when it is unambiguous:
///
/// * a target with exactly one ingress gives that ingress's name;
/// * otherwise a target with an ingress named `default` gives `default`;
/// * otherwise (or when the target service does not exist) the ingress stays empty and
///   validation reports the problem.
///
/// Nothing else is defaulted: no ingress is added to a service without one, ready specs,
/// args and configs are left as they are.
pub fn resolve_defaults(env: &mut Environment) {
    let mut resolved = Vec::new();
    for (source, service) in &env.services {
        for (egress_name, egress) in &service.egresses {
            if !egress.ingress.is_empty() {
                continue;
            }
            let Some(target) = env.services.get(&egress.service) else {
                continue;
            };
            let ingress = if target.ingresses.len() == 1 {
                target.ingresses.keys().next().cloned()
            } else if target.ingresses.contains_key("default") {
                Some("default".to_string())
            } else {
                None
            };
            if let Some(ingress) = ingress {
                resolved.push((source.clone(), egress_name.clone(), ingress));
            }
        }
    }
    for (source, egress_name, ingress) in resolved {
        if let Some(egress) = env
            .services
            .get_mut(&source)
            .and_then(|s| s.egresses.get_mut(&egress_name))
        {
            egress.ingress = ingress;
        }
    }
}
