//! JSON Schema records: the payload is JSON, so the JSON scanner does the work; the schema only
//! says which properties are tagged (`"confluent:tags": ["PII"]`). Tags resolve to root paths
//! (`address.street`, `items[*].sku`, map values `attrs.*`), following local `$ref`s, references to
//! other registered schemas by name, `allOf`/`anyOf`/`oneOf`. JSON has no named types, so a
//! recursive schema is unrolled a fixed number of times (`RECURSION_LIMIT`) along one path;
//! tagged fields nested deeper than that in recursive data are not selected (a documented limit).

use serde_json::Value;

use super::json::JsonScanner;
use super::{CompiledSchema, Scanner};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::{FieldPath, Segment};

const MAX_DEPTH: usize = 64;
const RECURSION_LIMIT: usize = 4;

pub(crate) struct JsonSchema {
    root: Value,
    references: Vec<(String, Value)>,
}

impl JsonSchema {
    pub fn parse(name: &str, text: &str, references: &[(String, String)]) -> Result<JsonSchema> {
        let parse = |n: &str, t: &str| {
            serde_json::from_str::<Value>(t)
                .map_err(|_| Error::new(ErrorKind::Format, format!("JSON schema {n:?} is not valid JSON")))
        };
        let root = parse(name, text)?;
        let references = references.iter().map(|(n, t)| Ok((n.clone(), parse(n, t)?))).collect::<Result<_>>()?;
        Ok(JsonSchema { root, references })
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
