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
//!   size) whose size the replacements change gets its header re-emitted as a plain positive
//!   count, without the size (equally valid Avro); one whose size stays the same keeps its header;
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

pub(crate) mod values;

use super::{CompiledSchema, Emit, Fill, Leaf, Scanner, ValueKind};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::{ConcretePath, FieldPath, FieldStep, Segment};

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
        symbols: Vec<String>,
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
    fn top_level_text(&self, payload: &[u8], member: &str) -> Result<Option<String>> {
        AvroSchema::top_level_text(self, payload, member)
    }

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
                u32::try_from(e.symbols.len()).map_err(|_| "an enum has too many symbols")?;
                self.named(&e.name, Ty::Enum { name: e.name.fullname(None), symbols: e.symbols.clone() })
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
    /// A node being compiled (never in a finished plan).
    Pending,
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
        quick: Quick,
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

/// One field of a record: its instruction, and when the location needs it (something below may
/// be selected) the text its name adds to the location.
#[derive(Debug)]
struct Step {
    node: NodeId,
    /// The node's kind when it is a common scalar, read without a call.
    quick: Quick,
    name: Option<FieldStep>,
}

#[derive(Debug, Clone, Copy)]
enum Quick {
    Null,
    Blob,
    Long,
    /// Anything else (or a node still being compiled).
    Other,
}

#[derive(Debug)]
enum Branch {
    Node(NodeId, Quick),
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
    /// Whether anything can be selected at all.
    active_root: bool,
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
        Ok(Plan { active_root: c.active[root as usize], nodes: c.nodes, root, label: schema.label.clone() })
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

    fn quick(&self, node: NodeId) -> Quick {
        match self.nodes[node as usize] {
            Node::Null => Quick::Null,
            Node::Blob => Quick::Blob,
            Node::Long => Quick::Long,
            _ => Quick::Other,
        }
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
            Ty::Enum { symbols, .. } => Node::Enum(symbols.len() as u32),
            Ty::Array(_) | Ty::Map(_) | Ty::Union(_) | Ty::Record(_) => Node::Pending, // filled below
        };
        let id = self.add(node, false);
        self.passive[ty as usize] = Some(id);
        let node = match &schema.types[ty as usize] {
            Ty::Array(items) => {
                let zero = schema.zero_sized(*items, &mut Vec::new());
                let items = self.passive(*items);
                Node::Array { items, quick: self.quick(items), active: false, zero }
            }
            Ty::Map(values) => {
                let zero = schema.zero_sized(*values, &mut Vec::new());
                Node::Map { values: self.passive(*values), keyed: Box::new([]), active: false, zero }
            }
            Ty::Union(bs) => {
                let branches = bs
                    .iter()
                    .map(|&b| {
                        let node = self.passive(b);
                        Branch::Node(node, self.quick(node))
                    })
                    .collect();
                Node::Union { branches, null: None }
            }
            Ty::Record(r) => Node::Record(
                r.fields
                    .iter()
                    .map(|f| {
                        let node = self.passive(f.ty);
                        Step { node, quick: self.quick(node), name: None }
                    })
                    .collect(),
            ),
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
        let id = self.add(Node::Pending, true);
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
                        _ => {
                            let node = self.node(b, pending.clone())?;
                            Branch::Node(node, self.quick(node))
                        }
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
                    let name = self.active[node as usize].then(|| FieldStep::of(&f.name));
                    steps.push(Step { node, quick: self.quick(node), name });
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
                Node::Array { items: node, quick: self.quick(node), active: self.active[node as usize], zero }
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
        Ok(self.scan_record(payload, what)?)
    }
}

impl AvroScanner {
    fn scan_record<'a>(&self, payload: &'a [u8], what: &str) -> Result<Box<AvroScan<'a>>> {
        let mut run = Run {
            plan: &self.plan,
            paths: &self.paths,
            buf: payload,
            pos: 0,
            at: Location {
                text: Vec::with_capacity(if self.plan.active_root { 128 } else { 0 }),
                base: 0,
                scratch: ConcretePath::default(),
            },
            scan: Box::new(AvroScan {
                payload,
                leaves: Few::new(Leaf { path: 0, at: 0..0, kind: ValueKind::Json, value: &[] }),
                edits: Few::new(Edit { start: 0, end: 0, what: EditKind::Block { count: 0, size: 0 } }),
                locations: String::new(),
            }),
            fail: ("", 0),
        };
        let mut result = run.node(self.plan.root, 0);
        if result.is_ok() && run.pos != payload.len() {
            result = run.bad("trailing bytes after the record");
        }
        if result.is_err() {
            let (reason, offset) = run.fail;
            return Err(Error::record(format!(
                "{what} is not valid Avro for schema {}: {reason} at byte {offset}",
                self.plan.label
            )));
        }
        run.scan.locations =
            String::from_utf8(run.at.text).map_err(|_| Error::record("Avro scan: a location is not UTF-8"))?;
        Ok(run.scan)
    }
}

/// The payload does not match its schema: why and where are in [`Run::fail`].
#[derive(Debug)]
struct Stop;

type Res<T> = std::result::Result<T, Stop>;

/// A change the write makes to the payload: `start..end` is replaced.
#[derive(Debug, Clone, Copy)]
struct Edit {
    start: usize,
    end: usize,
    what: EditKind,
}

#[derive(Debug, Clone, Copy)]
enum EditKind {
    /// Leaf `leaf`; its length prefix starts at `value_at` (after a union branch index, if any).
    Leaf { leaf: usize, value_at: usize, null: Option<u32> },
    /// The header of a sized block (`count` items in `size` bytes) that holds leaves. Written as
    /// it was if the block's new size is the same, else as a plain count.
    Block { count: u64, size: usize },
}

/// A scanned record.
#[derive(Debug)]
pub(crate) struct AvroScan<'a> {
    payload: &'a [u8],
    leaves: Few<Leaf<'a>>,
    edits: Few<Edit>,
    locations: String,
}

/// A vector that keeps its first `N` items inline: most records have a few leaves, and a scan
/// then allocates no vectors for them.
#[derive(Debug)]
struct Few<T, const N: usize = 8> {
    inline: [T; N],
    len: usize,
    /// All the items, once there are more than `N`.
    spill: Vec<T>,
}

impl<T: Clone, const N: usize> Few<T, N> {
    fn new(filler: T) -> Self {
        Few { inline: std::array::from_fn(|_| filler.clone()), len: 0, spill: Vec::new() }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn as_slice(&self) -> &[T] {
        if self.len <= N {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    fn push(&mut self, item: T) {
        if self.len < N {
            self.inline[self.len] = item;
        } else {
            if self.len == N {
                self.spill.reserve(2 * N);
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(item);
        }
        self.len += 1;
    }

    fn pop(&mut self) {
        if self.len > N {
            self.spill.pop();
            if self.len == N + 1 {
                self.spill.clear(); // the inline items are the same
            }
        }
        self.len = self.len.saturating_sub(1);
    }
}

struct Run<'p, 'a> {
    plan: &'p Plan,
    paths: &'p [FieldPath],
    buf: &'a [u8],
    pos: usize,
    at: Location,
    scan: Box<AvroScan<'a>>,
    /// Why and where the payload does not match, once it does not.
    fail: (&'static str, usize),
}

/// The concrete location of the value being read, at the end of the text of the leaf locations
/// found so far (one buffer for both).
struct Location {
    /// `text[..base]`: the locations of the leaves; `text[base..]`: the current location. UTF-8:
    /// only `str`s are added.
    text: Vec<u8>,
    base: usize,
    /// For map keys, which are only known at run time.
    scratch: ConcretePath,
}

impl Location {
    fn mark(&self) -> usize {
        self.text.len() - self.base
    }

    fn reset(&mut self, mark: usize) {
        self.text.truncate(self.base + mark);
    }

    fn current(&self) -> &str {
        std::str::from_utf8(&self.text[self.base..]).unwrap_or_default()
    }

    fn push_field(&mut self, name: &FieldStep) {
        let segment = if self.text.len() == self.base { &name.first } else { &name.later };
        self.text.extend_from_slice(segment.as_bytes());
    }

    fn push_key(&mut self, key: &str) {
        let scratch = &mut self.scratch;
        scratch.truncate(0);
        if self.text.len() > self.base {
            scratch.push_field("x");
        }
        let prefix = scratch.len();
        scratch.push_field(key);
        self.text.extend_from_slice(&scratch.as_str().as_bytes()[prefix..]);
    }

    /// As [`ConcretePath::push_index`]: `[7]`.
    fn push_index(&mut self, index: usize) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = index;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.text.push(b'[');
        self.text.extend_from_slice(&digits[at..]);
        self.text.push(b']');
    }

    /// Keeps the current location as a leaf's; returns its range.
    fn commit(&mut self) -> std::ops::Range<usize> {
        let range = self.base..self.text.len();
        self.text.extend_from_within(range.clone());
        self.base = range.end;
        range
    }
}

impl<'a> Run<'_, 'a> {
    #[cold]
    fn bad<T>(&mut self, reason: &'static str) -> Res<T> {
        self.bad_at(reason, self.pos)
    }

    #[cold]
    fn bad_at<T>(&mut self, reason: &'static str, offset: usize) -> Res<T> {
        self.fail = (reason, offset);
        Err(Stop)
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline(always)]
    fn long(&mut self) -> Res<i64> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(i64::from(b >> 1) ^ -i64::from(b & 1))
            }
            Some(_) => self.long_slow(),
            None => self.bad("unexpected end"),
        }
    }

    #[inline(never)]
    fn long_slow(&mut self) -> Res<i64> {
        let rest = &self.buf[self.pos..];
        if let Some(word) = rest.first_chunk::<8>() {
            // Up to 8 bytes at once: find the last byte, then pack its 7-bit groups.
            let word = u64::from_le_bytes(*word);
            let stops = !word & 0x8080_8080_8080_8080;
            if stops != 0 {
                let bits = stops.trailing_zeros() + 1; // through the last byte's stop bit
                let mut z = if bits == 64 { word } else { word & ((1u64 << bits) - 1) };
                z = (z & 0x007f_007f_007f_007f) | ((z & 0x7f00_7f00_7f00_7f00) >> 1);
                z = (z & 0x0000_3fff_0000_3fff) | ((z & 0x3fff_0000_3fff_0000) >> 2);
                z = (z & 0x0000_0000_0fff_ffff) | ((z & 0x0fff_ffff_0000_0000) >> 4);
                self.pos += bits as usize / 8;
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        let mut z = 0u64;
        let mut i = 0;
        while i < rest.len() && i < 10 {
            let b = rest[i];
            z |= u64::from(b & 0x7f) << (7 * i);
            i += 1;
            if b < 0x80 {
                if i == 10 && b > 1 {
                    break;
                }
                self.pos += i;
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        if i < 10 {
            self.pos = self.buf.len();
            return self.bad("unexpected end");
        }
        self.bad("varint longer than 64 bits")
    }

    #[inline]
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if n > self.remaining() {
            return self.bad("value runs past the end");
        }
        let v = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(v)
    }

    /// Skips a length-prefixed value.
    #[inline(always)]
    fn skip_blob(&mut self) -> Res<()> {
        let len = self.long()?;
        if len < 0 {
            return self.bad("negative length");
        }
        if len as u64 > self.remaining() as u64 {
            return self.bad("value runs past the end");
        }
        self.pos += len as usize;
        Ok(())
    }

    /// A length-prefixed value (string, bytes, map key).
    #[inline]
    fn blob(&mut self) -> Res<&'a [u8]> {
        let len = self.long()?;
        if len < 0 {
            return self.bad("negative length");
        }
        self.take(usize::try_from(len).unwrap_or(usize::MAX))
    }

    /// A block header: the item count (0 ends the array or map) and, for the sized form, the
    /// block's byte size.
    fn block(&mut self, zero: bool) -> Res<(u64, Option<usize>)> {
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

    /// Reads one value: the common scalars inline, anything else through [`Run::node`].
    #[inline(always)]
    fn value(&mut self, node: NodeId, quick: Quick, depth: u32) -> Res<()> {
        match quick {
            Quick::Blob => self.skip_blob(),
            Quick::Long => self.long().map(drop),
            Quick::Null => Ok(()),
            Quick::Other => self.node(node, depth),
        }
    }

    fn node(&mut self, id: NodeId, depth: u32) -> Res<()> {
        let plan = self.plan;
        match &plan.nodes[id as usize] {
            Node::Pending => self.bad("unfinished plan"),
            Node::Null => Ok(()),
            Node::Boolean => {
                if self.take(1)?[0] > 1 {
                    self.pos -= 1;
                    return self.bad("boolean is neither 0 nor 1");
                }
                Ok(())
            }
            Node::Int => match i32::try_from(self.long()?) {
                Ok(_) => Ok(()),
                Err(_) => self.bad("int out of range"),
            },
            Node::Long => self.long().map(drop),
            Node::Float => self.take(4).map(drop),
            Node::Double => self.take(8).map(drop),
            Node::Fixed(size) => self.take(*size).map(drop),
            Node::Blob => self.skip_blob(),
            Node::Enum(symbols) => {
                let i = self.long()?;
                if i < 0 || i >= i64::from(*symbols) {
                    return self.bad("enum index out of range");
                }
                Ok(())
            }
            Node::Leaf { path, kind } => self.leaf(*path, *kind, self.pos, None),
            Node::Record(steps) => self.record(steps, depth),
            Node::Array { items, quick, active, zero } => {
                if *active {
                    self.active_array(*items, *zero, depth)
                } else {
                    self.passive_array(*items, *quick, *zero, depth)
                }
            }
            Node::Map { values, keyed, active, zero } => {
                if *active {
                    self.active_map(*values, keyed, depth)
                } else {
                    self.passive_map(*values, *zero, depth)
                }
            }
            Node::Union { branches, null } => {
                let start = self.pos;
                let index = self.long()?;
                let Some(branch) = usize::try_from(index).ok().and_then(|i| branches.get(i)) else {
                    self.pos = start;
                    return self.bad("union branch index out of range");
                };
                match *branch {
                    Branch::Node(node, quick) => self.value(node, quick, depth),
                    Branch::Leaf { path, kind } => self.leaf(path, kind, start, *null),
                    Branch::Unselected { node, path } => {
                        self.unselected(path, index);
                        self.node(node, depth)
                    }
                }
            }
        }
    }

    #[cold]
    fn unselected(&self, path: u32, branch: i64) {
        tracing::debug!(
            path = %self.paths[path as usize],
            location = self.at.current(),
            branch,
            "Avro union holds a branch that cannot be encrypted; left as it is"
        );
    }

    #[inline(never)]
    fn record(&mut self, steps: &[Step], depth: u32) -> Res<()> {
        if depth >= MAX_DEPTH {
            return self.bad("record nested too deep");
        }
        for step in steps {
            match &step.name {
                None => self.value(step.node, step.quick, depth + 1)?,
                Some(name) => {
                    let mark = self.at.mark();
                    self.at.push_field(name);
                    self.value(step.node, step.quick, depth + 1)?;
                    self.at.reset(mark);
                }
            }
        }
        Ok(())
    }

    #[inline(never)]
    fn passive_array(&mut self, items: NodeId, quick: Quick, zero: bool, depth: u32) -> Res<()> {
        if depth >= MAX_DEPTH {
            return self.bad("array nested too deep");
        }
        loop {
            match self.block(zero)? {
                (0, _) => return Ok(()),
                (_, Some(size)) => self.pos += size,
                _ if zero => {}
                (n, None) => {
                    for _ in 0..n {
                        self.value(items, quick, depth + 1)?;
                    }
                }
            }
        }
    }

    #[inline(never)]
    fn active_array(&mut self, items: NodeId, zero: bool, depth: u32) -> Res<()> {
        if depth >= MAX_DEPTH {
            return self.bad("array nested too deep");
        }
        let mut index = 0usize;
        loop {
            let header = self.pos;
            let (n, size) = self.block(zero)?;
            if n == 0 {
                return Ok(());
            }
            let edit = self.open_block(header, n, size);
            for _ in 0..if zero { 0 } else { n } {
                let mark = self.at.mark();
                self.at.push_index(index);
                self.node(items, depth + 1)?;
                self.at.reset(mark);
                index += 1;
            }
            self.close_block(edit, size)?;
        }
    }

    #[inline(never)]
    fn passive_map(&mut self, values: NodeId, zero: bool, depth: u32) -> Res<()> {
        if depth >= MAX_DEPTH {
            return self.bad("map nested too deep");
        }
        loop {
            match self.block(false)? {
                (0, _) => return Ok(()),
                (_, Some(size)) => self.pos += size,
                (n, None) => {
                    for _ in 0..n {
                        self.blob()?;
                        if !zero {
                            self.node(values, depth + 1)?;
                        }
                    }
                }
            }
        }
    }

    #[inline(never)]
    fn active_map(&mut self, values: NodeId, keyed: &[(Box<str>, NodeId)], depth: u32) -> Res<()> {
        if depth >= MAX_DEPTH {
            return self.bad("map nested too deep");
        }
        loop {
            let header = self.pos;
            let (n, size) = self.block(false)?;
            if n == 0 {
                return Ok(());
            }
            let edit = self.open_block(header, n, size);
            for _ in 0..n {
                let key_at = self.pos;
                let Ok(key) = std::str::from_utf8(self.blob()?) else {
                    return self.bad_at("map key is not UTF-8", key_at);
                };
                let node = keyed.iter().find(|(k, _)| **k == *key).map_or(values, |(_, n)| *n);
                let mark = self.at.mark();
                self.at.push_key(key);
                self.node(node, depth + 1)?;
                self.at.reset(mark);
            }
            self.close_block(edit, size)?;
        }
    }

    /// Before the items of an active block: a sized header is to be re-emitted as a plain count
    /// if the block holds a leaf. Returns the edit's index.
    fn open_block(&mut self, header: usize, n: u64, size: Option<usize>) -> usize {
        let edits = &mut self.scan.edits;
        if let Some(size) = size {
            edits.push(Edit { start: header, end: self.pos, what: EditKind::Block { count: n, size } });
        }
        edits.len()
    }

    fn close_block(&mut self, edit: usize, size: Option<usize>) -> Res<()> {
        if let Some(size) = size {
            let Some(&Edit { end: body, .. }) = self.scan.edits.as_slice().get(edit - 1) else { unreachable!() };
            if self.pos - body != size {
                return self.bad("block size does not match its items");
            }
            if self.scan.edits.len() == edit {
                self.scan.edits.pop(); // no leaf inside: the header stays as it was
            }
        }
        Ok(())
    }

    fn leaf(&mut self, path: u32, kind: ValueKind, start: usize, null: Option<u32>) -> Res<()> {
        let value_at = self.pos;
        let value = self.blob()?;
        if kind == ValueKind::Text && !value.is_ascii() && std::str::from_utf8(value).is_err() {
            return self.bad_at("string is not UTF-8", value_at);
        }
        let scan = &mut self.scan;
        scan.edits.push(Edit {
            start,
            end: self.pos,
            what: EditKind::Leaf { leaf: scan.leaves.len(), value_at, null },
        });
        scan.leaves.push(Leaf { path: path as usize, at: self.at.commit(), kind, value });
        Ok(())
    }
}

impl<'a> super::Scan<'a> for AvroScan<'a> {
    fn leaves(&self) -> &[Leaf<'a>] {
        self.leaves.as_slice()
    }

    fn write(&self, fill: &mut Fill<'_, 'a>) -> Result<Vec<u8>> {
        let payload = self.payload;
        let mut out = Vec::with_capacity(payload.len() + self.leaves.len() * 64);
        let mut copied = 0;
        // Sized blocks holding leaves, innermost last: (header range, count, size, where the
        // header goes in `out`).
        let mut blocks: Vec<(usize, usize, u64, usize, usize)> = Vec::new();
        let close = |out: &mut Vec<u8>,
                     copied: &mut usize,
                     upto: usize,
                     blocks: &mut Vec<(usize, usize, u64, usize, usize)>| {
            while let Some(&(start, end, n, size, at)) = blocks.last() {
                if end + size > upto {
                    break;
                }
                blocks.pop();
                out.extend_from_slice(&payload[*copied..end + size]);
                *copied = end + size;
                if out.len() - at == size {
                    // The block kept its size: its header stays as it was.
                    out.splice(at..at, payload[start..end].iter().copied());
                } else {
                    let mut header = Vec::with_capacity(10);
                    put_long(&mut header, n as i64);
                    out.splice(at..at, header);
                }
            }
        };
        for edit in self.edits.as_slice() {
            close(&mut out, &mut copied, edit.start, &mut blocks);
            out.extend_from_slice(&payload[copied..edit.start]);
            copied = edit.end;
            match edit.what {
                EditKind::Block { count, size } => blocks.push((edit.start, edit.end, count, size, out.len())),
                EditKind::Leaf { leaf, value_at, null } => {
                    let leaf = &self.leaves.as_slice()[leaf];
                    let at = &self.locations[leaf.at.clone()];
                    let mut emit = AvroEmit {
                        out: &mut out,
                        kind: leaf.kind,
                        branch: &payload[edit.start..value_at],
                        raw: &payload[edit.start..edit.end],
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
        close(&mut out, &mut copied, usize::MAX, &mut blocks);
        out.extend_from_slice(&payload[copied..]);
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use apache_avro::schema::ResolvedSchema;
    use apache_avro::types::Value;
    use proptest::prelude::*;

    use super::*;

    const PAYMENT: &str = include_str!("../../../schemas/payment/payment.avsc");
    const PAYMENT_JSON: &str = include_str!("../../../schemas/payment/payment.json");

    fn p(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    fn paths(list: &[&str]) -> Vec<FieldPath> {
        list.iter().map(|s| p(s)).collect()
    }

    fn schema(text: &str) -> AvroSchema {
        AvroSchema::parse(text, &[]).unwrap()
    }

    fn scanner(schema: &AvroSchema, list: &[&str]) -> Box<dyn Scanner> {
        schema.scanner(paths(list)).unwrap()
    }

    /// A JSON document as Avro binary, through apache-avro.
    fn encode(schema: &AvroSchema, json: &str) -> Vec<u8> {
        let (root, refs) = &schema.avro;
        let all: Vec<&Schema> = refs.iter().chain(std::iter::once(root)).collect();
        let value = Value::from(serde_json::from_str::<serde_json::Value>(json).unwrap())
            .resolve_schemata(root, all.clone())
            .unwrap();
        apache_avro::to_avro_datum_schemata(root, all, value).unwrap()
    }

    fn decode(schema: &AvroSchema, bytes: &[u8]) -> Value {
        let (root, refs) = &schema.avro;
        let all: Vec<&Schema> = refs.iter().chain(std::iter::once(root)).collect();
        let mut reader = bytes;
        let value = apache_avro::from_avro_datum_schemata(root, all, &mut reader, None).unwrap();
        assert!(reader.is_empty(), "trailing bytes");
        value
    }

    fn payment() -> (AvroSchema, Vec<u8>) {
        let s = schema(PAYMENT);
        let bytes = encode(&s, PAYMENT_JSON);
        (s, bytes)
    }

    fn payment_without_phone(s: &AvroSchema) -> Vec<u8> {
        let mut doc: serde_json::Value = serde_json::from_str(PAYMENT_JSON).unwrap();
        doc["phone"] = serde_json::Value::Null;
        encode(s, &doc.to_string())
    }

    /// A deterministic stand-in for encryption: the leaf's path index, location and value.
    fn fake(leaf: &Leaf<'_>, at: &str, emit: &mut dyn Emit) -> Result<()> {
        let text = format!("<{}|{at}|{}>", leaf.path, String::from_utf8_lossy(leaf.value));
        match leaf.kind {
            ValueKind::Bytes => emit.bytes(text.as_bytes()),
            _ => emit.text(&text),
        }
    }

    fn rewrite<'a>(scanner: &dyn Scanner, payload: &'a [u8], fill: &mut Fill<'_, 'a>) -> Result<Vec<u8>> {
        scanner.scan(payload, "test record")?.write(fill)
    }

    fn found(scanner: &dyn Scanner, payload: &[u8]) -> Vec<(usize, String, String)> {
        let scan = scanner.scan(payload, "test record").unwrap();
        let scan = scan.as_ref();
        // Locations come from the fill callback, as the codec sees them.
        let mut out = Vec::new();
        scan.write(&mut |leaf, at, emit| {
            out.push((leaf.path, at.to_string(), String::from_utf8_lossy(leaf.value).into_owned()));
            emit.keep()
        })
        .unwrap();
        assert_eq!(out.len(), scan.leaves().len());
        out
    }

    // -- The reference: apache-avro's decoder and encoder over a value tree. ---------------------

    #[derive(Debug)]
    enum Seen<'v> {
        Field(&'v str),
        Key(&'v str),
        Index,
    }

    struct Reference<'s> {
        names: HashMap<Name, &'s Schema>,
        paths: &'s [FieldPath],
    }

    impl<'s> Reference<'s> {
        fn selects(&self, steps: &[Seen<'_>], field_of: Option<(&str, &str)>) -> Option<usize> {
            self.paths.iter().position(|path| match (path.type_field(), field_of) {
                (Some(target), Some(here)) => target == here,
                (Some(_), None) => false,
                (None, _) => {
                    path.segments().len() == steps.len()
                        && path.segments().iter().zip(steps).all(|(seg, step)| match (seg, step) {
                            (Segment::Field(n), Seen::Field(f) | Seen::Key(f)) => n == f,
                            (Segment::AnyMember, Seen::Field(_) | Seen::Key(_)) => true,
                            (Segment::AnyElement, Seen::Index) => true,
                            _ => false,
                        })
                }
            })
        }

        #[allow(clippy::too_many_arguments)]
        /// Walks one value; `check`: whether a path may select it (not for a union's branch,
        /// which is selected through its union).
        fn walk(
            &self,
            schema: &'s Schema,
            value: &mut Value,
            steps: &mut Vec<Seen<'s>>,
            at: &mut ConcretePath,
            field_of: Option<(&str, &str)>,
            check: bool,
            fill: &mut ReferenceFill<'_>,
        ) -> Result<()> {
            let schema = match schema {
                Schema::Ref { name } => self.names[name],
                other => other,
            };
            if let Some(path) = self.selects(steps, field_of).filter(|_| check && !steps.is_empty()) {
                let (inner, branch, null) = match (schema, &mut *value) {
                    (Schema::Union(u), Value::Union(i, inner)) => {
                        let null = u.variants().iter().position(|v| matches!(v, Schema::Null));
                        (&mut **inner, Some(*i), null.map(|n| n as u32))
                    }
                    (_, v) => (v, None, None),
                };
                let leaf = match &*inner {
                    Value::String(s) => Some((ValueKind::Text, s.clone().into_bytes())),
                    Value::Bytes(b) => Some((ValueKind::Bytes, b.clone())),
                    _ => None,
                };
                if let Some((kind, bytes)) = leaf {
                    let leaf = Leaf { path, at: 0..at.len(), kind, value: &bytes };
                    let mut emit = ValueEmit { slot: value, kind, branch, null, done: false };
                    fill(&leaf, at.as_str(), &mut emit)?;
                    assert!(emit.done, "fill wrote nothing");
                    return Ok(());
                }
            }
            match (schema, value) {
                (Schema::Record(r), Value::Record(fields)) => {
                    let name = r.name.fullname(None);
                    for (f, (_, v)) in r.fields.iter().zip(fields) {
                        steps.push(Seen::Field(&f.name));
                        let mark = at.len();
                        at.push_field(&f.name);
                        self.walk(&f.schema, v, steps, at, Some((&name, &f.name)), true, fill)?;
                        at.truncate(mark);
                        steps.pop();
                    }
                }
                (Schema::Array(a), Value::Array(items)) => {
                    for (i, v) in items.iter_mut().enumerate() {
                        steps.push(Seen::Index);
                        let mark = at.len();
                        at.push_index(i);
                        self.walk(&a.items, v, steps, at, None, true, fill)?;
                        at.truncate(mark);
                        steps.pop();
                    }
                }
                (Schema::Map(m), Value::Map(entries)) => {
                    for (k, v) in entries.iter_mut() {
                        let k: &'s str = Box::leak(k.clone().into_boxed_str()); // tests only
                        steps.push(Seen::Key(k));
                        let mark = at.len();
                        at.push_field(k);
                        self.walk(&m.types, v, steps, at, None, true, fill)?;
                        at.truncate(mark);
                        steps.pop();
                    }
                }
                (Schema::Union(u), Value::Union(i, inner)) => {
                    self.walk(&u.variants()[*i as usize], inner, steps, at, None, false, fill)?;
                }
                _ => {}
            }
            Ok(())
        }
    }

    type ReferenceFill<'f> = dyn FnMut(&Leaf<'_>, &str, &mut dyn Emit) -> Result<()> + 'f;

    /// Writes a replacement into the value tree.
    struct ValueEmit<'v> {
        slot: &'v mut Value,
        kind: ValueKind,
        branch: Option<u32>,
        null: Option<u32>,
        done: bool,
    }

    impl ValueEmit<'_> {
        fn set(&mut self, bytes: Vec<u8>) -> Result<()> {
            let value = match self.kind {
                ValueKind::Text => Value::String(String::from_utf8(bytes).unwrap()),
                _ => Value::Bytes(bytes),
            };
            *self.slot = match self.branch {
                Some(i) => Value::Union(i, Box::new(value)),
                None => value,
            };
            self.done = true;
            Ok(())
        }
    }

    impl Emit for ValueEmit<'_> {
        fn text(&mut self, text: &str) -> Result<()> {
            self.set(text.as_bytes().to_vec())
        }
        fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
            if self.kind != ValueKind::Bytes {
                return Err(Error::record("string field"));
            }
            self.set(bytes.to_vec())
        }
        fn json(&mut self, _: &str) -> Result<()> {
            Err(Error::record("json"))
        }
        fn null(&mut self) -> Result<()> {
            match self.null {
                Some(n) => {
                    *self.slot = Value::Union(n, Box::new(Value::Null));
                    self.done = true;
                    Ok(())
                }
                None => self.set(Vec::new()),
            }
        }
        fn keep(&mut self) -> Result<()> {
            self.done = true;
            Ok(())
        }
    }

    /// The generic path: apache-avro decodes the record into values, the selected values are
    /// replaced, apache-avro encodes it again.
    fn generic(
        schema: &AvroSchema,
        paths: &[FieldPath],
        payload: &[u8],
        fill: &mut ReferenceFill<'_>,
    ) -> Result<Vec<u8>> {
        let (root, refs) = &schema.avro;
        let all: Vec<&Schema> = refs.iter().chain(std::iter::once(root)).collect();
        let mut reader = payload;
        let mut value = apache_avro::from_avro_datum_schemata(root, all.clone(), &mut reader, None)
            .map_err(|e| Error::record(e.to_string()))?;
        if !reader.is_empty() {
            return Err(Error::record("trailing bytes"));
        }
        let resolved = ResolvedSchema::try_from(all.clone()).unwrap();
        let names = resolved.get_names().iter().map(|(n, s)| (n.clone(), *s)).collect();
        let reference = Reference { names, paths };
        reference.walk(root, &mut value, &mut Vec::new(), &mut ConcretePath::default(), None, true, fill)?;
        apache_avro::to_avro_datum_schemata(root, all, value).map_err(|e| Error::record(e.to_string()))
    }

    // -- Schemas for the comparisons. ------------------------------------------------------------

    const ORDER: &str = r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
        {"name": "ok", "type": "boolean"},
        {"name": "score", "type": "double"},
        {"name": "ratio", "type": "float"},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "digest", "type": {"type": "fixed", "name": "Md5", "size": 4}},
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
            {"name": "name", "type": "string"},
            {"name": "card", "type": "bytes"},
            {"name": "addr", "type": ["null", {"type": "record", "name": "Address", "fields": [
                {"name": "street", "type": "string"}, {"name": "zip", "type": "int"}]}]}]}},
        {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
            {"name": "sku", "type": "string"},
            {"name": "qty", "type": "int"},
            {"name": "note", "type": ["null", "long", "string"]},
            {"name": "blob", "type": ["bytes", "null"]}]}}},
        {"name": "attrs", "type": {"type": "map", "values": "string"}},
        {"name": "nested", "type": {"type": "map", "values": {"type": "array", "items": "Address"}}},
        {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "last", "type": "Color"}
    ]}"#;

    fn order(items: usize, attrs: &[(&str, &str)], addr: bool) -> String {
        let items: Vec<String> = (0..items)
            .map(|i| {
                let note = match i % 3 {
                    0 => "null".to_string(),
                    1 => format!("{}", 1_000_000_007 * i as i64),
                    _ => format!("\"note {i} \u{e9}\""),
                };
                let blob = if i % 2 == 0 { format!("\"b{i}\"") } else { "null".into() };
                format!(r#"{{"sku": "SKU-{i}", "qty": {i}, "note": {note}, "blob": {blob}}}"#)
            })
            .collect();
        let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k:?}: {v:?}")).collect();
        let addr = if addr { r#"{"street": "1 Main St", "zip": 12345}"# } else { "null" };
        format!(
            r#"{{"ok": true, "score": -1.5e300, "ratio": 0.25, "color": "GREEN", "digest": "abcd",
                "when": 1714000000000, "day": -3, "customer": {{"name": "Ada", "card": "4111-1111",
                "addr": {addr}}}, "items": [{}], "attrs": {{{}}},
                "nested": {{"n": [{{"street": "Deep St", "zip": 1}}, {{"street": "Deeper", "zip": -2}}]}},
                "uid": "550e8400-e29b-41d4-a716-446655440000", "last": "BLUE"}}"#,
            items.join(", "),
            attrs.join(", ")
        )
    }

    const LIST: &str = r#"{"type": "record", "name": "Node", "namespace": "ll", "fields": [
        {"name": "value", "type": "string", "confluent:tags": ["PII"]},
        {"name": "n", "type": "int"},
        {"name": "next", "type": ["null", "Node"]}]}"#;

    /// A linked list of `len` nodes, encoded by hand (apache-avro's value resolution is
    /// exponential in the depth of recursive unions).
    fn list(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..len {
            let value = format!("v{i}");
            put_long(&mut out, value.len() as i64);
            out.extend_from_slice(value.as_bytes());
            put_long(&mut out, i as i64);
            out.push(if i + 1 < len { 2 } else { 0 });
        }
        out
    }

    const TREE: &str = r#"{"type": "record", "name": "Tree", "fields": [
        {"name": "label", "type": ["null", "string"], "confluent:tags": ["PII"]},
        {"name": "weight", "type": "double"},
        {"name": "kids", "type": {"type": "array", "items": "Tree"}}]}"#;

    const TREE_DOC: &str = r#"{"label": "root", "weight": 1.0, "kids": [
        {"label": null, "weight": 2.0, "kids": []},
        {"label": "b", "weight": 3.0, "kids": [{"label": "b0", "weight": 4.0, "kids": []}]}]}"#;

    const ADDRESS: &str = r#"{"type": "record", "name": "Address", "namespace": "bench", "fields": [
        {"name": "street", "type": "string", "confluent:tags": ["PII"]},
        {"name": "city", "type": "string"}]}"#;

    const ENVELOPE: &str = r#"{"type": "record", "name": "Envelope", "namespace": "app", "fields": [
        {"name": "who", "type": "bench.Address"},
        {"name": "alt", "type": ["null", "bench.Address"]},
        {"name": "secret", "type": "bytes", "confluent:tags": ["PCI", "PII"]}]}"#;

    /// Fast path against the reference: the same bytes — or the same decoded value where the
    /// reference cannot write the same bytes (`relaxed`): it re-orders maps with several entries
    /// (a `HashMap`) and writes every array and map as one plain block.
    fn compare(schema: &AvroSchema, list: &[&str], json: &str, relaxed: bool) -> Vec<u8> {
        let payload = encode(schema, json);
        compare_bytes(schema, list, &payload, relaxed)
    }

    fn compare_bytes(schema: &AvroSchema, list: &[&str], payload: &[u8], relaxed: bool) -> Vec<u8> {
        let paths = paths(list);
        let scanner = schema.scanner(paths.clone()).unwrap();
        type FillFn = fn(&Leaf<'_>, &str, &mut dyn Emit) -> Result<()>;
        let fills: [FillFn; 4] = [
            fake,
            |_, _, emit| emit.keep(),
            |_, _, emit| emit.null(),
            |leaf, _, emit| if leaf.path % 2 == 0 { emit.text("****") } else { emit.null() },
        ];
        let mut first = Vec::new();
        for (n, fill) in fills.into_iter().enumerate() {
            let (mut fast_leaves, mut reference_leaves) = (Vec::new(), Vec::new());
            let fast = rewrite(scanner.as_ref(), payload, &mut |l, a, e| {
                fast_leaves.push((l.path, a.to_string(), l.kind == ValueKind::Bytes, l.value.to_vec()));
                fill(l, a, e)
            })
            .unwrap();
            let reference = generic(schema, &paths, payload, &mut |l, a, e| {
                reference_leaves.push((l.path, a.to_string(), l.kind == ValueKind::Bytes, l.value.to_vec()));
                fill(l, a, e)
            })
            .unwrap();
            fast_leaves.sort();
            reference_leaves.sort();
            assert_eq!(fast_leaves, reference_leaves, "the same leaves: {list:?}");
            if relaxed {
                assert_eq!(decode(schema, &fast), decode(schema, &reference), "fill {n}: {list:?}");
            } else {
                assert_eq!(fast, reference, "fill {n}: {list:?}");
            }
            if n == 0 {
                first = fast;
            }
        }
        first
    }

    // -- Tests. ----------------------------------------------------------------------------------

    #[test]
    fn payment_tags() {
        let s = schema(PAYMENT);
        let tagged: Vec<String> = s.tagged_fields(&["PII".into()]).iter().map(|p| p.to_string()).collect();
        assert_eq!(
            tagged,
            ["bench.Payment::email", "bench.Payment::ssn", "bench.Address::street", "bench.Payment::phone"]
        );
        assert!(s.tagged_fields(&["PCI".into()]).is_empty());
        assert!(s.tagged_fields(&[]).is_empty());
    }

    #[test]
    fn tags_follow_references_and_recursion() {
        let s = AvroSchema::parse(ENVELOPE, &[ADDRESS.to_string()]).unwrap();
        let tagged: Vec<String> =
            s.tagged_fields(&["PII".into(), "PCI".into()]).iter().map(|p| p.to_string()).collect();
        assert_eq!(tagged, ["bench.Address::street", "app.Envelope::secret"], "each field once, in schema order");
        let tagged: Vec<String> = schema(LIST).tagged_fields(&["PII".into()]).iter().map(|p| p.to_string()).collect();
        assert_eq!(tagged, ["ll.Node::value"]);
        let tagged: Vec<String> = schema(TREE).tagged_fields(&["PII".into()]).iter().map(|p| p.to_string()).collect();
        assert_eq!(tagged, ["Tree::label"]);
    }

    #[test]
    fn payment_leaves_and_locations() {
        let (s, bytes) = payment();
        let tagged = s.tagged_fields(&["PII".into()]);
        let scanner = s.scanner(tagged).unwrap();
        assert_eq!(
            found(scanner.as_ref(), &bytes),
            [
                (0, "email".into(), "jane.doe@example.com".into()),
                (1, "ssn".into(), "123-45-6789".into()),
                (2, "address.street".into(), "1600 Amphitheatre Parkway".into()),
                (3, "phone".into(), "+1-650-555-0100".into()),
            ]
        );
        let scan = scanner.scan(&bytes, "v").unwrap();
        assert!(scan.leaves().iter().all(|l| l.kind == ValueKind::Text));
        let no_phone = payment_without_phone(&s);
        assert_eq!(found(scanner.as_ref(), &no_phone).len(), 3, "a null union branch is not selected");

        let by_root = scanner_paths(&s, &["email", "address.street", "phone"]);
        let got: Vec<String> = found(by_root.as_ref(), &bytes).into_iter().map(|(_, at, _)| at).collect();
        assert_eq!(got, ["email", "address.street", "phone"]);
        let tags = scanner_paths(&s, &["tags[*]"]);
        let got: Vec<String> = found(tags.as_ref(), &bytes).into_iter().map(|(_, at, _)| at).collect();
        assert_eq!(got, ["tags[0]", "tags[1]", "tags[2]"]);
    }

    fn scanner_paths(s: &AvroSchema, list: &[&str]) -> Box<dyn Scanner> {
        scanner(s, list)
    }

    #[test]
    fn order_locations() {
        let s = schema(ORDER);
        let doc = order(3, &[("k1", "v1"), ("a b", "v2")], true);
        let bytes = encode(&s, &doc);
        let sc =
            scanner(&s, &["customer.addr.street", "items[*].note", "attrs.*", "nested.*[*].street", "customer.card"]);
        let mut got: Vec<(usize, String)> = found(sc.as_ref(), &bytes).into_iter().map(|(p, at, _)| (p, at)).collect();
        got.sort();
        assert_eq!(
            got,
            [
                (0, "customer.addr.street".into()),
                (1, "items[2].note".into()),
                (2, "attrs.k1".into()),
                (2, "attrs[\"a b\"]".into()),
                (3, "nested.n[0].street".into()),
                (3, "nested.n[1].street".into()),
                (4, "customer.card".into()),
            ]
        );
        let kinds: Vec<ValueKind> = sc.scan(&bytes, "v").unwrap().leaves().iter().map(|l| l.kind).collect();
        assert!(kinds.contains(&ValueKind::Bytes));
        // A named key of a map, and a type-qualified path (locations still from the root).
        let sc = scanner(&s, &["attrs.k1", "shop.Address::street"]);
        let got: Vec<String> = found(sc.as_ref(), &bytes).into_iter().map(|(_, at, _)| at).collect();
        assert_eq!(got, ["customer.addr.street", "attrs.k1", "nested.n[0].street", "nested.n[1].street"]);
    }

    #[test]
    fn recursive_types_with_type_qualified_paths() {
        let s = schema(LIST);
        let sc = scanner(&s, &["ll.Node::value"]);
        let got: Vec<String> = found(sc.as_ref(), &list(3)).into_iter().map(|(_, at, _)| at).collect();
        assert_eq!(got, ["value", "next.value", "next.next.value"]);
        let s = schema(TREE);
        let sc = scanner(&s, &["Tree::label"]);
        let got: Vec<(String, String)> =
            found(sc.as_ref(), &encode(&s, TREE_DOC)).into_iter().map(|(_, at, v)| (at, v)).collect();
        assert_eq!(
            got,
            [
                ("label".into(), "root".into()),
                ("kids[1].label".into(), "b".into()),
                ("kids[1].kids[0].label".into(), "b0".into())
            ]
        );
    }

    #[test]
    fn fast_path_matches_apache_avro() {
        let (s, bytes) = payment();
        let tagged: Vec<String> = s.tagged_fields(&["PII".into()]).iter().map(|p| p.to_string()).collect();
        let tagged: Vec<&str> = tagged.iter().map(String::as_str).collect();
        compare_bytes(&s, &tagged, &bytes, false);
        compare_bytes(&s, &tagged, &payment_without_phone(&s), false);
        compare_bytes(&s, &["email", "ssn", "address.street", "phone", "tags[*]"], &bytes, false);
        compare_bytes(&s, &["address.*"], &bytes, false);

        let o = schema(ORDER);
        let sets: [&[&str]; 4] = [
            &[
                "customer.name",
                "customer.card",
                "customer.addr.street",
                "items[*].sku",
                "items[*].note",
                "items[*].blob",
                "attrs.*",
            ],
            &["shop.Address::street", "shop.Item::sku", "attrs.k1"],
            &["shop.Customer::name", "shop.Item::note", "nested.*[*].street"],
            &["items[*].blob"],
        ];
        for set in sets {
            for (items, addr) in [(0, false), (1, true), (5, true), (4, false)] {
                compare(&o, set, &order(items, &[], addr), false);
                compare(&o, set, &order(items, &[("k1", "one")], addr), false);
                compare(&o, set, &order(items, &[("k1", "one"), ("k2", "two"), ("k 3", "three")], addr), true);
            }
        }

        let e = AvroSchema::parse(ENVELOPE, &[ADDRESS.to_string()]).unwrap();
        let doc = r#"{"who": {"street": "S1", "city": "C1"}, "alt": {"street": "S2", "city": "C2"}, "secret": "\u0000\u00ff"}"#;
        let out = compare(&e, &["bench.Address::street", "app.Envelope::secret"], doc, false);
        let got = decode(&e, &out);
        assert!(format!("{got:?}").contains("<0|alt.street|S2>"), "{got:?}");
        compare(
            &e,
            &["who.street", "alt.city"],
            r#"{"who": {"street": "S1", "city": "C1"}, "alt": null, "secret": ""}"#,
            false,
        );

        let l = schema(LIST);
        for len in [1, 2, 10, 16] {
            // (apache-avro's encoder recurses deeply: longer lists overflow a test thread's stack)
            compare_bytes(&l, &["ll.Node::value"], &list(len), false);
            compare_bytes(&l, &["next.value"], &list(len), false);
        }
        let t = schema(TREE);
        compare(&t, &["Tree::label"], TREE_DOC, false);
        compare(&t, &["kids[*].label"], TREE_DOC, false);
    }

    #[test]
    fn keep_round_trips_exactly() {
        let (s, bytes) = payment();
        let sc = s.scanner(s.tagged_fields(&["PII".into()])).unwrap();
        assert_eq!(rewrite(sc.as_ref(), &bytes, &mut |_, _, e| e.keep()).unwrap(), bytes);
        let o = schema(ORDER);
        let bytes = encode(&o, &order(4, &[("k1", "a"), ("k2", "b")], true));
        let sc = scanner(&o, &["attrs.*", "items[*].note", "shop.Address::street"]);
        assert_eq!(rewrite(sc.as_ref(), &bytes, &mut |_, _, e| e.keep()).unwrap(), bytes);
    }

    #[test]
    fn null_and_errors_from_fill() {
        let (s, bytes) = payment();
        let sc = scanner(&s, &["email", "phone"]);
        let out = rewrite(sc.as_ref(), &bytes, &mut |_, _, e| e.null()).unwrap();
        let Value::Record(fields) = decode(&s, &out) else { panic!() };
        assert_eq!(fields[2].1, Value::String(String::new()), "a plain string field has no null: empty");
        assert_eq!(fields[10].1, Value::Union(0, Box::new(Value::Null)), "a union field gets its null branch");

        let kind = |r: Result<Vec<u8>>| r.unwrap_err().kind();
        assert_eq!(kind(rewrite(sc.as_ref(), &bytes, &mut |_, _, e| e.bytes(b"x"))), ErrorKind::Record);
        assert_eq!(kind(rewrite(sc.as_ref(), &bytes, &mut |_, _, e| e.json("1"))), ErrorKind::Record);
        assert_eq!(kind(rewrite(sc.as_ref(), &bytes, &mut |_, _, _| Ok(()))), ErrorKind::Record);
        assert_eq!(
            kind(rewrite(sc.as_ref(), &bytes, &mut |_, _, e| {
                e.keep()?;
                e.keep()
            })),
            ErrorKind::Record
        );
        // Bytes fields take bytes and text.
        let o = schema(ORDER);
        let bytes = encode(&o, &order(2, &[], true));
        let sc = scanner(&o, &["customer.card", "items[*].blob"]);
        let out =
            rewrite(sc.as_ref(), &bytes, &mut |l, _, e| if l.path == 0 { e.bytes(&[0, 255]) } else { e.text("t") });
        let Value::Record(fields) = decode(&o, &out.unwrap()) else { panic!() };
        assert!(format!("{:?}", fields[7].1).contains("Bytes([0, 255])"));
        // null on ["bytes", "null"]: its null branch is index 1.
        let out = rewrite(sc.as_ref(), &bytes, &mut |_, _, e| e.null()).unwrap();
        let Value::Record(fields) = decode(&o, &out) else { panic!() };
        let Value::Array(items) = &fields[8].1 else { panic!() };
        let Value::Record(item) = &items[0] else { panic!() };
        assert_eq!(item[3].1, Value::Union(1, Box::new(Value::Null)));
    }

    #[test]
    fn non_string_union_branch_is_left_alone() {
        let o = schema(ORDER);
        let bytes = encode(&o, &order(3, &[], false));
        let sc = scanner(&o, &["items[*].note"]);
        // Item 0: null, item 1: a long, item 2: a string. Only the string is selected.
        let got: Vec<String> = found(sc.as_ref(), &bytes).into_iter().map(|(_, at, _)| at).collect();
        assert_eq!(got, ["items[2].note"]);
    }

    #[test]
    fn sized_blocks() {
        let s = schema(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "a", "type": {"type": "array", "items": "string"}},
                {"name": "b", "type": {"type": "array", "items": "long"}},
                {"name": "m", "type": {"type": "map", "values": "string"}},
                {"name": "o", "type": {"type": "array", "items": ["null", "string"]}}]}"#,
        );
        let mut payload = Vec::new();
        // a: a sized block of 2 ("x", "yy": 5 bytes), a plain block of 1 ("z"), end.
        payload.extend([3, 10, 2, b'x', 4, b'y', b'y', 2, 2, b'z', 0]);
        // b: a sized block of 3 longs (3 bytes), end. Not selected: skipped by its size.
        payload.extend([5, 6, 2, 4, 6, 0]);
        // m: a sized block of 1 entry ("k" -> "v": 4 bytes), end.
        payload.extend([1, 8, 2, b'k', 2, b'v', 0]);
        // o: a sized block of 2 nulls (2 bytes): selected, but holds no leaf, so kept as it is.
        payload.extend([3, 4, 0, 0, 0]);
        let list = ["a[*]", "m.*", "o[*]"];
        let sc = scanner(&s, &list);
        let got: Vec<String> = found(sc.as_ref(), &payload).into_iter().map(|(_, at, _)| at).collect();
        assert_eq!(got, ["a[0]", "a[1]", "a[2]", "m.k"]);
        assert_eq!(rewrite(sc.as_ref(), &payload, &mut |_, _, e| e.keep()).unwrap(), payload);
        let out = rewrite(sc.as_ref(), &payload, &mut |_, _, e| e.text("Q")).unwrap();
        let mut expected = Vec::new();
        expected.extend([4, 2, b'Q', 2, b'Q', 2, 2, b'Q', 0]); // sized header -> plain count 2
        expected.extend([5, 6, 2, 4, 6, 0]); // untouched
        expected.extend([1, 8, 2, b'k', 2, b'Q', 0]); // same size (4 bytes): header kept
        expected.extend([3, 4, 0, 0, 0]); // untouched
        assert_eq!(out, expected);
        // The reference agrees on the value (it writes every block in the plain form).
        compare_bytes(&s, &list, &payload, true);
        // A block size that does not match its items.
        let mut bad = payload.clone();
        bad[1] = 12;
        assert_eq!(sc.scan(&bad, "v").err().unwrap().kind(), ErrorKind::Record);
    }

    #[test]
    fn policy_errors_name_the_path() {
        let s = schema(PAYMENT);
        for (path, needle) in [
            ("nope", "no field \"nope\""),
            ("customer_id", "type long"),
            ("address", "record bench.Address"),
            ("tags", "type array"),
            ("address.nope", "record bench.Address has no field \"nope\""),
            ("email.x", "string has no field \"x\""),
            ("tags[*].x", "string has no field"),
            ("address[*]", "has no elements"),
            ("bench.Nope::x", "no type bench.Nope"),
            ("bench.Address::nope", "no field \"nope\""),
            ("bench.Payment::amount_cents", "type long"),
        ] {
            let err = s.scanner(vec![p(path)]).err().unwrap_or_else(|| panic!("{path} should fail"));
            assert_eq!(err.kind(), ErrorKind::Policy, "{path}");
            assert!(err.message().contains(path), "{path}: {}", err.message());
            assert!(err.message().contains(needle), "{path}: {}", err.message());
        }
        let err = s.scanner(paths(&["email", "bench.Payment::email"])).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Policy);
        assert!(err.message().contains("select the same"), "{}", err.message());
        let o = schema(ORDER);
        for (path, needle) in [
            ("uid", "type uuid"),
            ("color", "enum shop.Color"),
            ("digest", "fixed shop.Md5"),
            ("attrs[*]", "no elements"),
            ("shop.Color::x", "not a record"),
        ] {
            let err = o.scanner(vec![p(path)]).err().unwrap_or_else(|| panic!("{path} should fail"));
            assert_eq!(err.kind(), ErrorKind::Policy, "{path}");
            assert!(err.message().contains(needle), "{path}: {}", err.message());
        }
        let u = schema(
            r#"{"type": "record", "name": "U", "fields": [{"name": "x", "type": ["null", "long"]},
                {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}}]}"#,
        );
        let err = u.scanner(vec![p("x")]).err().unwrap();
        assert!(err.message().contains("union [null, long]"), "{}", err.message());
        let err = u.scanner(vec![p("d")]).err().unwrap();
        assert!(err.message().contains("type decimal"), "{}", err.message());
        // Fine: a path into a union of records, and a map key.
        assert!(o.scanner(paths(&["customer.addr.street", "attrs.anything"])).is_ok());
        assert!(o.scanner(vec![]).is_ok());
    }

    #[test]
    fn schema_errors() {
        let err = AvroSchema::parse("{nope", &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format);
        let err = AvroSchema::parse(
            r#"{"type": "record", "name": "X", "namespace": "n", "fields": [{"name": "a", "type": "strin"}]}"#,
            &[],
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format);
        assert!(err.message().contains("n.X"), "{}", err.message());
        let err = AvroSchema::parse(ENVELOPE, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format, "a missing reference");
        let err = AvroSchema::parse(
            r#"{"type": "record", "name": "X", "fields": [{"name": "u", "type":
                {"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"}}]}"#,
            &[],
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Format);
        assert!(AvroSchema::parse(r#""string""#, &[]).unwrap().tagged_fields(&["PII".into()]).is_empty());
    }

    #[test]
    fn malformed_payloads_are_record_errors() {
        let (s, bytes) = payment();
        let sc = s.scanner(s.tagged_fields(&["PII".into()])).unwrap();
        let passive = s.scanner(vec![]).unwrap();
        let o = schema(ORDER);
        let obytes = encode(&o, &order(3, &[("k", "v")], true));
        let osc = scanner(&o, &["items[*].note", "attrs.*", "shop.Address::street"]);
        let t = schema(TREE);
        let tbytes = encode(&t, TREE_DOC);
        let tsc = scanner(&t, &["Tree::label"]);
        let cases: [(&dyn Scanner, &[u8]); 4] =
            [(sc.as_ref(), &bytes), (passive.as_ref(), &bytes), (osc.as_ref(), &obytes), (tsc.as_ref(), &tbytes)];
        for (scanner, full) in cases {
            assert!(scanner.scan(full, "v").is_ok());
            for cut in 0..full.len() {
                let err = scanner.scan(&full[..cut], "record value").err().unwrap_or_else(|| panic!("prefix {cut}"));
                assert_eq!(err.kind(), ErrorKind::Record);
                assert!(err.message().starts_with("record value is not valid Avro"), "{}", err.message());
            }
            let mut long = full.to_vec();
            long.push(0);
            assert!(scanner.scan(&long, "v").err().unwrap().message().contains("trailing bytes"));
        }
        let bad = |sc: &dyn Scanner, payload: &[u8], why: &str| {
            let err = sc.scan(payload, "v").err().unwrap_or_else(|| panic!("{why} should fail"));
            assert_eq!(err.kind(), ErrorKind::Record);
            assert!(err.message().contains(why), "{}", err.message());
        };
        // id: a negative length; a varint of 11 bytes.
        bad(sc.as_ref(), &[1], "negative length");
        bad(sc.as_ref(), &[0xff; 11], "varint longer than 64 bits");
        // A union branch index out of range (phone is the last field).
        let mut wrong = bytes.clone();
        let phone_at = bytes.len() - 1 - "+1-650-555-0100".len() - 1;
        assert_eq!(wrong[phone_at], 2);
        wrong[phone_at] = 4;
        bad(sc.as_ref(), &wrong, "union branch index out of range");
        // A selected string that is not UTF-8.
        let mut wrong = bytes.clone();
        let at = bytes.windows(4).position(|w| w == b"jane").unwrap();
        wrong[at] = 0xff;
        bad(sc.as_ref(), &wrong, "not UTF-8");
        // Booleans, enums, ints out of range.
        let b = schema(r#"{"type": "record", "name": "B", "fields": [{"name": "b", "type": "boolean"}]}"#);
        bad(scanner(&b, &[]).as_ref(), &[2], "boolean");
        let e = schema(
            r#"{"type": "record", "name": "E", "fields": [{"name": "e", "type": {"type": "enum", "name": "En", "symbols": ["A"]}}]}"#,
        );
        bad(scanner(&e, &[]).as_ref(), &[2], "enum index");
        let i = schema(r#"{"type": "record", "name": "I", "fields": [{"name": "i", "type": "int"}]}"#);
        bad(scanner(&i, &[]).as_ref(), &[0x80, 0x80, 0x80, 0x80, 0x20], "int out of range");
        // A block count larger than the bytes left.
        bad(tsc.as_ref(), &[2, 2, b'r', 0, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xff, 0xff, 0x0f], "block count");
    }

    /// Reads one long with the scanner's decoder: its value and length.
    fn read_long(bytes: &[u8]) -> Option<(i64, usize)> {
        let s = schema(r#""long""#);
        let scanner = AvroScanner { plan: Compiler::compile(&s, &[]).unwrap(), paths: Vec::new() };
        let mut run = Run {
            plan: &scanner.plan,
            paths: &[],
            buf: bytes,
            pos: 0,
            at: Location { text: Vec::new(), base: 0, scratch: ConcretePath::default() },
            scan: Box::new(AvroScan {
                payload: bytes,
                leaves: Few::new(Leaf { path: 0, at: 0..0, kind: ValueKind::Json, value: &[] }),
                edits: Few::new(Edit { start: 0, end: 0, what: EditKind::Block { count: 0, size: 0 } }),
                locations: String::new(),
            }),
            fail: ("", 0),
        };
        run.long().ok().map(|v| (v, run.pos))
    }

    #[test]
    fn varints_decode_like_apache_avro() {
        let mut values = vec![0i64, 1, -1, 63, -64, 64, -65, 8191, -8192, 8192, i64::MIN, i64::MAX];
        for shift in 0..64 {
            let p = 1i64.wrapping_shl(shift);
            values.extend([
                p,
                p.wrapping_sub(1),
                p.wrapping_add(1),
                p.wrapping_neg(),
                p.wrapping_neg().wrapping_sub(1),
            ]);
        }
        for v in values {
            let encoded = apache_avro::to_avro_datum(&Schema::Long, Value::Long(v)).unwrap();
            let mut mine = Vec::new();
            put_long(&mut mine, v);
            assert_eq!(mine, encoded, "{v}");
            for pad in 0..12 {
                let mut bytes = encoded.clone();
                bytes.extend(std::iter::repeat_n(0xff, pad));
                assert_eq!(read_long(&bytes), Some((v, encoded.len())), "{v} with {pad} bytes after it");
            }
            for cut in 0..encoded.len() {
                assert_eq!(read_long(&encoded[..cut]), None, "{v} cut at {cut}");
            }
        }
        // Longer than 10 bytes, or a 10th byte with more than the 64th bit.
        assert_eq!(read_long(&[0x80; 10]), None);
        assert_eq!(read_long(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), None);
        assert_eq!(read_long(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Some((i64::MAX, 10)));
        // Not the shortest form: still the value.
        assert_eq!(read_long(&[0x82, 0x80, 0x80, 0x00]), Some((1, 4)));
    }

    #[test]
    fn few_spills_and_shrinks() {
        let mut few: Few<u32, 3> = Few::new(0);
        for i in 0..5 {
            few.push(i);
            assert_eq!(few.as_slice(), (0..=i).collect::<Vec<_>>());
        }
        for i in (0..5).rev() {
            few.pop();
            assert_eq!(few.as_slice(), (0..i).collect::<Vec<_>>());
        }
        few.push(7);
        assert_eq!(few.as_slice(), [7]);
    }

    #[test]
    fn depth_is_limited() {
        let s = schema(LIST);
        let sc = scanner(&s, &["ll.Node::value"]);
        assert_eq!(found(sc.as_ref(), &list(120)).len(), 120);
        // Deeper than the limit: built by hand (no value tree, no deep recursion in apache-avro).
        let mut deep = Vec::new();
        for _ in 0..300 {
            deep.extend([2, b'v', 0, 2]); // value "v", n 0, next: branch 1 (a Node)
        }
        deep.extend([2, b'v', 0, 0]);
        for sc in [sc, scanner(&s, &[])] {
            let err = sc.scan(&deep, "v").err().unwrap();
            assert!(err.message().contains("nested too deep"), "{}", err.message());
        }
        // Recursion through arrays: a tree whose every node has one kid (a record and an array
        // per level).
        let tree = |levels: usize| {
            let mut out = Vec::new();
            for _ in 0..levels {
                out.extend([2, 2, b'x']); // label "x"
                out.extend([0; 8]); // weight
                out.push(2); // kids: a block of one
            }
            out.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // the last node: label null, weight, no kids
            out.extend(std::iter::repeat_n(0, levels)); // the end of each kids array
            out
        };
        let t = schema(TREE);
        for sc in [scanner(&t, &["Tree::label"]), scanner(&t, &[])] {
            assert!(sc.scan(&tree(50), "v").is_ok());
            let err = sc.scan(&tree(100), "v").err().unwrap();
            assert!(err.message().contains("nested too deep"), "{}", err.message());
        }
        assert_eq!(found(scanner(&t, &["Tree::label"]).as_ref(), &tree(50)).len(), 50);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            let (s, _) = payment();
            for list in [&["email", "phone", "address.street"][..], &[], &["tags[*]"]] {
                let sc = scanner(&s, list);
                if let Ok(scan) = sc.scan(&bytes, "v") {
                    prop_assert_eq!(scan.write(&mut |_, _, e| e.keep()).unwrap(), bytes.clone());
                }
            }
            let t = schema(TREE);
            let sc = scanner(&t, &["Tree::label"]);
            if let Ok(scan) = sc.scan(&bytes, "v") {
                prop_assert_eq!(scan.write(&mut |_, _, e| e.keep()).unwrap(), bytes.clone());
            }
        }

        #[test]
        fn mutated_records_never_panic(at in 0usize..400, byte in any::<u8>()) {
            let o = schema(ORDER);
            let mut bytes = encode(&o, &order(3, &[("k", "v")], true));
            let at = at % bytes.len();
            bytes[at] = byte;
            let sc = scanner(&o, &["items[*].sku", "attrs.*", "shop.Address::street", "customer.card"]);
            let kept = sc.scan(&bytes, "v").ok().map(|scan| {
                let _ = scan.write(&mut |l, a, e| fake(l, a, e));
                scan.write(&mut |_, _, e| e.keep()).unwrap()
            });
            if let Some(kept) = kept {
                prop_assert_eq!(kept, bytes);
            }
        }

        #[test]
        fn random_payments_match_apache_avro(
            email in ".{0,40}",
            street in "\\PC{0,30}",
            phone in proptest::option::of("[0-9+ -]{0,20}"),
            tags in proptest::collection::vec("[a-z]{0,12}", 0..6),
            customer in any::<i64>(),
        ) {
            let s = schema(PAYMENT);
            let doc = serde_json::json!({
                "id": "x", "customer_id": customer, "email": email, "full_name": "F", "ssn": "S",
                "amount_cents": -customer / 2, "currency": "EUR", "created_at": 0,
                "address": {"street": street, "city": "c", "zip": "z", "country": "US"},
                "tags": tags, "phone": phone,
            });
            compare(&s, &["bench.Payment::email", "bench.Address::street", "bench.Payment::phone", "tags[*]"], &doc.to_string(), false);
        }
    }
}
