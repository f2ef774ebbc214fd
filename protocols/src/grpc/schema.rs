//! Decoding with a schema: message descriptors (from a service's server reflection) and
//! protobuf's canonical JSON mapping.
//!
//! [`Schema`] links the `FileDescriptorProto`s a server sent into a descriptor pool (the
//! well-known types are always there); [`MethodSchema`] decodes a method's request and
//! response messages into JSON with lowerCamelCase field names, enums by name, 64-bit integers
//! as strings and well-known types in their special forms, as upstream rig does.

use prost_reflect::prost::Message as _;
use prost_reflect::prost_types::FileDescriptorProto;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

/// Why descriptors could not be linked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the server's file descriptors do not link: {0}")]
pub struct SchemaError(String);

/// Why a message did not decode with its descriptor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {message}: {reason}")]
pub struct SchemaDecodeError {
    /// The message type's full name.
    pub message: String,
    /// What went wrong.
    pub reason: String,
}

/// Which way a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: the method's input type.
    Request,
    /// Server to client: the method's output type.
    Response,
}

/// The linked descriptors of one server.
#[derive(Clone, Debug)]
pub struct Schema {
    pool: DescriptorPool,
}

impl Schema {
    /// Links serialized `FileDescriptorProto`s, given in any order. Files that cannot be
    /// linked (a dependency the server did not send, an invalid descriptor) are left out and
    /// the rest kept; an error when no service is described.
    pub fn from_file_descriptors<I, B>(files: I) -> Result<Schema, SchemaError>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let files: Vec<Vec<u8>> = files.into_iter().map(|f| f.as_ref().to_vec()).collect();
        let mut pool = DescriptorPool::global();
        if pool
            .decode_file_descriptor_set(file_descriptor_set(&files).as_slice())
            .is_ok()
        {
            return Schema::with_services(pool, "the descriptors describe no service".into());
        }
        // Some file does not link: add them one by one while that makes progress, so the
        // files that do link are kept.
        let mut pending = files;
        let mut last_error = String::from("no file descriptors");
        loop {
            let before = pending.len();
            pending.retain(|file| match link_file(&mut pool, file) {
                Ok(()) => false,
                Err(e) => {
                    last_error = e;
                    true
                }
            });
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        Schema::with_services(pool, last_error)
    }

    fn with_services(pool: DescriptorPool, error: String) -> Result<Schema, SchemaError> {
        if pool.services().len() == 0 {
            return Err(SchemaError(error));
        }
        Ok(Schema { pool })
    }

    /// Links a serialized `FileDescriptorSet` (test fixtures, compiled descriptor sets).
    pub fn from_file_descriptor_set(bytes: &[u8]) -> Result<Schema, SchemaError> {
        let mut pool = DescriptorPool::global();
        pool.decode_file_descriptor_set(bytes)
            .map_err(|e| SchemaError(e.to_string()))?;
        Ok(Schema { pool })
    }

    /// The fully qualified names of the services described.
    pub fn services(&self) -> impl Iterator<Item = String> + '_ {
        self.pool.services().map(|s| s.full_name().to_string())
    }

    /// The method `service/method` (as in a gRPC path), if described.
    pub fn method(&self, service: &str, method: &str) -> Option<MethodSchema> {
        let service = self.pool.get_service_by_name(service)?;
        let method = service.methods().find(|m| m.name() == method)?;
        Some(MethodSchema {
            input: method.input(),
            output: method.output(),
        })
    }
}

/// The request and response types of one method.
#[derive(Clone, Debug)]
pub struct MethodSchema {
    input: MessageDescriptor,
    output: MessageDescriptor,
}

impl MethodSchema {
    /// The message type travelling in `direction`.
    pub fn message_type(&self, direction: Direction) -> &MessageDescriptor {
        match direction {
            Direction::Request => &self.input,
            Direction::Response => &self.output,
        }
    }

    /// Decodes one (decompressed) message payload to canonical protobuf JSON.
    pub fn decode(&self, direction: Direction, payload: &[u8]) -> Result<Value, SchemaDecodeError> {
        let descriptor = self.message_type(direction);
        let error = |reason: String| SchemaDecodeError {
            message: descriptor.full_name().to_string(),
            reason,
        };
        let message = DynamicMessage::decode(descriptor.clone(), payload)
            .map_err(|e| error(e.to_string()))?;
        message
            .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
            .map_err(|e| error(e.to_string()))
    }
}

/// Adds one serialized `FileDescriptorProto` to `pool`. A file that does not link as sent is
/// tried again importing every file already in the pool: descriptors that protobuf.js builds
/// (those of grpc-js servers' reflection, `@grpc/reflection`) name their files after packages
/// and list no imports, so a type of another file (`google.protobuf.Timestamp`) would
/// otherwise be "not imported". Only a file that does not link as sent is retried, so the
/// descriptors of other servers link exactly as before.
fn link_file(pool: &mut DescriptorPool, file: &[u8]) -> Result<(), String> {
    let error = match pool.decode_file_descriptor_proto(file) {
        Ok(()) => return Ok(()),
        Err(e) => e.to_string(),
    };
    let Ok(mut proto) = FileDescriptorProto::decode(file) else {
        return Err(error);
    };
    let imported: Vec<String> = pool
        .files()
        .map(|f| f.name().to_string())
        .filter(|name| Some(name.as_str()) != proto.name.as_deref())
        .filter(|name| !proto.dependency.contains(name))
        .collect();
    if imported.is_empty() {
        return Err(error);
    }
    proto.dependency.extend(imported);
    pool.add_file_descriptor_proto(proto).map_err(|_| error)
}

/// Serialized `FileDescriptorProto`s as one `FileDescriptorSet` (each is field 1).
fn file_descriptor_set(files: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(files.iter().map(|f| f.len() + 6).sum());
    for file in files {
        out.push(0x0a);
        let mut len = file.len() as u64;
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(file);
    }
    out
}
