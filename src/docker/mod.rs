//! Running containers with the Docker engine (bollard), for the `container` service type and
//! for container backends of infrastructure types.
//!
//! ```text
//!  connect()        one client per rigd (DOCKER_HOST, the current Docker context, or the
//!                   local socket; API version negotiated); "is Docker running?" naming the
//!                   endpoint when the engine does not answer; an engine on another
//!                   machine is refused
//!  ensure_image()   inspect locally, pull only when missing (artifact phase); a pull
//!                   without progress for 60 s fails
//!  run_container()  create (labelled with its owner) ── start ── logs → service.log ──
//!                   wait: exit code ≠ 0 is an error; told to stop: stop with a grace
//!                   period, then remove. Removed whatever happens.
//!                   Before it goes, what it wrote into its mounts is given to rigd's user
//!                   (files_owner: chown as root inside it, or in a helper container).
//!  exec()           a command inside a running container, output → service.log
//!  HostGateway      relays from the bridge gateway (host.docker.internal) to the loopback
//!                   ports a container's egresses name, while the container runs
//!  sweep_leftovers()  at rigd start: remove containers of dead rigds sharing the rig dir
//!                   and this rigd's boot and pid namespace
//! ```
//!
//! Every container carries labels naming the rig dir and the rigd (pid and start time, and the
//! boot and pid namespace they belong to) that owns it, and is registered with the reaper, so
//! a `kill -9` of rigd leaves none behind: the reaper removes them, and if the reaper died
//! too, the next rigd on that rig dir does. A rigd never removes a container of a rigd in
//! another namespace sharing the engine (see `owner`).

mod client;
mod container;
mod exec;
mod files_owner;
mod host_gateway;
mod image;
mod owner;
mod removal;

pub use client::{connect, DockerError};
pub use container::{
    create, host_port, run_container, ContainerSpec, Mount, PortMapping, StopSettings,
};
pub use exec::{exec, exec_output};
pub use files_owner::{files_owner, FilesOwner, FILES_OWNER_VAR, HAND_BACK_DEADLINE};
pub use host_gateway::{bridge_gateway, HostGateway, Peers};
pub use image::{ensure_image, is_stall, local_image_id, ImageSource, STALL_LIMIT_VAR};
pub(crate) use owner::remove;
pub use owner::{
    force_remove, occupant, remove_containers_blocking, set_rig_dir, sweep_leftovers_blocking,
    this_namespace, Occupant, LABEL_PREFIX,
};
pub(crate) use removal::stop;
