//! Fuzzes the spec pipeline a `POST /environments` body goes through.
//!
//! Arbitrary bytes go to [`decode_environment`]. Whatever decodes is then validated with
//! [`validate_environment`] and transformed with [`insert_test_node`] and
//! [`transform_observe`] (observe mode forced on, so the proxy insertion always runs). The
//! server only transforms specs that validated, but the transforms are public functions and
//! must not panic on any decoded spec, so they run on invalid specs too.
//!
//! Properties checked (beyond "nothing panics"):
//!
//! - the error of a failed decode can be displayed;
//! - for a spec that validates cleanly, each egress of the `~test` node round-trips through
//!   [`parse_test_egress`] to the service and ingress it points at, as the orchestrator relies
//!   on (validation rejects `~` in names, so the split at the first `~` is unambiguous);
//! - for a spec that validates cleanly, [`transform_observe`] is idempotent, as documented:
//!   running it a second time changes nothing. (On invalid specs it need not be: a user
//!   service may be named like a generated proxy node, which validation exists to reject.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use rigd::spec::{
    decode_environment, insert_test_node, parse_test_egress, transform_observe,
    validate_environment, TEST_NODE,
};

fuzz_target!(|data: &[u8]| {
    let mut env = match decode_environment(data) {
        Ok(env) => env,
        Err(e) => {
            // Rendering the message must not panic either (it quotes user input).
            let _ = e.to_string();
            return;
        }
    };

    env.observe = true;
    let errors = validate_environment(&mut env);
    let valid = errors.is_empty();

    insert_test_node(&mut env);
    if valid {
        let test = env
            .services
            .get(TEST_NODE)
            .expect("insert_test_node must add the ~test node");
        for (name, egress) in &test.egresses {
            assert_eq!(
                parse_test_egress(name),
                (egress.service.as_str(), egress.ingress.as_str()),
                "~test egress {name:?} does not name its target",
            );
        }
    }

    transform_observe(&mut env);
    if valid {
        let once = env.clone();
        transform_observe(&mut env);
        assert_eq!(once, env, "transform_observe is not idempotent");
    }
});
