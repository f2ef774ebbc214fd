//! `serve-pingora` (feature `pingora`): the smallest useful pingora reverse proxy, a reference
//! peer built from Cloudflare's framework. One listener accepts HTTP/1.1 and h2c (pingora
//! peeks for the HTTP/2 preface); every request goes to the origin over pingora's pooled
//! HTTP/1.1 connections. Nothing is observed or captured.

use anyhow::Result;
use async_trait::async_trait;
use pingora_core::apps::HttpServerOptions;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

use crate::cli::PingoraOptions;

/// Sends every request to one origin.
struct ToOrigin {
    origin: String,
}

#[async_trait]
impl ProxyHttp for ToOrigin {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.origin.as_str(),
            false,
            String::new(),
        )))
    }
}

/// Runs the proxy until SIGTERM (pingora's own signal handling ends the process).
pub fn main(options: PingoraOptions) -> Result<()> {
    let conf = ServerConf {
        threads: options.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora_proxy::http_proxy_service(
        &server.configuration,
        ToOrigin {
            origin: options.target,
        },
    );
    if let Some(app) = service.app_logic_mut() {
        let mut server_options = HttpServerOptions::default();
        server_options.h2c = true;
        app.server_options = Some(server_options);
    }
    service.add_tcp(&options.listen.to_string());
    server.add_service(service);
    server.run_forever()
}
