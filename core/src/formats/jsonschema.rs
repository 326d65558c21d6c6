//! JSON Schema records: the payload is JSON, so the JSON scanner does the work; the schema only
//! says which properties are tagged (`"confluent:tags": ["PII"]`). Tags resolve to root paths
//! (`address.street`, `items[*].sku`, map values `attrs.*`), following local `$ref`s, references to
//! other registered schemas by name, `allOf`/`anyOf`/`oneOf`. JSON has no named types, so a
//! recursive schema is unrolled a fixed number of times (`RECURSION_LIMIT`) along one path;
//! tagged fields nested deeper than that in recursive data are not selected (a documented limit).
//!
//! On request ([`crate::CodecBuilder::validate_json_schema`]) a record is also validated against
//! the schema with the `jsonschema` crate; the validator is compiled once per schema, on first
//! use, with the referenced schemas registered under their names (nothing is fetched).

use std::sync::OnceLock;

use serde_json::Value;

use super::json::JsonScanner;
use super::{CompiledSchema, Scanner};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::{FieldPath, Segment};

const MAX_DEPTH: usize = 64;
const RECURSION_LIMIT: usize = 4;

pub(crate) struct JsonSchema {
    name: String,
    root: Value,
    references: Vec<(String, Value)>,
    /// Compiled on first validation; a schema that does not compile fails every validation.
    validator: OnceLock<Result<jsonschema::Validator>>,
}

impl JsonSchema {
    pub fn parse(name: &str, text: &str, references: &[(String, String)]) -> Result<JsonSchema> {
        let parse = |n: &str, t: &str| {
            serde_json::from_str::<Value>(t)
                .map_err(|_| Error::new(ErrorKind::Format, format!("JSON schema {n:?} is not valid JSON")))
        };
        let root = parse(name, text)?;
        let references = references.iter().map(|(n, t)| Ok((n.clone(), parse(n, t)?))).collect::<Result<_>>()?;
        Ok(JsonSchema { name: name.to_string(), root, references, validator: OnceLock::new() })
    }

    fn validator(&self) -> Result<&jsonschema::Validator> {
        self.validator.get_or_init(|| self.compile_validator()).as_ref().map_err(Error::clone)
    }

    /// The validator of the root schema. Each referenced schema is registered under its name as
    /// a `$ref` in the root resolves it (against the root's `$id`, else `json-schema:///`) and
    /// as the name itself resolves; a reference whose name is no URI reference is left out.
    /// Anything not registered stays unresolved: the validator fetches nothing.
    fn compile_validator(&self) -> Result<jsonschema::Validator> {
        let invalid = |e: &dyn std::fmt::Display| {
            Error::new(ErrorKind::Format, format!("JSON schema {:?} cannot be compiled for validation: {e}", self.name))
        };
        let draft = jsonschema::Draft::default().detect(&self.root);
        let base = self.root.get("$id").and_then(Value::as_str).unwrap_or("json-schema:///");
        let base = jsonschema::uri::from_str(base).map_err(|e| invalid(&e))?;
        let mut resources = Vec::new();
        for (name, schema) in &self.references {
            let resource = draft.detect(schema).create_resource_ref(schema);
            let uris = [jsonschema::uri::resolve_against(&base.borrow(), name), jsonschema::uri::from_str(name)];
            for uri in uris.into_iter().flatten() {
                let uri = uri.as_str().to_string();
                if !resources.iter().any(|(u, _): &(String, _)| *u == uri) {
                    resources.push((uri, resource));
                }
            }
        }
        let registry = jsonschema::Registry::new()
            .draft(draft)
            .extend(resources)
            .and_then(|r| r.prepare())
            .map_err(|e| invalid(&e))?;
        jsonschema::options().offline().with_registry(&registry).build(&self.root).map_err(|e| invalid(&e))
    }

    fn walk<'s>(
        &'s self,
        doc: &'s Value,
        node: &'s Value,
        path: &mut Vec<Segment>,
        tags: &[String],
        refs: &mut Vec<*const Value>,
        out: &mut Vec<FieldPath>,
    ) {
        if path.len() > MAX_DEPTH {
            return;
        }
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            if let Some((target_doc, target)) = self.resolve(doc, r) {
                // A recursive schema is unrolled RECURSION_LIMIT times along one path.
                if refs.iter().filter(|&&seen| std::ptr::eq(seen, target)).count() < RECURSION_LIMIT {
                    refs.push(target);
                    self.walk(target_doc, target, path, tags, refs, out);
                    refs.pop();
                }
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for sub in node.get(key).and_then(Value::as_array).into_iter().flatten() {
                self.walk(doc, sub, path, tags, refs, out);
            }
        }
        let props = node.get("properties").and_then(Value::as_object).into_iter().flatten();
        let children = props.map(|(name, sub)| (Segment::Field(name.clone()), sub)).chain(
            [("items", Segment::AnyElement), ("additionalProperties", Segment::AnyMember)]
                .into_iter()
                .filter_map(|(key, segment)| node.get(key).filter(|v| v.is_object()).map(|sub| (segment, sub))),
        );
        for (segment, sub) in children {
            path.push(segment);
            if is_tagged(sub, tags) {
                let p = FieldPath::from_segments(path.clone());
                if !out.contains(&p) {
                    out.push(p);
                }
            } else {
                self.walk(doc, sub, path, tags, refs, out);
            }
            path.pop();
        }
    }

    /// A `$ref` inside `doc` (`#/$defs/x`) or to a referenced schema by name (`other.json#/...`).
    fn resolve<'s>(&'s self, doc: &'s Value, r: &str) -> Option<(&'s Value, &'s Value)> {
        let (name, pointer) = r.split_once('#').unwrap_or((r, ""));
        let target_doc = if name.is_empty() { doc } else { &self.references.iter().find(|(n, _)| n == name)?.1 };
        Some((target_doc, if pointer.is_empty() { target_doc } else { target_doc.pointer(pointer)? }))
    }
}

fn is_tagged(node: &Value, tags: &[String]) -> bool {
    node.get("confluent:tags")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().filter_map(Value::as_str).any(|t| tags.iter().any(|x| x == t)))
}

impl CompiledSchema for JsonSchema {
    fn tagged_fields(&self, tags: &[String]) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.walk(&self.root, &self.root, &mut Vec::new(), tags, &mut Vec::new(), &mut out);
        out
    }

    fn scanner(&self, paths: Vec<FieldPath>) -> Result<Box<dyn Scanner>> {
        if let Some(p) = paths.iter().find(|p| p.type_field().is_some()) {
            return Err(Error::policy(format!(
                "path {p}: JSON Schema records are selected by root paths, not Type::field"
            )));
        }
        Ok(Box::new(JsonScanner::new(paths)))
    }

    fn validate(&self, payload: &[u8], what: &str) -> Result<()> {
        let validator = self.validator()?;
        // Messages name the schema and locations only: an instance value may be a secret.
        let instance: Value = serde_json::from_slice(payload).map_err(|_| {
            Error::record(format!("{what} is not valid JSON, so it cannot match JSON schema {:?}", self.name))
        })?;
        if validator.is_valid(&instance) {
            return Ok(());
        }
        let Err(error) = validator.validate(&instance) else { return Ok(()) };
        let missing = match error.kind() {
            // The property name comes from the schema, not from the record.
            jsonschema::error::ValidationErrorKind::Required { property } => {
                format!(" (required property {property} is missing)")
            }
            _ => String::new(),
        };
        let declared = |name: &str| {
            declares_property(&self.root, name) || self.references.iter().any(|(_, r)| declares_property(r, name))
        };
        let at = match redacted_pointer(error.instance_path().as_str(), &declared) {
            pointer if pointer.is_empty() => "the root".to_string(),
            pointer => format!("{pointer:?}"),
        };
        Err(Error::record(format!(
            "{what} does not match JSON schema {:?}: the value at {at} fails {:?} (schema location {:?}){missing}",
            self.name,
            error.kind().keyword(),
            error.schema_path().as_str(),
        )))
    }
}

/// The instance pointer with every member name that no `properties` of the schema (or its
/// references) declares replaced by `*`: such names (map keys under `additionalProperties` or
/// `patternProperties`) are record data, which may be secret.
fn redacted_pointer(instance: &str, declared: &impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for segment in instance.split('/').skip(1) {
        let name = segment.replace("~1", "/").replace("~0", "~");
        let keep = segment.bytes().all(|b| b.is_ascii_digit()) || declared(&name);
        out.push('/');
        out.push_str(if keep { segment } else { "*" });
    }
    out
}

/// Whether `name` is a key of some `properties` object anywhere in `node`.
fn declares_property(node: &Value, name: &str) -> bool {
    match node {
        Value::Object(map) => {
            map.get("properties").and_then(Value::as_object).is_some_and(|p| p.contains_key(name))
                || map.values().any(|v| declares_property(v, name))
        }
        Value::Array(items) => items.iter().any(|v| declares_property(v, name)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_name_only_what_the_schema_names() {
        let schema: Value = serde_json::json!({"properties": {"address": {"properties": {"a/b": {}, "zip": {}}},
                                                "prefs": {"additionalProperties": {"type": "string"}}}});
        let declared = |name: &str| declares_property(&schema, name);
        assert_eq!(redacted_pointer("/address/zip", &declared), "/address/zip");
        assert_eq!(redacted_pointer("/address/a~1b", &declared), "/address/a~1b");
        assert_eq!(redacted_pointer("/prefs/jane@example.com", &declared), "/prefs/*");
        assert_eq!(redacted_pointer("/items/3/zip", &declared), "/*/3/zip");
        assert_eq!(redacted_pointer("", &declared), "");
    }

    #[test]
    fn tags_resolve_through_refs_and_combinators() {
        let schema = r##"{
          "type": "object",
          "properties": {
            "email": {"type": "string", "confluent:tags": ["PII"]},
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/Address"},
            "orders": {"type": "array", "items": {"type": "object", "properties": {
                "card": {"type": "string", "confluent:tags": ["PCI"]}}}},
            "attrs": {"type": "object", "additionalProperties": {"type": "string", "confluent:tags": ["PII"]}},
            "node": {"$ref": "#/$defs/Node"},
            "ext": {"$ref": "other.json"},
            "mixed": {"allOf": [{"properties": {"ssn": {"confluent:tags": ["PII"]}}}]}
          },
          "$defs": {
            "Address": {"type": "object", "properties": {"street": {"type": "string", "confluent:tags": ["PII"]}}},
            "Node": {"type": "object", "properties": {"value": {"confluent:tags": ["PII"]}, "next": {"$ref": "#/$defs/Node"}}}
          }
        }"##;
        let other = r#"{"properties": {"phone": {"type": "string", "confluent:tags": ["PII"]}}}"#;
        let s = JsonSchema::parse("s", schema, &[("other.json".into(), other.into())]).unwrap();
        let paths: Vec<String> = s.tagged_fields(&["PII".into()]).iter().map(|p| p.as_str().to_string()).collect();
        assert_eq!(
            paths,
            [
                "address.street",
                "attrs.*",
                "email",
                "ext.phone",
                "mixed.ssn",
                "node.next.next.next.value",
                "node.next.next.value",
                "node.next.value",
                "node.value"
            ]
        );
        assert_eq!(s.tagged_fields(&["PCI".into()])[0].as_str(), "orders[*].card");
    }
}
