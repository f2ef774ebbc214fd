//! Fetching a server's descriptors through gRPC server reflection
//! (`grpc.reflection.v1.ServerReflection`, falling back to `v1alpha`).
//!
//! The probe connects straight to the target (never through the proxy, so it records no
//! traffic), opens one `ServerReflectionInfo` stream and asks, one request at a time: the list
//! of services, the file defining each service, then every dependency not yet received. Files
//! that cannot be fetched are left out; whatever links becomes the [`Schema`].

use std::collections::HashSet;
use std::time::Duration;

use prost::Message as _;
use rig_protocols::grpc::Schema;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// Why no descriptors could be had from a target.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReflectionError {
    /// The target could not be reached.
    #[error("connecting to {target} failed: {source}")]
    Connect {
        target: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// Neither reflection version is served.
    #[error("the server does not offer server reflection (v1 nor v1alpha)")]
    Unimplemented,
    /// The reflection stream failed.
    #[error("server reflection failed: {0}")]
    Call(String),
    /// The fetch took longer than its limit.
    #[error("server reflection did not answer within {0:?}")]
    Timeout(Duration),
    /// The descriptors received do not describe any service.
    #[error(transparent)]
    Schema(#[from] rig_protocols::grpc::SchemaError),
}

/// Fetches and links the descriptors of the gRPC server at `target` (`host:port`) within
/// `limit`.
pub(crate) async fn fetch(target: &str, limit: Duration) -> Result<Schema, ReflectionError> {
    match tokio::time::timeout(limit, fetch_files(target, limit)).await {
        Ok(files) => Ok(Schema::from_file_descriptors(files?)?),
        Err(_) => Err(ReflectionError::Timeout(limit)),
    }
}

async fn fetch_files(target: &str, limit: Duration) -> Result<Vec<Vec<u8>>, ReflectionError> {
    let connect_error = |source| ReflectionError::Connect {
        target: target.to_string(),
        source,
    };
    let channel = Endpoint::from_shared(format!("http://{target}"))
        .map_err(connect_error)?
        .connect_timeout(limit)
        .connect()
        .await
        .map_err(connect_error)?;
    match v1::fetch(channel.clone()).await {
        Err(Status(status)) if status.code() == Code::Unimplemented => {
            match v1alpha::fetch(channel).await {
                Err(Status(status)) if status.code() == Code::Unimplemented => {
                    Err(ReflectionError::Unimplemented)
                }
                other => other.map_err(|Status(s)| ReflectionError::Call(describe(&s))),
            }
        }
        other => other.map_err(|Status(s)| ReflectionError::Call(describe(&s))),
    }
}

/// A failed reflection call, kept as a status so `Unimplemented` can be told apart.
struct Status(tonic::Status);

fn describe(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

/// A file's name and the names of the files it imports, read from a serialized
/// `FileDescriptorProto`.
fn name_and_dependencies(file: &[u8]) -> Option<(String, Vec<String>)> {
    let proto = prost_types::FileDescriptorProto::decode(file).ok()?;
    Some((proto.name.unwrap_or_default(), proto.dependency))
}

/// Keeps the files of a reflection answer not seen before, queueing their dependencies.
fn keep(
    batch: Vec<Vec<u8>>,
    seen: &mut HashSet<String>,
    wanted: &mut Vec<String>,
    files: &mut Vec<Vec<u8>>,
) {
    for file in batch {
        let Some((name, dependencies)) = name_and_dependencies(&file) else {
            continue;
        };
        if !seen.insert(name) {
            continue;
        }
        wanted.extend(dependencies);
        files.push(file);
    }
}

/// The reflection exchange, written once for both protocol versions (their generated types
/// are identical but distinct).
macro_rules! reflection_client {
    ($version:ident) => {
        mod $version {
            use super::*;
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, ServerReflectionResponse,
            };

            /// One reflection stream: requests go out one at a time, each awaiting its answer.
            struct Session {
                requests: mpsc::Sender<ServerReflectionRequest>,
                responses: tonic::Streaming<ServerReflectionResponse>,
            }

            /// A request asking for `request`.
            fn request(request: MessageRequest) -> ServerReflectionRequest {
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(request),
                }
            }

            impl Session {
                async fn ask(
                    &mut self,
                    request: MessageRequest,
                ) -> Result<MessageResponse, Status> {
                    if self.requests.send(self::request(request)).await.is_err() {
                        return Err(Status(tonic::Status::unavailable(
                            "the reflection stream closed",
                        )));
                    }
                    self.answer().await
                }

                /// The answer to the request sent last.
                async fn answer(&mut self) -> Result<MessageResponse, Status> {
                    match self.responses.message().await {
                        Ok(Some(response)) => response.message_response.ok_or_else(|| {
                            Status(tonic::Status::internal("an empty reflection response"))
                        }),
                        Ok(None) => Err(Status(tonic::Status::unavailable(
                            "the reflection stream ended early",
                        ))),
                        Err(status) => Err(Status(status)),
                    }
                }

                /// The files a request returns; an error response means none.
                async fn files(&mut self, request: MessageRequest) -> Result<Vec<Vec<u8>>, Status> {
                    Ok(match self.ask(request).await? {
                        MessageResponse::FileDescriptorResponse(r) => r.file_descriptor_proto,
                        _ => Vec::new(),
                    })
                }
            }

            pub(super) async fn fetch(channel: Channel) -> Result<Vec<Vec<u8>>, Status> {
                let mut client = ServerReflectionClient::new(channel);
                let (requests, outbound) = mpsc::channel(4);
                // The first request goes out with the call: grpc-go servers send their
                // response headers only with the first answer, and the call returns once it
                // has the headers.
                let list = request(MessageRequest::ListServices(String::new()));
                requests
                    .try_send(list)
                    .expect("an empty channel has room for one request");
                let responses = client
                    .server_reflection_info(ReceiverStream::new(outbound))
                    .await
                    .map_err(Status)?
                    .into_inner();
                let mut session = Session {
                    requests,
                    responses,
                };
                let services = match session.answer().await? {
                    MessageResponse::ListServicesResponse(list) => list.service,
                    MessageResponse::ErrorResponse(e) => {
                        return Err(Status(tonic::Status::new(
                            Code::from_i32(e.error_code),
                            e.error_message,
                        )))
                    }
                    _ => {
                        return Err(Status(tonic::Status::internal(
                            "list_services was not answered with a service list",
                        )))
                    }
                };
                let mut seen = HashSet::new();
                let mut wanted = Vec::new();
                let mut files = Vec::new();
                for service in services {
                    let batch = session
                        .files(MessageRequest::FileContainingSymbol(service.name))
                        .await?;
                    keep(batch, &mut seen, &mut wanted, &mut files);
                }
                while let Some(name) = wanted.pop() {
                    if seen.contains(&name) {
                        continue;
                    }
                    let batch = session
                        .files(MessageRequest::FileByFilename(name.clone()))
                        .await?;
                    keep(batch, &mut seen, &mut wanted, &mut files);
                    // A dependency the server cannot send is not asked for again.
                    seen.insert(name);
                }
                Ok(files)
            }
        }
    };
}

reflection_client!(v1);
reflection_client!(v1alpha);
