//! Where writer schemas come from: a Schema Registry, or schemas given up front
//! ([`StaticSchemas`], for tests, benchmarks and fixed deployments). Parsed schemas are cached
//! per schema reference, and compiled scanners per (schema, paths).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::formats::avro::AvroSchema;
use crate::formats::jsonschema::JsonSchema;
use crate::formats::protobuf::ProtoSchema;
use crate::formats::CompiledSchema;
use crate::framing::SchemaRef;

/// The schema languages of the Confluent Schema Registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaType {
    Avro,
    Json,
    Protobuf,
}

/// A registered schema's text and the texts of the schemas it references, in dependency order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaText {
    pub schema_type: SchemaType,
    /// A name for messages and for Protobuf imports (the subject or file name).
    pub name: String,
    pub text: String,
    /// `(reference name, schema text)`: the import path for Protobuf, the `$ref` target name for
    /// JSON Schema, the named types for Avro.
    pub references: Vec<(String, String)>,
}

/// Looks up writer schemas by the reference a record carries.
pub trait SchemaSource: Send + Sync + fmt::Debug {
    fn schema(&self, schema: &SchemaRef) -> Result<Arc<SchemaText>>;
}

/// Schemas given up front, by id or GUID.
#[derive(Debug, Default)]
pub struct StaticSchemas {
    schemas: HashMap<SchemaRef, Arc<SchemaText>>,
}

impl StaticSchemas {
    pub fn new() -> StaticSchemas {
        StaticSchemas::default()
    }

    pub fn with(mut self, schema: SchemaRef, text: SchemaText) -> StaticSchemas {
        self.schemas.insert(schema, Arc::new(text));
        self
    }
}

impl SchemaSource for StaticSchemas {
    fn schema(&self, schema: &SchemaRef) -> Result<Arc<SchemaText>> {
        self.schemas
            .get(schema)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::Registry, format!("{schema} is not known")))
    }
}

/// Parses a schema text for the format it names. Protobuf needs the message indexes of the
/// record (which message of the file it is).
pub(crate) fn compile(text: &SchemaText, message_indexes: &[i32]) -> Result<Arc<dyn CompiledSchema>> {
    let _ = message_indexes;
    Ok(match text.schema_type {
        SchemaType::Json => Arc::new(JsonSchema::parse(&text.name, &text.text, &text.references)?),
        SchemaType::Protobuf => {
            Arc::new(ProtoSchema::parse(&text.name, &text.text, &text.references, message_indexes)?)
        }
        SchemaType::Avro => {
            let references: Vec<String> = text.references.iter().map(|(_, t)| t.clone()).collect();
            Arc::new(AvroSchema::parse(&text.text, &references)?)
        }
    })
}
