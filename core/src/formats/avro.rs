//! Avro binary records (the datum after the Schema Registry framing), rewritten in one pass
//! without decoding them into values.
//!
//! [`AvroSchema::parse`] turns the writer schema (and the named types it references) into a small
//! type graph. [`CompiledSchema::scanner`] compiles that graph and a list of paths, once, into a
//! [`Plan`]: a graph of instructions, one per (type, paths still being matched there), that says
//! at each value whether it is skipped, a selected leaf, or a container to walk, and which name
//! each step adds to the concrete location. Scanning a record then only interprets the plan over
//! the bytes — no schema lookups, no hashing, no allocation beyond the scan's own vectors.
//!
//! What a scan finds are the selected `string` and `bytes` values (also as the branch of a union
//! such as `["null", "string"]`), borrowed from the payload with the byte range a replacement
//! takes. Writing copies every byte outside those ranges through unchanged, so values the policy
//! does not touch stay exactly as the producer encoded them, block layout included. Two Avro
//! details are rewritten when a leaf changes size:
//!
//! * an array or map block written in the sized form (negative count, then the block's byte
//!   size) that holds a leaf gets its header re-emitted as a plain positive count, without the
//!   size (equally valid Avro; the size would be wrong after the rewrite);
//! * [`Emit::null`] on a leaf that is a union branch writes the union's `null` branch in place of
//!   the branch index and value. A leaf that is not in a union with a `null` branch has no null:
//!   it becomes the empty string (or empty bytes).
//!
//! A selected value of any other type is a [`crate::ErrorKind::Policy`] error when the scanner
//! is compiled; a union branch of another type met at run time (`["null", "long", "string"]`
//! holding a long) is left as it is. Logical types over strings and bytes (`uuid`, `decimal`)
//! are not selectable: ciphertext would not be a valid value of them.

use std::collections::HashMap;

use apache_avro::schema::{Name, RecordSchema, Schema};

use super::{CompiledSchema, Emit, Fill, Leaf, Scanner, ValueKind};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::{ConcretePath, FieldPath, Segment};

/// Records nested deeper than this (records, arrays and maps) are refused.
const MAX_DEPTH: u32 = 128;

type TyId = u32;

/// One type of the schema graph. Named types occur once; references and recursion are edges.
#[derive(Debug)]
enum Ty {
    Null,
    Boolean,
    /// `int` and its logical types: a zig-zag varint that fits 32 bits.
    Int(&'static str),
    /// `long` and its logical types.
    Long(&'static str),
    Float,
    Double,
    String,
    Bytes,
    /// A length-prefixed logical type that cannot hold ciphertext (`uuid`, `decimal`, ...).
    Blob(&'static str),
    Fixed {
        name: String,
        size: usize,
        logical: Option<&'static str>,
    },
    Enum {
        name: String,
        symbols: u32,
    },
    Array(TyId),
    Map(TyId),
    Union(Vec<TyId>),
    Record(RecordTy),
}

#[derive(Debug)]
struct RecordTy {
    name: String,
    fields: Vec<FieldTy>,
}

#[derive(Debug)]
struct FieldTy {
    name: String,
    ty: TyId,
    tags: Vec<String>,
}

/// A parsed Avro writer schema: its type graph, for tag lookups and scanner compilation.
#[derive(Debug)]
pub(crate) struct AvroSchema {
    types: Vec<Ty>,
    root: TyId,
    /// The named types reachable from the root, by full name.
    named: HashMap<String, TyId>,
    /// The root type's name, for messages.
    label: String,
    /// The schemas as apache-avro parsed them, for the reference implementation in tests.
    #[cfg(test)]
    avro: (Schema, Vec<Schema>),
}

impl AvroSchema {
    /// Parses a writer schema. `references` are the texts of the named types it refers to (the
    /// Schema Registry's references, resolved), in any order. A schema that does not parse is a
    /// [`ErrorKind::Format`] error naming it.
    pub(crate) fn parse(schema_json: &str, references: &[String]) -> Result<AvroSchema> {
        let label = schema_label(schema_json);
        let bad = |detail: String| {
            Error::new(ErrorKind::Format, format!("Avro schema {label} does not parse: {}", shorten(&detail)))
        };
        for (n, text) in std::iter::once(schema_json).chain(references.iter().map(String::as_str)).enumerate() {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                let which = if n == 0 { "the schema".to_string() } else { format!("reference {n}") };
                bad(format!("{which} is not JSON ({})", super::json::error_position(&e)))
            })?;
            if has_fixed_uuid(&value, 0) {
                // apache-avro reads such a field as length-prefixed bytes, not as 16 fixed bytes.
                return Err(bad("a fixed type with logicalType \"uuid\" is not supported".into()));
            }
        }
        let (root, refs) = Schema::parse_str_with_list(schema_json, references).map_err(|e| bad(e.to_string()))?;
        let mut builder = Builder { defs: HashMap::new(), named: HashMap::new(), types: Vec::new() };
        for schema in std::iter::once(&root).chain(&refs) {
            collect_definitions(schema, &mut builder.defs);
        }
        let root_ty = builder.build(&root).map_err(bad)?;
        let Builder { named, types, .. } = builder;
        Ok(AvroSchema {
            types,
            root: root_ty,
            named,
            label,
            #[cfg(test)]
            avro: (root, refs),
        })
    }

    fn describe(&self, ty: TyId) -> String {
        match &self.types[ty as usize] {
            Ty::Null => "null".into(),
            Ty::Boolean => "boolean".into(),
            Ty::Int(name) | Ty::Long(name) | Ty::Blob(name) => (*name).into(),
            Ty::Float => "float".into(),
            Ty::Double => "double".into(),
            Ty::String => "string".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Fixed { name, logical: Some(logical), .. } => format!("{logical} (fixed {name})"),
            Ty::Fixed { name, .. } => format!("fixed {name}"),
            Ty::Enum { name, .. } => format!("enum {name}"),
            Ty::Array(_) => "array".into(),
            Ty::Map(_) => "map".into(),
            Ty::Union(branches) => {
                let names: Vec<String> = branches.iter().map(|&b| self.describe(b)).collect();
                format!("union [{}]", names.join(", "))
            }
            Ty::Record(r) => format!("record {}", r.name),
        }
    }

    fn leaf_kind(&self, ty: TyId) -> Option<ValueKind> {
        match self.types[ty as usize] {
            Ty::String => Some(ValueKind::Text),
            Ty::Bytes => Some(ValueKind::Bytes),
            _ => None,
        }
    }

    /// For each type: whether a record field that a type-qualified path targets lies in it.
    fn reaching(&self, targets: &HashMap<TyId, Vec<(usize, u32)>>) -> Vec<bool> {
        let mut reach: Vec<bool> = (0..self.types.len() as TyId).map(|t| targets.contains_key(&t)).collect();
        loop {
            let mut changed = false;
            for (t, ty) in self.types.iter().enumerate() {
                if reach[t] {
                    continue;
                }
                let r = match ty {
                    Ty::Array(i) | Ty::Map(i) => reach[*i as usize],
                    Ty::Union(bs) => bs.iter().any(|b| reach[*b as usize]),
                    Ty::Record(r) => r.fields.iter().any(|f| reach[f.ty as usize]),
                    _ => false,
                };
                if r {
                    reach[t] = true;
                    changed = true;
                }
            }
            if !changed {
                return reach;
            }
        }
    }

    /// True when every value of the type encodes as zero bytes (`null`, `fixed` of size 0, records
    /// of those).
    fn zero_sized(&self, ty: TyId, visiting: &mut Vec<TyId>) -> bool {
        match &self.types[ty as usize] {
            Ty::Null => true,
            Ty::Fixed { size, .. } => *size == 0,
            Ty::Record(r) => {
                if visiting.contains(&ty) {
                    return false;
                }
                visiting.push(ty);
                let zero = r.fields.iter().all(|f| self.zero_sized(f.ty, visiting));
                visiting.pop();
                zero
            }
            _ => false,
        }
    }
}

impl CompiledSchema for AvroSchema {
    fn tagged_fields(&self, tags: &[String]) -> Vec<FieldPath> {
        fn walk(schema: &AvroSchema, ty: TyId, tags: &[String], seen: &mut [bool], out: &mut Vec<FieldPath>) {
            match &schema.types[ty as usize] {
                Ty::Array(i) | Ty::Map(i) => walk(schema, *i, tags, seen, out),
                Ty::Union(bs) => bs.iter().for_each(|b| walk(schema, *b, tags, seen, out)),
                Ty::Record(r) => {
                    if std::mem::replace(&mut seen[ty as usize], true) {
                        return;
                    }
                    for f in &r.fields {
                        if f.tags.iter().any(|t| tags.contains(t)) {
                            out.push(FieldPath::from_segments(vec![
                                Segment::OfType(r.name.clone()),
                                Segment::Field(f.name.clone()),
                            ]));
                        }
                        walk(schema, f.ty, tags, seen, out);
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(self, self.root, tags, &mut vec![false; self.types.len()], &mut out);
        out
    }

    fn scanner(&self, paths: Vec<FieldPath>) -> Result<Box<dyn Scanner>> {
        let plan = Compiler::compile(self, &paths)?;
        Ok(Box::new(AvroScanner { plan, paths }))
    }
}

/// A short name for a schema text in messages: its full name if it has one.
fn schema_label(text: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Named {
        name: Option<String>,
        namespace: Option<String>,
    }
    match serde_json::from_str::<Named>(text) {
        Ok(Named { name: Some(name), namespace }) => match namespace {
            Some(ns) if !ns.is_empty() && !name.contains('.') => format!("{ns}.{name}"),
            _ => name,
        },
        _ => "(unnamed)".into(),
    }
}

fn shorten(detail: &str) -> String {
    const MAX: usize = 200;
    if detail.len() <= MAX {
        return detail.to_string();
    }
    let mut end = MAX;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &detail[..end])
}

fn has_fixed_uuid(value: &serde_json::Value, depth: usize) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let fixed_uuid = map.get("type").and_then(|t| t.as_str()) == Some("fixed")
                && map.get("logicalType").and_then(|t| t.as_str()) == Some("uuid")
                && map.get("size").and_then(|s| s.as_u64()) == Some(16);
            fixed_uuid || (depth < 256 && map.values().any(|v| has_fixed_uuid(v, depth + 1)))
        }
        serde_json::Value::Array(items) => depth < 256 && items.iter().any(|v| has_fixed_uuid(v, depth + 1)),
        _ => false,
    }
}

/// Every named type defined in a parsed schema (inline definitions included), by full name and
/// by alias.
fn collect_definitions<'s>(schema: &'s Schema, defs: &mut HashMap<String, &'s Schema>) {
    match schema {
        Schema::Record(RecordSchema { name, aliases, fields, .. }) => {
            for alias in aliases.iter().flatten() {
                defs.entry(alias.fully_qualified_name(&name.namespace).fullname(None)).or_insert(schema);
            }
            defs.insert(name.fullname(None), schema);
            fields.iter().for_each(|f| collect_definitions(&f.schema, defs));
        }
        Schema::Enum(e) => {
            for alias in e.aliases.iter().flatten() {
                defs.entry(alias.fully_qualified_name(&e.name.namespace).fullname(None)).or_insert(schema);
            }
            defs.insert(e.name.fullname(None), schema);
        }
        Schema::Fixed(f) => {
            for alias in f.aliases.iter().flatten() {
                defs.entry(alias.fully_qualified_name(&f.name.namespace).fullname(None)).or_insert(schema);
            }
            defs.insert(f.name.fullname(None), schema);
        }
        Schema::Decimal(d) => collect_definitions(&d.inner, defs),
        Schema::Array(a) => collect_definitions(&a.items, defs),
        Schema::Map(m) => collect_definitions(&m.types, defs),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_definitions(v, defs)),
        _ => {}
    }
}

struct Builder<'s> {
    defs: HashMap<String, &'s Schema>,
    named: HashMap<String, TyId>,
    types: Vec<Ty>,
}

impl<'s> Builder<'s> {
    fn push(&mut self, ty: Ty) -> TyId {
        self.types.push(ty);
        (self.types.len() - 1) as TyId
    }

    fn named(&mut self, name: &Name, ty: Ty) -> TyId {
        let full = name.fullname(None);
        if let Some(&id) = self.named.get(&full) {
            return id;
        }
        let id = self.push(ty);
        self.named.insert(full, id);
        id
    }

    fn build(&mut self, schema: &'s Schema) -> std::result::Result<TyId, String> {
        Ok(match schema {
            Schema::Null => self.push(Ty::Null),
            Schema::Boolean => self.push(Ty::Boolean),
            Schema::Int => self.push(Ty::Int("int")),
            Schema::Date => self.push(Ty::Int("date")),
            Schema::TimeMillis => self.push(Ty::Int("time-millis")),
            Schema::Long => self.push(Ty::Long("long")),
            Schema::TimeMicros => self.push(Ty::Long("time-micros")),
            Schema::TimestampMillis => self.push(Ty::Long("timestamp-millis")),
            Schema::TimestampMicros => self.push(Ty::Long("timestamp-micros")),
            Schema::TimestampNanos => self.push(Ty::Long("timestamp-nanos")),
            Schema::LocalTimestampMillis => self.push(Ty::Long("local-timestamp-millis")),
            Schema::LocalTimestampMicros => self.push(Ty::Long("local-timestamp-micros")),
            Schema::LocalTimestampNanos => self.push(Ty::Long("local-timestamp-nanos")),
            Schema::Float => self.push(Ty::Float),
            Schema::Double => self.push(Ty::Double),
            Schema::String => self.push(Ty::String),
            Schema::Bytes => self.push(Ty::Bytes),
            Schema::Uuid => self.push(Ty::Blob("uuid")),
            Schema::BigDecimal => self.push(Ty::Blob("big-decimal")),
            Schema::Duration => self.push(Ty::Fixed { name: "duration".into(), size: 12, logical: Some("duration") }),
            Schema::Decimal(d) => {
                let inner = self.build(&d.inner)?;
                match &self.types[inner as usize] {
                    Ty::Bytes => self.push(Ty::Blob("decimal")),
                    Ty::Fixed { name, size, .. } => {
                        let (name, size) = (name.clone(), *size);
                        self.push(Ty::Fixed { name, size, logical: Some("decimal") })
                    }
                    _ => return Err("a decimal is neither bytes nor fixed".into()),
                }
            }
            Schema::Fixed(f) => {
                self.named(&f.name, Ty::Fixed { name: f.name.fullname(None), size: f.size, logical: None })
            }
            Schema::Enum(e) => {
                let symbols = u32::try_from(e.symbols.len()).map_err(|_| "an enum has too many symbols")?;
                self.named(&e.name, Ty::Enum { name: e.name.fullname(None), symbols })
            }
            Schema::Array(a) => {
                let items = self.build(&a.items)?;
                self.push(Ty::Array(items))
            }
            Schema::Map(m) => {
                let values = self.build(&m.types)?;
                self.push(Ty::Map(values))
            }
            Schema::Union(u) => {
                let mut branches = Vec::with_capacity(u.variants().len());
                for v in u.variants() {
                    branches.push(self.build(v)?);
                }
                self.push(Ty::Union(branches))
            }
            Schema::Record(r) => {
                let full = r.name.fullname(None);
                if let Some(&id) = self.named.get(&full) {
                    return Ok(id);
                }
                let id = self.push(Ty::Record(RecordTy { name: full.clone(), fields: Vec::new() }));
                self.named.insert(full.clone(), id);
                let mut fields = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    let ty = self.build(&f.schema)?;
                    let tags = match f.custom_attributes.get("confluent:tags") {
                        Some(serde_json::Value::Array(tags)) => {
                            tags.iter().filter_map(|t| t.as_str()).map(str::to_string).collect()
                        }
                        _ => Vec::new(),
                    };
                    fields.push(FieldTy { name: f.name.clone(), ty, tags });
                }
                self.types[id as usize] = Ty::Record(RecordTy { name: full, fields });
                id
            }
            Schema::Ref { name } => {
                let full = name.fullname(None);
                if let Some(&id) = self.named.get(&full) {
                    return Ok(id);
                }
                let def = *self.defs.get(&full).ok_or_else(|| format!("type {full} is not defined"))?;
                let id = self.build(def)?;
                self.named.entry(full).or_insert(id);
                id
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The plan.

type NodeId = u32;

/// One instruction of a plan: how to read (and what to find in) one value.
#[derive(Debug)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    /// A string or bytes value that nothing selects.
    Blob,
    Fixed(usize),
    Enum(u32),
    /// A string or bytes value that path `path` selects.
    Leaf {
        path: u32,
        kind: ValueKind,
    },
    Record(Box<[Step]>),
    Array {
        items: NodeId,
        active: bool,
        zero: bool,
    },
    Map {
        values: NodeId,
        /// The value instructions for map keys that a path names (`attrs.k`).
        keyed: Box<[(Box<str>, NodeId)]>,
        active: bool,
        zero: bool,
    },
    Union {
        branches: Box<[Branch]>,
        /// The index of the `null` branch, if the union has one (for [`Emit::null`]).
        null: Option<u32>,
    },
}

/// One field of a record: its instruction, and its name when the location needs it (something
/// below may be selected).
#[derive(Debug)]
struct Step {
    node: NodeId,
    name: Option<Box<str>>,
}

#[derive(Debug)]
enum Branch {
    Node(NodeId),
    Leaf {
        path: u32,
        kind: ValueKind,
    },
    /// A branch that cannot hold ciphertext of a union that path `path` selects: left alone.
    Unselected {
        node: NodeId,
        path: u32,
    },
}

/// A compiled scanner program: instructions over the schema's types for one list of paths.
#[derive(Debug)]
struct Plan {
    nodes: Vec<Node>,
    root: NodeId,
    label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Cursor {
    path: u32,
    depth: u32,
}

enum Move<'k> {
    Field(&'k str),
    Key(&'k str),
    AnyKey,
    Element,
}

struct Compiler<'s> {
    schema: &'s AvroSchema,
    paths: &'s [FieldPath],
    /// Record type → (field index, path) of the type-qualified paths that select its fields.
    targets: HashMap<TyId, Vec<(usize, u32)>>,
    reach: Vec<bool>,
    memo: HashMap<(TyId, Vec<Cursor>), NodeId>,
    passive: Vec<Option<NodeId>>,
    nodes: Vec<Node>,
    active: Vec<bool>,
    matched: Vec<bool>,
    /// Per root path: the deepest point where it stopped matching, and why.
    misses: Vec<Option<(u32, String)>>,
}

impl<'s> Compiler<'s> {
    fn compile(schema: &'s AvroSchema, paths: &'s [FieldPath]) -> Result<Plan> {
        let mut targets: HashMap<TyId, Vec<(usize, u32)>> = HashMap::new();
        let mut roots = Vec::new();
        for (p, path) in paths.iter().enumerate() {
            let p = u32::try_from(p).map_err(|_| Error::policy("too many paths"))?;
            if let Some((type_name, field)) = path.type_field() {
                let ty = *schema.named.get(type_name).ok_or_else(|| {
                    Error::policy(format!("path {path}: Avro schema {} has no type {type_name}", schema.label))
                })?;
                let Ty::Record(r) = &schema.types[ty as usize] else {
                    return Err(Error::policy(format!(
                        "path {path}: {type_name} is a {}, not a record, in Avro schema {}",
                        schema.describe(ty),
                        schema.label
                    )));
                };
                let f =
                    r.fields.iter().position(|f| f.name == field).ok_or_else(|| {
                        Error::policy(format!("path {path}: record {type_name} has no field {field:?}"))
                    })?;
                targets.entry(ty).or_default().push((f, p));
            } else if path.segments().iter().any(|s| matches!(s, Segment::OfType(_))) || path.segments().is_empty() {
                return Err(Error::policy(format!("path {path} is not a valid Avro field path")));
            } else {
                roots.push(Cursor { path: p, depth: 0 });
            }
        }
        let reach = schema.reaching(&targets);
        let mut c = Compiler {
            schema,
            paths,
            targets,
            reach,
            memo: HashMap::new(),
            passive: vec![None; schema.types.len()],
            nodes: Vec::new(),
            active: Vec::new(),
            matched: vec![false; paths.len()],
            misses: vec![None; paths.len()],
        };
        let root = c.node(schema.root, roots)?;
        if let Some(p) = c.matched.iter().position(|m| !m) {
            let path = &paths[p];
            return Err(Error::policy(match (&c.misses[p], path.type_field()) {
                (_, Some((type_name, field))) => format!(
                    "path {path}: field {field:?} of record {type_name} is not reachable in Avro schema {}",
                    schema.label
                ),
                (Some((_, why)), None) => format!("path {path} is not in Avro schema {}: {why}", schema.label),
                (None, None) => format!("path {path} selects nothing in Avro schema {}", schema.label),
            }));
        }
        Ok(Plan { nodes: c.nodes, root, label: schema.label.clone() })
    }

    fn segment(&self, c: Cursor) -> &'s Segment {
        &self.paths[c.path as usize].segments()[c.depth as usize]
    }

    fn complete(&self, c: Cursor) -> bool {
        c.depth as usize == self.paths[c.path as usize].segments().len()
    }

    fn miss(&mut self, c: Cursor, why: String) {
        let slot = &mut self.misses[c.path as usize];
        if slot.as_ref().is_none_or(|(depth, _)| *depth < c.depth) {
            *slot = Some((c.depth, why));
        }
    }

    fn advance(&self, pending: &[Cursor], step: &Move<'_>) -> Vec<Cursor> {
        pending
            .iter()
            .filter(|&&c| match (self.segment(c), step) {
                (Segment::Field(name), Move::Field(f) | Move::Key(f)) => name == f,
                (Segment::AnyMember, Move::Field(_) | Move::Key(_) | Move::AnyKey) => true,
                (Segment::AnyElement, Move::Element) => true,
                _ => false,
            })
            .map(|c| Cursor { path: c.path, depth: c.depth + 1 })
            .collect()
    }

    fn add(&mut self, node: Node, active: bool) -> NodeId {
        self.nodes.push(node);
        self.active.push(active);
        (self.nodes.len() - 1) as NodeId
    }

    /// The instruction for a value of `ty` where nothing can be selected.
    fn passive(&mut self, ty: TyId) -> NodeId {
        if let Some(id) = self.passive[ty as usize] {
            return id;
        }
        let schema = self.schema;
        let node = match &schema.types[ty as usize] {
            Ty::Null => Node::Null,
            Ty::Boolean => Node::Boolean,
            Ty::Int(_) => Node::Int,
            Ty::Long(_) => Node::Long,
            Ty::Float => Node::Float,
            Ty::Double => Node::Double,
            Ty::String | Ty::Bytes | Ty::Blob(_) => Node::Blob,
            Ty::Fixed { size, .. } => Node::Fixed(*size),
            Ty::Enum { symbols, .. } => Node::Enum(*symbols),
            Ty::Array(_) | Ty::Map(_) | Ty::Union(_) | Ty::Record(_) => Node::Null, // filled below
        };
        let id = self.add(node, false);
        self.passive[ty as usize] = Some(id);
        let node = match &schema.types[ty as usize] {
            Ty::Array(items) => {
                let zero = schema.zero_sized(*items, &mut Vec::new());
                Node::Array { items: self.passive(*items), active: false, zero }
            }
            Ty::Map(values) => {
                let zero = schema.zero_sized(*values, &mut Vec::new());
                Node::Map { values: self.passive(*values), keyed: Box::new([]), active: false, zero }
            }
            Ty::Union(bs) => {
                let branches = bs.iter().map(|&b| Branch::Node(self.passive(b))).collect();
                Node::Union { branches, null: None }
            }
            Ty::Record(r) => {
                Node::Record(r.fields.iter().map(|f| Step { node: self.passive(f.ty), name: None }).collect())
            }
            _ => return id,
        };
        self.nodes[id as usize] = node;
        id
    }

    /// The instruction for a value of `ty` where `cursors` are the paths matched so far.
    fn node(&mut self, ty: TyId, mut cursors: Vec<Cursor>) -> Result<NodeId> {
        cursors.sort_unstable();
        cursors.dedup();
        if cursors.is_empty() && !self.reach[ty as usize] {
            return Ok(self.passive(ty));
        }
        if let Some(&id) = self.memo.get(&(ty, cursors.clone())) {
            return Ok(id);
        }
        let schema = self.schema;
        let (complete, pending): (Vec<Cursor>, Vec<Cursor>) = cursors.iter().partition(|&&c| self.complete(c));
        if let [a, b, ..] = complete.as_slice() {
            return Err(Error::policy(format!(
                "paths {} and {} select the same {} value in Avro schema {}",
                self.paths[a.path as usize],
                self.paths[b.path as usize],
                schema.describe(ty),
                schema.label
            )));
        }
        let selected = complete.first().map(|c| c.path);
        let not_selectable = |this: &Self, p: u32| {
            Error::policy(format!(
                "path {} selects a value of type {} in Avro schema {}; only string and bytes values \
                 (or unions with a string or bytes branch) can be encrypted",
                this.paths[p as usize],
                schema.describe(ty),
                schema.label
            ))
        };
        let ty_ref = &schema.types[ty as usize];
        // Scalars: a leaf, or nothing to find.
        if !matches!(ty_ref, Ty::Array(_) | Ty::Map(_) | Ty::Union(_) | Ty::Record(_)) {
            for &c in &pending {
                let why = format!("{} has no {}", schema.describe(ty), describe_segment(self.segment(c)));
                self.miss(c, why);
            }
            return match (selected, schema.leaf_kind(ty)) {
                (None, _) => Ok(self.passive(ty)),
                (Some(path), Some(kind)) => {
                    self.matched[path as usize] = true;
                    let id = self.add(Node::Leaf { path, kind }, true);
                    self.memo.insert((ty, cursors), id);
                    Ok(id)
                }
                (Some(path), None) => Err(not_selectable(self, path)),
            };
        }
        if let (Some(path), false) = (selected, matches!(ty_ref, Ty::Union(_))) {
            return Err(not_selectable(self, path));
        }
        let id = self.add(Node::Null, true);
        self.memo.insert((ty, cursors.clone()), id);
        let node = match ty_ref {
            Ty::Union(bs) => {
                if let Some(path) = selected {
                    if !bs.iter().any(|&b| schema.leaf_kind(b).is_some()) {
                        return Err(not_selectable(self, path));
                    }
                    self.matched[path as usize] = true;
                }
                let mut branches = Vec::with_capacity(bs.len());
                let mut null = None;
                for (i, &b) in bs.iter().enumerate() {
                    let is_null = matches!(schema.types[b as usize], Ty::Null);
                    if is_null && null.is_none() {
                        null = Some(i as u32);
                    }
                    branches.push(match (selected, schema.leaf_kind(b)) {
                        (Some(path), Some(kind)) => Branch::Leaf { path, kind },
                        (Some(path), None) if !is_null => {
                            Branch::Unselected { node: self.node(b, pending.clone())?, path }
                        }
                        _ => Branch::Node(self.node(b, pending.clone())?),
                    });
                }
                Node::Union { branches: branches.into(), null }
            }
            Ty::Record(r) => {
                for &c in &pending {
                    let known = match self.segment(c) {
                        Segment::Field(name) => r.fields.iter().any(|f| &f.name == name),
                        Segment::AnyMember => !r.fields.is_empty(),
                        _ => false,
                    };
                    if !known {
                        let why = format!("record {} has no {}", r.name, describe_segment(self.segment(c)));
                        self.miss(c, why);
                    }
                }
                let mut steps = Vec::with_capacity(r.fields.len());
                for (fi, f) in r.fields.iter().enumerate() {
                    let mut next = self.advance(&pending, &Move::Field(&f.name));
                    if let Some(ts) = self.targets.get(&ty) {
                        next.extend(ts.iter().filter(|(i, _)| *i == fi).map(|&(_, path)| Cursor { path, depth: 2 }));
                    }
                    let node = self.node(f.ty, next)?;
                    let name = self.active[node as usize].then(|| f.name.clone().into_boxed_str());
                    steps.push(Step { node, name });
                }
                Node::Record(steps.into())
            }
            Ty::Array(items) => {
                for &c in &pending {
                    if !matches!(self.segment(c), Segment::AnyElement) {
                        let why = format!("an array has no {}", describe_segment(self.segment(c)));
                        self.miss(c, why);
                    }
                }
                let next = self.advance(&pending, &Move::Element);
                let node = self.node(*items, next)?;
                let zero = schema.zero_sized(*items, &mut Vec::new());
                Node::Array { items: node, active: self.active[node as usize], zero }
            }
            Ty::Map(values) => {
                for &c in &pending {
                    if matches!(self.segment(c), Segment::AnyElement) {
                        self.miss(c, "a map has no elements ([*]); its values are .*".into());
                    }
                }
                let mut keyed: Vec<(Box<str>, NodeId)> = Vec::new();
                for &c in &pending {
                    if let Segment::Field(key) = self.segment(c) {
                        if keyed.iter().all(|(k, _)| **k != **key) {
                            let next = self.advance(&pending, &Move::Key(key));
                            let node = self.node(*values, next)?;
                            keyed.push((key.clone().into_boxed_str(), node));
                        }
                    }
                }
                let next = self.advance(&pending, &Move::AnyKey);
                let node = self.node(*values, next)?;
                let active = self.active[node as usize] || keyed.iter().any(|(_, n)| self.active[*n as usize]);
                let zero = schema.zero_sized(*values, &mut Vec::new());
                Node::Map { values: node, keyed: keyed.into(), active, zero }
            }
            _ => unreachable!("scalars are handled above"),
        };
        self.nodes[id as usize] = node;
        Ok(id)
    }
}

fn describe_segment(s: &Segment) -> String {
    match s {
        Segment::Field(name) => format!("field {name:?}"),
        Segment::AnyMember => "members (.*)".into(),
        Segment::AnyElement => "elements ([*])".into(),
        Segment::OfType(t) => format!("type {t}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Scanning.

/// Scans Avro binary records of one writer schema for one list of paths.
#[derive(Debug)]
pub(crate) struct AvroScanner {
    plan: Plan,
    paths: Vec<FieldPath>,
}

impl Scanner for AvroScanner {
    fn scan<'a>(&self, payload: &'a [u8], what: &str) -> Result<Box<dyn super::Scan<'a> + 'a>> {
        Ok(Box::new(self.scan_record(payload, what)?))
    }
}

impl AvroScanner {
    fn scan_record<'a>(&self, payload: &'a [u8], what: &str) -> Result<AvroScan<'a>> {
        let mut run = Run {
            plan: &self.plan,
            paths: &self.paths,
            buf: payload,
            pos: 0,
            at: ConcretePath::default(),
            scan: AvroScan {
                payload,
                leaves: Vec::with_capacity(self.paths.len().max(4)),
                edits: Vec::with_capacity(self.paths.len().max(4)),
                locations: String::new(),
            },
        };
        let result = run.node(self.plan.root, 0).and_then(|()| {
            if run.pos == payload.len() {
                Ok(())
            } else {
                Err(Bad { reason: "trailing bytes after the record", offset: run.pos })
            }
        });
        result.map_err(|bad| {
            Error::record(format!(
                "{what} is not valid Avro for schema {}: {} at byte {}",
                self.plan.label, bad.reason, bad.offset
            ))
        })?;
        Ok(run.scan)
    }
}

/// Why a payload does not match its schema.
#[derive(Debug)]
struct Bad {
    reason: &'static str,
    offset: usize,
}

/// A change the write makes to the payload: `start..end` is replaced.
#[derive(Debug)]
struct Edit {
    start: usize,
    end: usize,
    what: EditKind,
}

#[derive(Debug)]
enum EditKind {
    /// Leaf `leaf`; its length prefix starts at `value_at` (after a union branch index, if any).
    Leaf { leaf: usize, value_at: usize, null: Option<u32> },
    /// A sized block header, re-emitted as a plain count.
    Count(u64),
}

/// A scanned record.
#[derive(Debug)]
pub(crate) struct AvroScan<'a> {
    payload: &'a [u8],
    leaves: Vec<Leaf<'a>>,
    edits: Vec<Edit>,
    locations: String,
}

struct Run<'p, 'a> {
    plan: &'p Plan,
    paths: &'p [FieldPath],
    buf: &'a [u8],
    pos: usize,
    at: ConcretePath,
    scan: AvroScan<'a>,
}

impl<'a> Run<'_, 'a> {
    fn bad<T>(&self, reason: &'static str) -> std::result::Result<T, Bad> {
        Err(Bad { reason, offset: self.pos })
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    fn long(&mut self) -> std::result::Result<i64, Bad> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(i64::from(b >> 1) ^ -i64::from(b & 1))
            }
            Some(_) => self.long_slow(),
            None => self.bad("unexpected end"),
        }
    }

    fn long_slow(&mut self) -> std::result::Result<i64, Bad> {
        let mut z = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else { return self.bad("unexpected end") };
            if i == 9 && b > 1 {
                return self.bad("varint longer than 64 bits");
            }
            self.pos += 1;
            z |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        self.bad("varint longer than 64 bits")
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], Bad> {
        if n > self.remaining() {
            return self.bad("value runs past the end");
        }
        let v = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(v)
    }

    /// A length-prefixed value (string, bytes, map key).
    fn blob(&mut self) -> std::result::Result<&'a [u8], Bad> {
        let len = self.long()?;
        if len < 0 {
            return self.bad("negative length");
        }
        self.take(usize::try_from(len).unwrap_or(usize::MAX))
    }

    /// A block header: the item count (0 ends the array or map) and, for the sized form, the
    /// block's byte size.
    fn block(&mut self, zero: bool) -> std::result::Result<(u64, Option<usize>), Bad> {
        let count = self.long()?;
        let (n, size) = if count < 0 {
            let size = self.long()?;
            if size < 0 || size as u64 > self.remaining() as u64 {
                return self.bad("block size runs past the end");
            }
            (count.unsigned_abs(), Some(size as usize))
        } else {
            (count as u64, None)
        };
        // Every item takes at least a byte, unless no item takes any.
        if !zero && n > self.remaining() as u64 {
            return self.bad("block count runs past the end");
        }
        Ok((n, size))
    }

    fn node(&mut self, id: NodeId, depth: u32) -> std::result::Result<(), Bad> {
        let plan = self.plan;
        match &plan.nodes[id as usize] {
            Node::Null => {}
            Node::Boolean => {
                if self.take(1)?[0] > 1 {
                    self.pos -= 1;
                    return self.bad("boolean is neither 0 nor 1");
                }
            }
            Node::Int => {
                if i32::try_from(self.long()?).is_err() {
                    return self.bad("int out of range");
                }
            }
            Node::Long => {
                self.long()?;
            }
            Node::Float => {
                self.take(4)?;
            }
            Node::Double => {
                self.take(8)?;
            }
            Node::Fixed(size) => {
                self.take(*size)?;
            }
            Node::Blob => {
                self.blob()?;
            }
            Node::Enum(symbols) => {
                let i = self.long()?;
                if i < 0 || i >= i64::from(*symbols) {
                    return self.bad("enum index out of range");
                }
            }
            Node::Leaf { path, kind } => self.leaf(*path, *kind, self.pos, None)?,
            Node::Record(steps) => {
                if depth >= MAX_DEPTH {
                    return self.bad("record nested too deep");
                }
                for step in steps.iter() {
                    match &step.name {
                        None => self.node(step.node, depth + 1)?,
                        Some(name) => {
                            let mark = self.at.len();
                            self.at.push_field(name);
                            self.node(step.node, depth + 1)?;
                            self.at.truncate(mark);
                        }
                    }
                }
            }
            Node::Array { items, active, zero } => {
                if depth >= MAX_DEPTH {
                    return self.bad("array nested too deep");
                }
                let mut index = 0usize;
                loop {
                    let header = self.pos;
                    let (n, size) = self.block(*zero)?;
                    if n == 0 {
                        break;
                    }
                    match size {
                        Some(size) if !active => self.pos += size,
                        _ if *zero => {}
                        _ if !active => {
                            for _ in 0..n {
                                self.node(*items, depth + 1)?;
                            }
                        }
                        _ => {
                            let edit = self.open_block(header, n, size);
                            for _ in 0..n {
                                let mark = self.at.len();
                                self.at.push_index(index);
                                self.node(*items, depth + 1)?;
                                self.at.truncate(mark);
                                index += 1;
                            }
                            self.close_block(edit, size)?;
                        }
                    }
                }
            }
            Node::Map { values, keyed, active, zero } => {
                if depth >= MAX_DEPTH {
                    return self.bad("map nested too deep");
                }
                loop {
                    let header = self.pos;
                    let (n, size) = self.block(false)?;
                    if n == 0 {
                        break;
                    }
                    match size {
                        Some(size) if !active => self.pos += size,
                        _ if !active => {
                            for _ in 0..n {
                                self.blob()?;
                                if !zero {
                                    self.node(*values, depth + 1)?;
                                }
                            }
                        }
                        _ => {
                            let edit = self.open_block(header, n, size);
                            for _ in 0..n {
                                let key_at = self.pos;
                                let key = std::str::from_utf8(self.blob()?)
                                    .map_err(|_| Bad { reason: "map key is not UTF-8", offset: key_at })?;
                                let node = keyed.iter().find(|(k, _)| **k == *key).map_or(*values, |(_, n)| *n);
                                let mark = self.at.len();
                                self.at.push_field(key);
                                self.node(node, depth + 1)?;
                                self.at.truncate(mark);
                            }
                            self.close_block(edit, size)?;
                        }
                    }
                }
            }
            Node::Union { branches, null } => {
                let start = self.pos;
                let index = self.long()?;
                let Some(branch) = usize::try_from(index).ok().and_then(|i| branches.get(i)) else {
                    self.pos = start;
                    return self.bad("union branch index out of range");
                };
                match branch {
                    Branch::Node(node) => self.node(*node, depth)?,
                    Branch::Leaf { path, kind } => self.leaf(*path, *kind, start, *null)?,
                    Branch::Unselected { node, path } => {
                        tracing::debug!(
                            path = %self.paths[*path as usize],
                            location = self.at.as_str(),
                            branch = index,
                            "Avro union holds a branch that cannot be encrypted; left as it is"
                        );
                        self.node(*node, depth)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Before the items of an active block: a sized header is to be re-emitted as a plain count
    /// if the block holds a leaf. Returns the edit's index.
    fn open_block(&mut self, header: usize, n: u64, size: Option<usize>) -> usize {
        let edits = &mut self.scan.edits;
        if size.is_some() {
            edits.push(Edit { start: header, end: self.pos, what: EditKind::Count(n) });
        }
        edits.len()
    }

    fn close_block(&mut self, edit: usize, size: Option<usize>) -> std::result::Result<(), Bad> {
        if let Some(size) = size {
            let Some(Edit { end: body, .. }) = self.scan.edits.get(edit - 1) else { unreachable!() };
            if self.pos - body != size {
                return self.bad("block size does not match its items");
            }
            if self.scan.edits.len() == edit {
                self.scan.edits.pop(); // no leaf inside: the header stays as it was
            }
        }
        Ok(())
    }

    fn leaf(&mut self, path: u32, kind: ValueKind, start: usize, null: Option<u32>) -> std::result::Result<(), Bad> {
        let value_at = self.pos;
        let value = self.blob()?;
        if kind == ValueKind::Text && std::str::from_utf8(value).is_err() {
            return Err(Bad { reason: "string is not UTF-8", offset: value_at });
        }
        let scan = &mut self.scan;
        let from = scan.locations.len();
        scan.locations.push_str(self.at.as_str());
        scan.edits.push(Edit {
            start,
            end: self.pos,
            what: EditKind::Leaf { leaf: scan.leaves.len(), value_at, null },
        });
        scan.leaves.push(Leaf { path: path as usize, at: from..scan.locations.len(), kind, value });
        Ok(())
    }
}

impl<'a> super::Scan<'a> for AvroScan<'a> {
    fn leaves(&self) -> &[Leaf<'a>] {
        &self.leaves
    }

    fn write(&self, fill: &mut Fill<'_, 'a>) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.payload.len() + self.leaves.len() * 64);
        let mut copied = 0;
        for edit in &self.edits {
            out.extend_from_slice(&self.payload[copied..edit.start]);
            copied = edit.end;
            match edit.what {
                EditKind::Count(n) => put_long(&mut out, n as i64),
                EditKind::Leaf { leaf, value_at, null } => {
                    let leaf = &self.leaves[leaf];
                    let at = &self.locations[leaf.at.clone()];
                    let mut emit = AvroEmit {
                        out: &mut out,
                        kind: leaf.kind,
                        branch: &self.payload[edit.start..value_at],
                        raw: &self.payload[edit.start..edit.end],
                        null,
                        emitted: false,
                    };
                    fill(leaf, at, &mut emit)?;
                    if !emit.emitted {
                        return Err(Error::record(format!("no value was written for field {at}")));
                    }
                }
            }
        }
        out.extend_from_slice(&self.payload[copied..]);
        Ok(out)
    }
}

/// Writes a long as Avro does: zig-zag, then base-128 varint.
fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Writes one leaf's replacement.
struct AvroEmit<'o, 'r> {
    out: &'o mut Vec<u8>,
    kind: ValueKind,
    /// The union branch index before the value, if the leaf is a union branch (else empty).
    branch: &'r [u8],
    /// The leaf as it is: branch index, length, bytes.
    raw: &'r [u8],
    null: Option<u32>,
    emitted: bool,
}

impl AvroEmit<'_, '_> {
    fn once(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.emitted, true) {
            return Err(Error::record("more than one value was written for one field"));
        }
        Ok(())
    }

    fn value(&mut self, bytes: &[u8]) -> Result<()> {
        self.once()?;
        self.out.extend_from_slice(self.branch);
        put_long(self.out, bytes.len() as i64);
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

impl Emit for AvroEmit<'_, '_> {
    /// The string, in a string or bytes field (as its UTF-8 bytes).
    fn text(&mut self, text: &str) -> Result<()> {
        self.value(text.as_bytes())
    }

    /// The bytes, in a bytes field; a string field cannot hold them.
    fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        if self.kind != ValueKind::Bytes {
            return Err(Error::record("an Avro string field cannot hold raw bytes"));
        }
        self.value(bytes)
    }

    fn json(&mut self, _: &str) -> Result<()> {
        Err(Error::record("an Avro record cannot hold a JSON value"))
    }

    /// The union's `null` branch when the leaf is a branch of a union that has one; otherwise
    /// Avro has no null for the field, and it becomes the empty string (or empty bytes).
    fn null(&mut self) -> Result<()> {
        match self.null {
            Some(index) => {
                self.once()?;
                put_long(self.out, i64::from(index));
                Ok(())
            }
            None => self.value(&[]),
        }
    }

    fn keep(&mut self) -> Result<()> {
        self.once()?;
        self.out.extend_from_slice(self.raw);
        Ok(())
    }
}
