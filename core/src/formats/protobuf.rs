//! Protobuf records (Schema Registry's Protobuf format), rewritten on the wire.
//!
//! [`ProtoSchema`] compiles a writer schema (`.proto` text and its references) with protox, once.
//! [`CompiledSchema::scanner`] turns a list of paths into a [`Plan`]: one node per (message type,
//! paths still being matched) with a table by field number, so a scan does no descriptor lookups,
//! name comparisons or hashing per field. A scan walks the wire format of the bare message (the
//! payload after Confluent's framing and message indexes): fields no path selects are skipped —
//! not decoded, later copied through as raw bytes —, messages on a path are descended into, and
//! each selected `string` / `bytes` value becomes a [`Leaf`], located like
//! `address.street`, `items[2].sku`, `attrs.k` or `attrs["k 1"]` (map keys as [`ConcretePath`]
//! writes member names; integer and bool keys in decimal / `true` / `false`). The scan records
//! the nested messages that hold leaves as spans: [`Scan::write`] copies everything else byte for
//! byte — unknown fields, field order, non-minimal varints, untouched nested messages — and gives
//! each span whose content changed size its new length as it closes (innermost first).
//!
//! What [`Emit`] does to a field:
//! - `text` / `bytes`: the field with the new value (`text` in a bytes field is its UTF-8; raw
//!   bytes cannot go into a string field).
//! - `null`: a singular field (plain, `optional`, in a `oneof`, or a map entry's value) is omitted,
//!   which a reader sees as unset (the proto3 default, an unset `optional` or `oneof`, a map
//!   value of `""`). An element of a repeated field becomes empty (`""`) instead, so the other
//!   elements keep their positions (and so their locations).
//! - `json`: an error, a Protobuf field holds no JSON.
//! - `keep`: the field exactly as it was.
//!
//! Limitations: only `string` and `bytes` fields can be selected (a path to any other type is a
//! policy error); paths cannot enter proto2 groups (skipped and kept when no path needs them);
//! a map's values are selected all at once (`attrs.*`), not by key; the contents of messages no
//! path enters are copied, not validated; a selected field that occurs twice (a non-canonical
//! record) is two leaves at the same location.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prost_reflect::{DescriptorPool, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value};
use protox::file::{File, FileResolver, GoogleFileResolver};

use super::{CompiledSchema, Emit, Fill, Leaf, Scan, Scanner, ValueKind};
use crate::error::{Error, Result};
use crate::policy::{ConcretePath, FieldPath, FieldStep, Segment};

/// Confluent's metadata options, for schemas that import them without listing them as a reference.
const META_PROTO_NAME: &str = "confluent/meta.proto";
const META_PROTO: &str = include_str!("../../../schemas/confluent/meta.proto");

/// The file name the main schema is compiled under when its own name cannot be one.
const FALLBACK_MAIN_NAME: &str = "fieldcrypt-schema.proto";

/// How deeply a scan descends into nested messages (and skips nested groups).
const MAX_DEPTH: usize = 100;

/// A compiled Protobuf writer schema and the message its records hold.
#[derive(Debug, Clone)]
pub(crate) struct ProtoSchema {
    message: MessageDescriptor,
    pool: DescriptorPool,
}

impl ProtoSchema {
    /// Compiles `main_text` (named `main_name`, e.g. a subject or file name) with its
    /// `references` (import name → `.proto` text) and selects the message Confluent's
    /// `message_indexes` name: empty or `[0]` the file's first message, `[i, j]` nested message
    /// `j` of message `i`. `confluent/meta.proto` and Google's well-known files (e.g.
    /// `google/protobuf/descriptor.proto`) are built in when the references lack them.
    pub(crate) fn parse(
        main_name: &str,
        main_text: &str,
        references: &[(String, String)],
        message_indexes: &[i32],
    ) -> Result<ProtoSchema> {
        let mut files: HashMap<String, String> = references.iter().cloned().collect();
        let reserved = main_name == META_PROTO_NAME || main_name.starts_with("google/protobuf/");
        let file_name = if is_file_name(main_name) && !reserved && !files.contains_key(main_name) {
            main_name.to_string()
        } else {
            FALLBACK_MAIN_NAME.to_string()
        };
        files.entry(META_PROTO_NAME.to_string()).or_insert_with(|| META_PROTO.to_string());
        files.insert(file_name.clone(), main_text.to_string());
        let missing = Rc::new(RefCell::new(Vec::new()));
        let resolver = MemoryResolver { files, google: GoogleFileResolver::new(), missing: Rc::clone(&missing) };
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        if let Err(e) = compiler.open_file(&file_name) {
            return Err(compile_error(main_name, &file_name, &e, &missing.borrow()));
        }
        let pool = compiler.descriptor_pool();
        let message =
            pool.get_file_by_name(&file_name).and_then(|file| select_message(&file, message_indexes)).ok_or_else(
                || Error::format(format!("Protobuf schema {main_name:?} has no message at index {message_indexes:?}")),
            )?;
        Ok(ProtoSchema { message, pool })
    }

    /// The full name of the record's message, e.g. `bench.Payment`.
    #[cfg(test)]
    pub(crate) fn message_name(&self) -> &str {
        self.message.full_name()
    }
}

/// A name protox accepts as a file name: relative, `/`-separated, no empty, `.` or `..` parts.
fn is_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('\\') && name.split('/').all(|part| !matches!(part, "" | "." | ".."))
}

fn select_message(file: &prost_reflect::FileDescriptor, indexes: &[i32]) -> Option<MessageDescriptor> {
    let indexes = if indexes.is_empty() { &[0][..] } else { indexes };
    let mut message = file.messages().nth(usize::try_from(indexes[0]).ok()?)?;
    for &j in &indexes[1..] {
        let child = message.child_messages().nth(usize::try_from(j).ok()?)?;
        message = child;
    }
    Some(message)
}

/// Resolves imports from the schema's references, then the built-in files. Remembers what it
/// could not find, to name it in the error (protox's own messages may quote the schema text).
struct MemoryResolver {
    files: HashMap<String, String>,
    google: GoogleFileResolver,
    missing: Rc<RefCell<Vec<String>>>,
}

impl FileResolver for MemoryResolver {
    fn open_file(&self, name: &str) -> std::result::Result<File, protox::Error> {
        if let Some(text) = self.files.get(name) {
            return File::from_source(name, text).or_else(|e| descriptor_from_base64(name, text).ok_or(e));
        }
        self.google.open_file(name).inspect_err(|e| {
            if e.is_file_not_found() {
                self.missing.borrow_mut().push(name.to_string());
            }
        })
    }
}

/// Confluent's Python serializer (and others) register a Protobuf schema as the Base64 of its
/// serialized `FileDescriptorProto` instead of `.proto` text; registries that do not convert it
/// (Apicurio) hand it back that way.
fn descriptor_from_base64(name: &str, text: &str) -> Option<File> {
    use base64::Engine;
    let mut bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    // Rename it to the name it is imported or registered under: field 1 (`name`) appended last
    // wins, and everything else — extension options such as the tags — stays byte for byte.
    bytes.push(0x0A);
    crate::header::put_varint(&mut bytes, name.len() as u64);
    bytes.extend_from_slice(name.as_bytes());
    File::decode_file_descriptor_proto(bytes.as_slice()).ok()
}

/// A compile error that names the schema and the file at fault, never quoting schema text.
fn compile_error(main_name: &str, file_name: &str, e: &protox::Error, missing: &[String]) -> Error {
    let place = match e.file() {
        Some(f) if f != file_name => format!(" (in its reference {f:?})"),
        _ => String::new(),
    };
    let what = if let Some(name) = missing.first() {
        format!("it imports {name:?}, which is neither among its references nor built in")
    } else if e.is_parse() {
        format!("syntax error{place}")
    } else {
        format!("invalid definitions, e.g. an unknown type, a duplicate name or number, or a bad option{place}")
    };
    Error::format(format!("Protobuf schema {main_name:?} does not compile: {what}"))
}

impl CompiledSchema for ProtoSchema {
    /// Decodes the message (prost-reflect) and reads field `member`: a string, an integer in
    /// decimal or an enum value's name; a field without presence that holds its default (`""`,
    /// `0`) counts as missing.
    fn top_level_text(&self, payload: &[u8], member: &str) -> Result<Option<String>> {
        let Some(field) = self.message.get_field_by_name(member) else { return Ok(None) };
        let message = prost_reflect::DynamicMessage::decode(self.message.clone(), payload).map_err(|e| {
            Error::format(format!("the Protobuf record does not decode as {}: {e}", self.message.name()))
        })?;
        if field.is_list() || field.is_map() || !message.has_field(&field) {
            return Ok(None);
        }
        Ok(match message.get_field(&field).as_ref() {
            Value::String(s) => Some(s.clone()),
            Value::I32(n) => Some(n.to_string()),
            Value::I64(n) => Some(n.to_string()),
            Value::U32(n) => Some(n.to_string()),
            Value::U64(n) => Some(n.to_string()),
            Value::EnumNumber(n) => field.kind().as_enum().and_then(|e| e.get_value(*n)).map(|v| v.name().to_string()),
            _ => None,
        })
    }

    /// Depth-first from the record's message, in field declaration order: a message's tagged
    /// fields, each nested message type's tagged fields right where it is first used.
    fn tagged_fields(&self, tags: &[String]) -> Vec<FieldPath> {
        let Some(ext) = self.pool.get_extension_by_name("confluent.field_meta") else { return Vec::new() };
        let mut out = Vec::new();
        let mut seen = HashSet::from([self.message.full_name().to_string()]);
        collect_tagged(&self.message, &ext, tags, &mut seen, &mut out);
        out
    }

    fn scanner(&self, paths: Vec<FieldPath>) -> Result<Box<dyn Scanner>> {
        Ok(Box::new(ProtoScanner { plan: Plan::build(&self.message, paths)? }))
    }
}

fn collect_tagged(
    message: &MessageDescriptor,
    ext: &ExtensionDescriptor,
    tags: &[String],
    seen: &mut HashSet<String>,
    out: &mut Vec<FieldPath>,
) {
    for field in message.fields() {
        if field_tags(&field, ext).iter().any(|t| tags.contains(t)) {
            out.push(FieldPath::from_segments(vec![
                Segment::OfType(message.full_name().to_string()),
                Segment::Field(field.name().to_string()),
            ]));
        }
        if let Some(child) = element_message(&field) {
            if seen.insert(child.full_name().to_string()) {
                collect_tagged(&child, ext, tags, seen, out);
            }
        }
    }
}

/// The tags of a field's `(confluent.field_meta)` option.
fn field_tags(field: &FieldDescriptor, ext: &ExtensionDescriptor) -> Vec<String> {
    let options = field.options();
    if !options.has_extension(ext) {
        return Vec::new();
    }
    match &*options.get_extension(ext) {
        Value::Message(meta) => match meta.get_field_by_name("tags").as_deref() {
            Some(Value::List(tags)) => tags.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The message type a field holds (a map's value type), if any — not groups, which scans skip.
fn element_message(field: &FieldDescriptor) -> Option<MessageDescriptor> {
    if field.is_group() {
        return None;
    }
    match value_kind(field) {
        Kind::Message(m) => Some(m),
        _ => None,
    }
}

/// The kind of one element of a field: a map's value kind, a repeated field's element kind.
fn value_kind(field: &FieldDescriptor) -> Kind {
    match field.kind() {
        Kind::Message(entry) if field.is_map() => entry.map_entry_value_field().kind(),
        kind => kind,
    }
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => format!("message ({})", m.full_name()),
        Kind::Enum(e) => format!("enum ({})", e.full_name()),
        other => format!("{other:?}").to_lowercase(),
    }
}

// ---------------------------------------------------------------------------------------------
// The plan

/// The compiled form of a path list over one message type. Node 0 is the record's message.
#[derive(Debug)]
struct Plan {
    message: String,
    nodes: Vec<Node>,
    /// The most leaves, edits and location bytes a scan has needed: what the next one reserves.
    sizes: [AtomicUsize; 3],
}

/// A message type as some paths reach it: what to do with each field number.
#[derive(Debug, Default)]
struct Node {
    /// Field number → index in `actions` + 1 (0: no action), for numbers up to [`DENSE_LIMIT`].
    dense: Vec<u16>,
    /// Sorted by number; searched for numbers past the dense table.
    actions: Vec<Action>,
    sparse: bool,
    /// How many repeated fields of this node count their elements.
    counters: usize,
}

const DENSE_LIMIT: u32 = 4096;

impl Node {
    #[inline]
    fn find(&self, number: u32) -> Option<&Action> {
        match self.dense.get(number as usize) {
            Some(0) => None,
            Some(&i) => Some(&self.actions[usize::from(i) - 1]),
            None if self.sparse => {
                self.actions.binary_search_by_key(&number, |a| a.number).ok().map(|i| &self.actions[i])
            }
            None => None,
        }
    }
}

#[derive(Debug)]
struct Action {
    number: u32,
    /// The location step: the field name, or `None` for a map entry's value (the key is the step).
    name: Option<FieldStep>,
    /// For a repeated field: its element counter, for the `[i]` step.
    counter: Option<usize>,
    /// For a map field: how its entries' keys are encoded (each entry is prescanned for the key).
    map_key: Option<KeyKind>,
    target: Target,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Leaf { path: usize, kind: ValueKind },
    Node(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Str,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
}

impl KeyKind {
    fn of(kind: &Kind) -> Option<KeyKind> {
        Some(match kind {
            Kind::String => KeyKind::Str,
            Kind::Bool => KeyKind::Bool,
            Kind::Int32 => KeyKind::Int32,
            Kind::Int64 => KeyKind::Int64,
            Kind::Uint32 => KeyKind::Uint32,
            Kind::Uint64 => KeyKind::Uint64,
            Kind::Sint32 => KeyKind::Sint32,
            Kind::Sint64 => KeyKind::Sint64,
            Kind::Fixed32 => KeyKind::Fixed32,
            Kind::Fixed64 => KeyKind::Fixed64,
            Kind::Sfixed32 => KeyKind::Sfixed32,
            Kind::Sfixed64 => KeyKind::Sfixed64,
            _ => return None,
        })
    }

    fn wire_type(self) -> u8 {
        match self {
            KeyKind::Str => LEN,
            KeyKind::Fixed32 | KeyKind::Sfixed32 => FIXED32,
            KeyKind::Fixed64 | KeyKind::Sfixed64 => FIXED64,
            _ => VARINT,
        }
    }
}

/// A root path and how many of its segments are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Cursor {
    path: usize,
    depth: usize,
}

struct Builder<'p> {
    paths: &'p [FieldPath],
    /// (message full name, field name) → the first type-qualified path selecting it.
    typed: HashMap<(&'p str, &'p str), usize>,
    /// Message types that contain, at any depth, a field a type-qualified path selects.
    reaches: HashSet<String>,
    memo: HashMap<(String, Vec<Cursor>), usize>,
    nodes: Vec<Node>,
}

impl Plan {
    fn build(root: &MessageDescriptor, paths: Vec<FieldPath>) -> Result<Plan> {
        let reachable = reachable_messages(root);
        for path in &paths {
            check_path(root, &reachable, path)?;
        }
        let mut typed = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            if let Some(key) = path.type_field() {
                typed.entry(key).or_insert(i);
            }
        }
        let reaches = reaching_messages(&reachable, &typed);
        let mut builder = Builder { paths: &paths, typed, reaches, memo: HashMap::new(), nodes: Vec::new() };
        let cursors =
            (0..paths.len()).filter(|&i| paths[i].type_field().is_none()).map(|path| Cursor { path, depth: 0 });
        builder.node(root, cursors.collect());
        let nodes = builder.nodes;
        let sizes = [AtomicUsize::new(4), AtomicUsize::new(4), AtomicUsize::new(32)];
        Ok(Plan { message: root.full_name().to_string(), nodes, sizes })
    }
}

impl Builder<'_> {
    fn segments(&self, c: Cursor) -> &[Segment] {
        self.paths[c.path].segments()
    }

    fn node(&mut self, message: &MessageDescriptor, cursors: Vec<Cursor>) -> usize {
        let key = (message.full_name().to_string(), cursors);
        if let Some(&id) = self.memo.get(&key) {
            return id;
        }
        let id = self.nodes.len();
        self.nodes.push(Node::default());
        let cursors = key.1.clone();
        self.memo.insert(key, id);

        let mut actions = Vec::new();
        let mut counters = 0;
        for field in message.fields() {
            if field.is_group() {
                continue;
            }
            let name = field.name();
            let named: Vec<Cursor> = cursors
                .iter()
                .filter(|&&c| matches!(&self.segments(c)[c.depth], Segment::Field(n) if n == name))
                .map(|c| Cursor { path: c.path, depth: c.depth + 1 })
                .collect();
            let typed = self.typed.get(&(message.full_name(), name)).copied();
            let step = |want: fn(&Segment) -> bool| -> Vec<Cursor> {
                named
                    .iter()
                    .filter(|&&c| self.segments(c).get(c.depth).is_some_and(want))
                    .map(|c| Cursor { path: c.path, depth: c.depth + 1 })
                    .collect()
            };
            if field.is_map() {
                let Kind::Message(entry) = field.kind() else { continue };
                let (key_field, value_field) = (entry.map_entry_key_field(), entry.map_entry_value_field());
                let values = step(|s| matches!(s, Segment::AnyMember));
                let Some(value) = self.target(&value_field.kind(), values, typed) else { continue };
                let Some(key_kind) = KeyKind::of(&key_field.kind()) else { continue };
                let entry_node = self.nodes.len();
                self.nodes.push(node_of(vec![Action {
                    number: value_field.number(),
                    name: None,
                    counter: None,
                    map_key: None,
                    target: value,
                }]));
                actions.push(Action {
                    number: field.number(),
                    name: Some(FieldStep::of(name)),
                    counter: None,
                    map_key: Some(key_kind),
                    target: Target::Node(entry_node),
                });
            } else if field.is_list() {
                let elements = step(|s| matches!(s, Segment::AnyElement));
                let Some(target) = self.target(&field.kind(), elements, typed) else { continue };
                actions.push(Action {
                    number: field.number(),
                    name: Some(FieldStep::of(name)),
                    counter: Some(counters),
                    map_key: None,
                    target,
                });
                counters += 1;
            } else {
                let Some(target) = self.target(&field.kind(), named.clone(), typed) else { continue };
                actions.push(Action {
                    number: field.number(),
                    name: Some(FieldStep::of(name)),
                    counter: None,
                    map_key: None,
                    target,
                });
            }
        }
        let mut node = node_of(actions);
        node.counters = counters;
        self.nodes[id] = node;
        id
    }

    /// What to do with one value of kind `kind` that `cursors` (matched up to it) and the
    /// type-qualified path `typed` reach; `None` when nothing can be selected in it.
    fn target(&mut self, kind: &Kind, cursors: Vec<Cursor>, typed: Option<usize>) -> Option<Target> {
        let done = cursors.iter().filter(|&&c| c.depth == self.segments(c).len()).map(|c| c.path);
        let leaf = done.chain(typed).min();
        match kind {
            Kind::String => leaf.map(|path| Target::Leaf { path, kind: ValueKind::Text }),
            Kind::Bytes => leaf.map(|path| Target::Leaf { path, kind: ValueKind::Bytes }),
            Kind::Message(m) => {
                let deeper: Vec<Cursor> = cursors.into_iter().filter(|&c| c.depth < self.segments(c).len()).collect();
                if deeper.is_empty() && !self.reaches.contains(m.full_name()) {
                    return None;
                }
                Some(Target::Node(self.node(m, deeper)))
            }
            _ => None,
        }
    }
}

fn node_of(mut actions: Vec<Action>) -> Node {
    actions.sort_by_key(|a| a.number);
    let top = actions.iter().map(|a| a.number).filter(|&n| n < DENSE_LIMIT).max().map_or(0, |n| n as usize + 1);
    let mut dense = vec![0u16; top];
    for (i, a) in actions.iter().enumerate() {
        if a.number < DENSE_LIMIT {
            dense[a.number as usize] = u16::try_from(i + 1).expect("a message has fewer than 65535 fields");
        }
    }
    let sparse = actions.iter().any(|a| a.number >= DENSE_LIMIT);
    Node { dense, actions, sparse, counters: 0 }
}

/// Every message type a record of `root` can hold (not map entries), by full name.
fn reachable_messages(root: &MessageDescriptor) -> HashMap<String, MessageDescriptor> {
    let mut found = HashMap::from([(root.full_name().to_string(), root.clone())]);
    let mut todo = vec![root.clone()];
    while let Some(message) = todo.pop() {
        for field in message.fields() {
            if let Some(child) = element_message(&field) {
                if !found.contains_key(child.full_name()) {
                    found.insert(child.full_name().to_string(), child.clone());
                    todo.push(child);
                }
            }
        }
    }
    found
}

/// The message types from which a field selected by a type-qualified path can be reached.
fn reaching_messages(
    reachable: &HashMap<String, MessageDescriptor>,
    typed: &HashMap<(&str, &str), usize>,
) -> HashSet<String> {
    let mut reaches: HashSet<String> = typed.keys().map(|(t, _)| t.to_string()).collect();
    loop {
        let before = reaches.len();
        for (name, message) in reachable {
            if !reaches.contains(name)
                && message.fields().any(|f| element_message(&f).is_some_and(|m| reaches.contains(m.full_name())))
            {
                reaches.insert(name.clone());
            }
        }
        if reaches.len() == before {
            return reaches;
        }
    }
}

/// Checks that a path names string or bytes fields of the schema, saying what is wrong if not.
fn check_path(
    root: &MessageDescriptor,
    reachable: &HashMap<String, MessageDescriptor>,
    path: &FieldPath,
) -> Result<()> {
    let fail = |why: String| {
        Err(Error::policy(format!("path {path} does not fit Protobuf message {}: {why}", root.full_name())))
    };
    if let Some((type_name, field_name)) = path.type_field() {
        let Some(message) = reachable.get(type_name) else {
            return fail(format!("its records hold no message of type {type_name}"));
        };
        let Some(field) = message.get_field_by_name(field_name) else {
            return fail(format!("{type_name} has no field {field_name}"));
        };
        return check_leaf(&field, fail);
    }
    let segments = path.segments();
    let mut message = root.clone();
    let mut i = 0;
    loop {
        let Segment::Field(name) = &segments[i] else {
            return fail(format!("{} is a message: name one of its fields", message.full_name()));
        };
        let Some(field) = message.get_field_by_name(name) else {
            return fail(format!("{} has no field {name}", message.full_name()));
        };
        i += 1;
        if field.is_group() {
            return fail(format!("{name} is a proto2 group, which fieldcrypt cannot enter"));
        } else if field.is_map() {
            if segments.get(i) != Some(&Segment::AnyMember) {
                return fail(format!("{name} is a map: select its values with {name}.*"));
            }
            i += 1;
        } else if field.is_list() {
            if segments.get(i) != Some(&Segment::AnyElement) {
                return fail(format!("{name} is a repeated field: select its elements with {name}[*]"));
            }
            i += 1;
        }
        if i == segments.len() {
            return check_leaf(&field, fail);
        }
        match value_kind(&field) {
            Kind::Message(m) => message = m,
            kind => return fail(format!("{name} has type {}, which has no fields", kind_name(&kind))),
        }
    }
}

fn check_leaf(field: &FieldDescriptor, fail: impl Fn(String) -> Result<()>) -> Result<()> {
    match value_kind(field) {
        Kind::String | Kind::Bytes if !field.is_group() => Ok(()),
        kind => fail(format!(
            "{} has type {}; only string and bytes fields can be encrypted",
            field.name(),
            if field.is_group() { "group".to_string() } else { kind_name(&kind) }
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// The scan

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// Scans Protobuf records of one message type for one list of paths.
#[derive(Debug)]
pub(crate) struct ProtoScanner {
    plan: Plan,
}

impl Scanner for ProtoScanner {
    fn scan<'a>(&self, payload: &'a [u8], what: &str) -> Result<Box<dyn Scan<'a> + 'a>> {
        Ok(Box::new(self.scan_payload(payload, what)?))
    }
}

impl ProtoScanner {
    fn scan_payload<'a>(&self, payload: &'a [u8], what: &str) -> Result<ProtoScan<'a>> {
        if u32::try_from(payload.len()).is_err() {
            return Err(Error::record(format!("{what} is too large for a Protobuf message")));
        }
        let sizes = &self.plan.sizes;
        let mut walk = Walk {
            plan: &self.plan,
            buf: payload,
            leaves: Vec::with_capacity(sizes[0].load(Ordering::Relaxed)),
            edits: Vec::with_capacity(sizes[1].load(Ordering::Relaxed)),
            locations: Vec::with_capacity(sizes[2].load(Ordering::Relaxed)),
            done: 0,
            counters: Vec::new(),
            key: ConcretePath::default(),
            key_text: String::new(),
        };
        walk.message(0, 0, payload.len(), 0).map_err(|m| {
            Error::record(format!(
                "{what} is not a valid {} Protobuf message: {} at byte {}",
                self.plan.message, m.0, m.1
            ))
        })?;
        let Walk { edits, leaves, mut locations, done, .. } = walk;
        for (size, used) in sizes.iter().zip([leaves.capacity(), edits.capacity(), locations.capacity()]) {
            let used = used.min(4096); // one odd record does not make every later scan reserve much
            if used > size.load(Ordering::Relaxed) {
                size.fetch_max(used, Ordering::Relaxed);
            }
        }
        locations.truncate(done);
        let locations = String::from_utf8(locations).expect("locations are built from text");
        Ok(ProtoScan { payload, edits, leaves, locations })
    }
}

/// What is wrong with a payload, and where.
#[derive(Debug)]
struct Malformed(&'static str, usize);

type Parsed<T> = std::result::Result<T, Malformed>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EditKind {
    /// A nested message holding leaves: its length may change.
    Span,
    /// A selected value.
    Leaf,
    /// A selected element of a repeated field.
    Element,
}

/// A field of the payload that [`Scan::write`] rewrites: from `start`, its tag ending at
/// `tag_end`, its content (after the length) from `content` to `end`. In payload order; a span's
/// inner edits follow it.
#[derive(Debug, Clone, Copy)]
struct Edit {
    start: u32,
    tag_end: u32,
    content: u32,
    end: u32,
    kind: EditKind,
}

struct Walk<'p, 'a> {
    plan: &'p Plan,
    buf: &'a [u8],
    edits: Vec<Edit>,
    leaves: Vec<Leaf<'a>>,
    /// The leaves' locations, then (from `done`) the location being built; UTF-8.
    locations: Vec<u8>,
    done: usize,
    counters: Vec<u32>,
    /// Scratch space for map keys as location steps.
    key: ConcretePath,
    key_text: String,
}

impl<'a> Walk<'_, 'a> {
    /// Walks the fields of one message, `buf[pos..end]`, as plan node `node` sees them.
    fn message(&mut self, node: usize, mut pos: usize, end: usize, depth: usize) -> Parsed<()> {
        let plan = self.plan;
        let node = &plan.nodes[node];
        let buf: &'a [u8] = &self.buf[..end];
        let base = self.counters.len();
        if node.counters > 0 {
            self.counters.resize(base + node.counters, 0);
        }
        while pos < end {
            let start = pos;
            let (number, wire_type, tag_end) = tag(buf, pos)?;
            let Some(action) = node.find(number as u32) else {
                pos = skip(buf, tag_end, number, wire_type, depth)?;
                continue;
            };
            if wire_type != LEN {
                return Err(Malformed("a selected field has the wrong wire type", start));
            }
            let (len, content) = length(buf, tag_end)?;
            pos = content + len;
            let mark = self.locations.len() - self.done;
            if let Some(step) = &action.name {
                let step = if mark == 0 { &step.first } else { &step.later };
                self.locations.extend_from_slice(step.as_bytes());
            }
            if let Some(counter) = action.counter {
                let n = &mut self.counters[base + counter];
                push_index(&mut self.locations, *n);
                *n += 1;
            }
            if let Some(key) = action.map_key {
                self.push_key(key, &buf[content..pos], content)?;
            }
            let edit = |kind| Edit {
                start: start as u32,
                tag_end: tag_end as u32,
                content: content as u32,
                end: pos as u32,
                kind,
            };
            match action.target {
                Target::Leaf { path, kind } => {
                    let value = &buf[content..pos];
                    if kind == ValueKind::Text && !value.is_ascii() && std::str::from_utf8(value).is_err() {
                        return Err(Malformed("a selected string field is not UTF-8", content));
                    }
                    // The location is done: keep it, and go on building from a copy of it.
                    let at = self.done..self.locations.len();
                    self.locations.extend_from_within(at.clone());
                    self.done = at.end;
                    self.leaves.push(Leaf { path, at, kind, value });
                    self.edits.push(edit(if action.counter.is_some() { EditKind::Element } else { EditKind::Leaf }));
                }
                Target::Node(child) => {
                    if depth >= MAX_DEPTH {
                        return Err(Malformed("messages nest too deeply", start));
                    }
                    let span = self.edits.len();
                    let leaves = self.leaves.len();
                    self.edits.push(edit(EditKind::Span));
                    self.message(child, content, pos, depth + 1)?;
                    if self.leaves.len() == leaves {
                        self.edits.truncate(span); // nothing selected inside: copied as it is
                    }
                }
            }
            self.locations.truncate(self.done + mark);
        }
        self.counters.truncate(base);
        Ok(())
    }

    /// Appends the key of a map entry (`entry`, at `offset` in the payload) to the location.
    fn push_key(&mut self, kind: KeyKind, entry: &[u8], offset: usize) -> Parsed<()> {
        let at = |e: Malformed| Malformed(e.0, e.1 + offset);
        let mut pos = 0;
        let mut raw = 0u64;
        let mut text: &[u8] = b"";
        while pos < entry.len() {
            let (number, wire_type, next) = tag(entry, pos).map_err(at)?;
            if number != 1 {
                pos = skip(entry, next, number, wire_type, 0).map_err(at)?;
                continue;
            }
            if wire_type != kind.wire_type() {
                return Err(Malformed("a map key has the wrong wire type", pos + offset));
            }
            (raw, pos) = match wire_type {
                VARINT => varint(entry, next).map_err(at)?,
                FIXED32 => fixed::<4>(entry, next).map(|(b, p)| (u64::from(u32::from_le_bytes(b)), p)).map_err(at)?,
                FIXED64 => fixed::<8>(entry, next).map(|(b, p)| (u64::from_le_bytes(b), p)).map_err(at)?,
                _ => {
                    let (len, start) = length(entry, next).map_err(at)?;
                    text = &entry[start..start + len];
                    (0, start + len)
                }
            };
        }
        self.key_text.clear();
        let _ = match kind {
            KeyKind::Str => {
                let text = std::str::from_utf8(text).map_err(|_| Malformed("a map key is not UTF-8", offset))?;
                self.key_text.push_str(text);
                Ok(())
            }
            KeyKind::Bool => write!(self.key_text, "{}", raw != 0),
            KeyKind::Int32 => write!(self.key_text, "{}", raw as i32),
            KeyKind::Int64 => write!(self.key_text, "{}", raw as i64),
            KeyKind::Uint32 | KeyKind::Fixed32 => write!(self.key_text, "{}", raw as u32),
            KeyKind::Uint64 | KeyKind::Fixed64 => write!(self.key_text, "{raw}"),
            KeyKind::Sint32 => write!(self.key_text, "{}", ((raw as u32) >> 1) as i32 ^ -((raw as u32 & 1) as i32)),
            KeyKind::Sint64 => write!(self.key_text, "{}", (raw >> 1) as i64 ^ -((raw & 1) as i64)),
            KeyKind::Sfixed32 => write!(self.key_text, "{}", raw as u32 as i32),
            KeyKind::Sfixed64 => write!(self.key_text, "{}", raw as i64),
        };
        // As ConcretePath writes a member name after another step: `.k`, `["k 1"]`.
        self.key.truncate(0);
        self.key.push_field("x");
        self.key.push_field(&self.key_text);
        self.locations.extend_from_slice(&self.key.as_str().as_bytes()[1..]);
        Ok(())
    }
}

/// Appends `[index]`, as [`ConcretePath::push_index`] does.
fn push_index(out: &mut Vec<u8>, index: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = index;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(b'[');
    out.extend_from_slice(&digits[i..]);
    out.push(b']');
}

// The readers take a position and return the value and the position after it (by value, so the
// position stays in a register).

#[inline(always)]
fn varint(buf: &[u8], pos: usize) -> Parsed<(u64, usize)> {
    match buf.get(pos) {
        Some(&b) if b < 0x80 => Ok((u64::from(b), pos + 1)),
        _ => varint_slow(buf, pos),
    }
}

#[inline(never)]
fn varint_slow(buf: &[u8], start: usize) -> Parsed<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in buf.get(start..).unwrap_or_default().iter().take(10).enumerate() {
        if i == 9 && b > 1 {
            return Err(Malformed("varint overflows 64 bits", start));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok((value, start + i + 1));
        }
    }
    Err(Malformed(
        if buf.len() - start.min(buf.len()) < 10 { "truncated varint" } else { "varint longer than 10 bytes" },
        start,
    ))
}

/// A tag: field number (checked) and wire type.
#[inline(always)]
fn tag(buf: &[u8], pos: usize) -> Parsed<(u64, u8, usize)> {
    let (tag, next) = varint(buf, pos)?;
    let number = tag >> 3;
    if number == 0 || number > MAX_FIELD_NUMBER {
        return Err(Malformed("invalid field number", pos));
    }
    Ok((number, (tag & 7) as u8, next))
}

/// A length-delimited field's length, checked against what remains of `buf`.
#[inline(always)]
fn length(buf: &[u8], pos: usize) -> Parsed<(usize, usize)> {
    let (len, next) = varint(buf, pos)?;
    if len > (buf.len() - next) as u64 {
        return Err(Malformed("length past the end of its message", pos));
    }
    Ok((len as usize, next))
}

#[inline(always)]
fn fixed<const N: usize>(buf: &[u8], pos: usize) -> Parsed<([u8; N], usize)> {
    match buf.get(pos..pos + N) {
        Some(bytes) => Ok((bytes.try_into().expect("N bytes"), pos + N)),
        None => Err(Malformed("truncated fixed-width value", pos)),
    }
}

/// Skips one field's value of wire type `wire_type`; returns the position after it.
#[inline(always)]
fn skip(buf: &[u8], pos: usize, number: u64, wire_type: u8, depth: usize) -> Parsed<usize> {
    match wire_type {
        LEN => {
            let (len, next) = length(buf, pos)?;
            Ok(next + len)
        }
        VARINT => Ok(varint(buf, pos)?.1),
        FIXED64 => Ok(fixed::<8>(buf, pos)?.1),
        FIXED32 => Ok(fixed::<4>(buf, pos)?.1),
        _ => skip_group(buf, pos, number, wire_type, depth),
    }
}

/// Skips a group up to its end tag (or fails on an end tag or an invalid wire type).
#[inline(never)]
fn skip_group(buf: &[u8], mut pos: usize, number: u64, wire_type: u8, depth: usize) -> Parsed<usize> {
    match wire_type {
        START_GROUP if depth >= MAX_DEPTH => Err(Malformed("groups nest too deeply", pos)),
        START_GROUP => loop {
            if pos >= buf.len() {
                return Err(Malformed("group without an end", pos));
            }
            let (inner, inner_type, next) = tag(buf, pos)?;
            if inner_type == END_GROUP {
                if inner != number {
                    return Err(Malformed("group ends with another field's number", pos));
                }
                return Ok(next);
            }
            pos = skip(buf, next, inner, inner_type, depth + 1)?;
        },
        END_GROUP => Err(Malformed("group end without a start", pos)),
        _ => Err(Malformed("invalid wire type", pos)),
    }
}

fn push_varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A scanned Protobuf record.
#[derive(Debug)]
pub(crate) struct ProtoScan<'a> {
    payload: &'a [u8],
    edits: Vec<Edit>,
    leaves: Vec<Leaf<'a>>,
    locations: String,
}

/// A span being written: its edit, and where its length and its content start in the output.
#[derive(Debug, Clone, Copy, Default)]
struct Open {
    edit: usize,
    len_at: usize,
    content_at: usize,
}

/// The spans being written, innermost last: inline up to [`INLINE_OPEN`] deep.
struct OpenSpans {
    inline: [Open; INLINE_OPEN],
    spilled: Vec<Open>,
    len: usize,
}

const INLINE_OPEN: usize = 16;

impl OpenSpans {
    fn push(&mut self, span: Open) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = span,
            None => self.spilled.push(span),
        }
        self.len += 1;
    }

    fn last(&self) -> Option<Open> {
        match self.len {
            0 => None,
            n if n <= INLINE_OPEN => Some(self.inline[n - 1]),
            _ => self.spilled.last().copied(),
        }
    }

    fn pop(&mut self) {
        if self.len > INLINE_OPEN {
            self.spilled.pop();
        }
        self.len -= 1;
    }
}

impl<'a> Scan<'a> for ProtoScan<'a> {
    fn leaves(&self) -> &[Leaf<'a>] {
        &self.leaves
    }

    /// One pass: each span's header is copied as it was, and its length set when the span
    /// closes if its content changed size (moving the content when the varint changes size).
    fn write(&self, fill: &mut Fill<'_, 'a>) -> Result<Vec<u8>> {
        let payload = self.payload;
        let grow: usize = self.leaves.iter().map(|l| l.value.len() / 3 + 64).sum();
        let mut out = Vec::with_capacity(payload.len() + grow);
        let mut copied = 0;
        let mut open = OpenSpans { inline: [Open::default(); INLINE_OPEN], spilled: Vec::new(), len: 0 };
        let mut leaves = self.leaves.iter();
        for (i, e) in self.edits.iter().enumerate() {
            let start = e.start as usize;
            while let Some(span) = open.last().filter(|s| self.edits[s.edit].end as usize <= start) {
                copied = self.close(&mut out, copied, span);
                open.pop();
            }
            if e.kind == EditKind::Span {
                let content = e.content as usize;
                out.extend_from_slice(&payload[copied..content]);
                copied = content;
                let len_at = out.len() - (e.content - e.tag_end) as usize;
                open.push(Open { edit: i, len_at, content_at: out.len() });
                continue;
            }
            out.extend_from_slice(&payload[copied..start]);
            copied = e.end as usize;
            let leaf = leaves.next().expect("one leaf per leaf edit");
            let mut emit = ProtoEmit {
                start: out.len(),
                out: &mut out,
                tag: &payload[start..e.tag_end as usize],
                field: &payload[start..copied],
                text_only: leaf.kind == ValueKind::Text,
                element: e.kind == EditKind::Element,
            };
            fill(leaf, &self.locations[leaf.at.clone()], &mut emit)?;
        }
        while let Some(span) = open.last() {
            copied = self.close(&mut out, copied, span);
            open.pop();
        }
        out.extend_from_slice(&payload[copied..]);
        Ok(out)
    }
}

impl ProtoScan<'_> {
    /// Copies the rest of an open span and sets its length; returns the new copy position.
    fn close(&self, out: &mut Vec<u8>, copied: usize, span: Open) -> usize {
        let e = self.edits[span.edit];
        let end = e.end as usize;
        out.extend_from_slice(&self.payload[copied..end]);
        let len = out.len() - span.content_at;
        if len != (e.end - e.content) as usize {
            let mut varint = [0u8; 10];
            let mut n = 0;
            let mut v = len;
            while v >= 0x80 {
                varint[n] = v as u8 | 0x80;
                v >>= 7;
                n += 1;
            }
            varint[n] = v as u8;
            let varint = &varint[..=n];
            if varint.len() == span.content_at - span.len_at {
                out[span.len_at..span.content_at].copy_from_slice(varint);
            } else {
                out.splice(span.len_at..span.content_at, varint.iter().copied());
            }
        }
        end
    }
}

/// Writes one leaf's field into the output: `out[start..]` is the field so far.
struct ProtoEmit<'o, 'p> {
    out: &'o mut Vec<u8>,
    start: usize,
    /// The field's tag, and the whole field, as they were.
    tag: &'p [u8],
    field: &'p [u8],
    text_only: bool,
    element: bool,
}

impl ProtoEmit<'_, '_> {
    fn set(&mut self, value: &[u8]) {
        self.out.truncate(self.start);
        self.out.extend_from_slice(self.tag);
        push_varint(self.out, value.len());
        self.out.extend_from_slice(value);
    }
}

impl Emit for ProtoEmit<'_, '_> {
    fn text(&mut self, text: &str) -> Result<()> {
        self.set(text.as_bytes());
        Ok(())
    }
    fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        if self.text_only {
            return Err(Error::record("a Protobuf string field cannot hold raw bytes"));
        }
        self.set(bytes);
        Ok(())
    }
    fn json(&mut self, _: &str) -> Result<()> {
        Err(Error::record("a Protobuf field cannot hold a JSON value"))
    }
    /// Omits a singular field; empties an element of a repeated field (see the module docs).
    fn null(&mut self) -> Result<()> {
        if self.element {
            self.set(&[]);
        } else {
            self.out.truncate(self.start);
        }
        Ok(())
    }
    fn keep(&mut self) -> Result<()> {
        self.out.truncate(self.start);
        self.out.extend_from_slice(self.field);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;
    use prost_reflect::{DynamicMessage, MapKey, ReflectMessage};

    use super::*;
    use crate::error::ErrorKind;

    const TEST_PROTO: &str = r#"
syntax = "proto3";
package t;
import "confluent/meta.proto";

message Item {
  string sku = 1 [(confluent.field_meta).tags = "PII"];
  int32 qty = 2;
  bytes blob = 3 [(confluent.field_meta) = { tags: ["PII", "BLOB"] }];
}

message Node {
  string value = 1 [(confluent.field_meta).tags = "PII"];
  repeated Node children = 2;
  Node next = 3;
  int64 n = 4;
}

message Root {
  string name = 1;
  bytes secret = 2 [(confluent.field_meta).tags = "PII"];
  Item item = 3;
  repeated Item items = 4;
  repeated string tags = 5 [(confluent.field_meta).tags = "OTHER"];
  repeated bytes blobs = 6;
  map<string, string> attrs = 7 [(confluent.field_meta).tags = "PII"];
  map<string, Item> item_map = 8;
  map<int64, string> by_id = 9;
  optional string nick = 10;
  oneof contact {
    string email = 11 [(confluent.field_meta).tags = "PII"];
    bytes phone = 12;
    Item alt = 13;
  }
  Node tree = 14;
  int64 count = 15;
  repeated int32 nums = 16;
  double score = 17;
  fixed32 f32 = 18;
  map<bool, bytes> flags = 19;
  map<sint32, string> by_sint = 20;
}

message Wider {
  message WideItem {
    string sku = 1;
    int32 qty = 2;
    bytes blob = 3;
    string more = 9;
    fixed64 fx = 10;
  }
  string name = 1;
  bytes secret = 2;
  WideItem item = 3;
  repeated WideItem items = 4;
  string extra = 30;
  WideItem extra_item = 31;
  fixed64 fx = 32;
  sint64 z = 33;
  fixed32 f = 34;
}
"#;

    const PAYMENT_PROTO: &str = include_str!("../../../schemas/payment/payment.proto");
    const PAYMENT_JSON: &str = include_str!("../../../schemas/payment/payment.json");

    fn schema(text: &str, indexes: &[i32]) -> ProtoSchema {
        ProtoSchema::parse("test.proto", text, &[], indexes).unwrap()
    }

    fn paths(list: &[&str]) -> Vec<FieldPath> {
        list.iter().map(|p| FieldPath::parse(p).unwrap()).collect()
    }

    // ---- building test records -----------------------------------------------------------

    fn from_json(desc: MessageDescriptor, json: &serde_json::Value) -> DynamicMessage {
        let mut msg = DynamicMessage::new(desc.clone());
        for (name, v) in json.as_object().unwrap() {
            let field = desc.get_field_by_name(name).unwrap_or_else(|| panic!("no field {name}"));
            let value = if field.is_map() {
                let Kind::Message(entry) = field.kind() else { unreachable!() };
                let (kf, vf) = (entry.map_entry_key_field(), entry.map_entry_value_field());
                let map = v
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| {
                        let key = match kf.kind() {
                            Kind::String => MapKey::String(k.clone()),
                            Kind::Bool => MapKey::Bool(k == "true"),
                            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(k.parse().unwrap()),
                            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(k.parse().unwrap()),
                            Kind::Uint32 | Kind::Fixed32 => MapKey::U32(k.parse().unwrap()),
                            _ => MapKey::U64(k.parse().unwrap()),
                        };
                        (key, scalar(&vf.kind(), v))
                    })
                    .collect();
                Value::Map(map)
            } else if field.is_list() {
                Value::List(v.as_array().unwrap().iter().map(|v| scalar(&field.kind(), v)).collect())
            } else {
                scalar(&field.kind(), v)
            };
            msg.set_field(&field, value);
        }
        msg
    }

    fn scalar(kind: &Kind, v: &serde_json::Value) -> Value {
        match kind {
            Kind::String => Value::String(v.as_str().unwrap().into()),
            Kind::Bytes => Value::Bytes(prost::bytes::Bytes::from(v.as_str().unwrap().as_bytes().to_vec())),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(v.as_i64().unwrap() as i32),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(v.as_i64().unwrap()),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(v.as_u64().unwrap() as u32),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(v.as_u64().unwrap()),
            Kind::Bool => Value::Bool(v.as_bool().unwrap()),
            Kind::Double => Value::F64(v.as_f64().unwrap()),
            Kind::Float => Value::F32(v.as_f64().unwrap() as f32),
            Kind::Enum(_) => Value::EnumNumber(v.as_i64().unwrap() as i32),
            Kind::Message(m) => Value::Message(from_json(m.clone(), v)),
        }
    }

    fn encode(schema: &ProtoSchema, json: &str) -> Vec<u8> {
        encode_as(&schema.message, json)
    }

    fn encode_as(desc: &MessageDescriptor, json: &str) -> Vec<u8> {
        from_json(desc.clone(), &serde_json::from_str(json).unwrap()).encode_to_vec()
    }

    // ---- the fast path and the reference path --------------------------------------------

    /// The deterministic fake fill: each value becomes `<location>`.
    fn fake(leaf: &Leaf<'_>, at: &str, emit: &mut dyn Emit) -> Result<()> {
        let text = format!("<{at}>");
        match leaf.kind {
            ValueKind::Bytes => emit.bytes(text.as_bytes()),
            _ => emit.text(&text),
        }
    }

    fn fast(schema: &ProtoSchema, list: &[&str], payload: &[u8]) -> (Vec<u8>, Vec<String>) {
        let scanner = ProtoScanner { plan: Plan::build(&schema.message, paths(list)).unwrap() };
        let scan = scanner.scan_payload(payload, "test record").unwrap();
        let at = scan.leaves.iter().map(|l| scan.locations[l.at.clone()].to_string()).collect();
        (scan.write(&mut fake).unwrap(), at)
    }

    /// Decodes with prost-reflect, replaces what the paths select, encodes.
    fn reference(schema: &ProtoSchema, list: &[&str], payload: &[u8]) -> Vec<u8> {
        let paths = paths(list);
        let mut msg = DynamicMessage::decode(schema.message.clone(), payload).unwrap();
        let cursors: Vec<Cursor> = (0..paths.len())
            .filter(|&i| paths[i].type_field().is_none())
            .map(|path| Cursor { path, depth: 0 })
            .collect();
        ref_message(&mut msg, &paths, &cursors, &mut ConcretePath::default());
        msg.encode_to_vec()
    }

    fn ref_message(msg: &mut DynamicMessage, paths: &[FieldPath], cursors: &[Cursor], at: &mut ConcretePath) {
        let desc = msg.descriptor();
        for field in desc.fields() {
            if !msg.has_field(&field) {
                continue;
            }
            let name = field.name();
            let named: Vec<Cursor> = cursors
                .iter()
                .filter(|c| paths[c.path].segments()[c.depth] == Segment::Field(name.into()))
                .map(|c| Cursor { path: c.path, depth: c.depth + 1 })
                .collect();
            let step = |s: Segment| -> Vec<Cursor> {
                named
                    .iter()
                    .filter(|c| paths[c.path].segments().get(c.depth) == Some(&s))
                    .map(|c| Cursor { path: c.path, depth: c.depth + 1 })
                    .collect()
            };
            let typed = paths.iter().any(|p| p.type_field() == Some((desc.full_name(), name)));
            let mark = at.len();
            at.push_field(name);
            match msg.get_field_mut(&field) {
                Value::List(items) => {
                    let next = step(Segment::AnyElement);
                    for (i, item) in items.iter_mut().enumerate() {
                        let m = at.len();
                        at.push_index(i);
                        ref_value(item, paths, &next, typed, at);
                        at.truncate(m);
                    }
                }
                Value::Map(map) => {
                    let next = step(Segment::AnyMember);
                    for (k, v) in map.iter_mut() {
                        let m = at.len();
                        at.push_field(&match k {
                            MapKey::String(s) => s.clone(),
                            MapKey::Bool(b) => b.to_string(),
                            MapKey::I32(n) => n.to_string(),
                            MapKey::I64(n) => n.to_string(),
                            MapKey::U32(n) => n.to_string(),
                            MapKey::U64(n) => n.to_string(),
                        });
                        ref_value(v, paths, &next, typed, at);
                        at.truncate(m);
                    }
                }
                v => ref_value(v, paths, &named, typed, at),
            }
            at.truncate(mark);
        }
    }

    fn ref_value(v: &mut Value, paths: &[FieldPath], cursors: &[Cursor], typed: bool, at: &mut ConcretePath) {
        let done = typed || cursors.iter().any(|c| c.depth == paths[c.path].segments().len());
        match v {
            Value::String(s) if done => *s = format!("<{}>", at.as_str()),
            Value::Bytes(b) if done => *b = format!("<{}>", at.as_str()).into_bytes().into(),
            Value::Message(m) => {
                let deeper: Vec<Cursor> =
                    cursors.iter().copied().filter(|c| c.depth < paths[c.path].segments().len()).collect();
                ref_message(m, paths, &deeper, at)
            }
            _ => {}
        }
    }

    /// The fast path's output is the reference's, byte for byte (`exact`), or — where maps with
    /// several entries make prost-reflect's re-encoding order arbitrary — the same message.
    fn check(schema: &ProtoSchema, list: &[&str], payload: &[u8], exact: bool) -> Vec<String> {
        let (ours, at) = fast(schema, list, payload);
        let theirs = reference(schema, list, payload);
        if exact {
            assert_eq!(ours, theirs, "paths {list:?}");
        } else {
            assert_eq!(ours.len(), theirs.len(), "paths {list:?}");
            let decode = |b: &[u8]| DynamicMessage::decode(schema.message.clone(), b).unwrap();
            assert_eq!(decode(&ours), decode(&theirs), "paths {list:?}");
        }
        at
    }

    const FULL: &str = r#"{
        "name": "Ada", "secret": "s3cr3t",
        "item": {"sku": "A-1", "qty": 3, "blob": "xyz"},
        "items": [{"sku": "B-1", "qty": 1}, {"qty": 2}, {"sku": "B-3", "blob": "b3"}],
        "tags": ["t0", "", "t2"],
        "blobs": ["b0", "b1"],
        "attrs": {"k": "v"},
        "item_map": {"m": {"sku": "M-1", "qty": 9}},
        "by_id": {"-42": "minus"},
        "nick": "",
        "email": "ada@example.com",
        "tree": {"value": "root", "n": 7,
                 "children": [{"value": "c0"}, {"children": [{"value": "c1.0", "next": {"value": "deep"}}]}],
                 "next": {"next": {"value": "nn"}}},
        "count": 12345678901, "nums": [1, -2, 300], "score": 1.5, "f32": 7,
        "flags": {"true": "yes"},
        "by_sint": {"-3": "neg"}
    }"#;

    const ROOT_PATHS: &[&str] = &[
        "name",
        "secret",
        "item.sku",
        "item.blob",
        "items[*].sku",
        "items[*].blob",
        "tags[*]",
        "blobs[*]",
        "attrs.*",
        "item_map.*.sku",
        "by_id.*",
        "nick",
        "email",
        "phone",
        "alt.sku",
        "tree.value",
        "tree.next.next.value",
        "tree.children[*].children[*].next.value",
        "flags.*",
        "by_sint.*",
    ];

    #[test]
    fn root_paths_equal_reference() {
        let s = schema(TEST_PROTO, &[2]);
        let payload = encode(&s, FULL);
        let at = check(&s, ROOT_PATHS, &payload, true);
        assert_eq!(
            at,
            [
                "name",
                "secret",
                "item.sku",
                "item.blob",
                "items[0].sku",
                "items[2].sku",
                "items[2].blob",
                "tags[0]",
                "tags[1]",
                "tags[2]",
                "blobs[0]",
                "blobs[1]",
                "attrs.k",
                "item_map.m.sku",
                "by_id.-42",
                "nick",
                "email",
                "tree.value",
                "tree.children[1].children[0].next.value",
                "tree.next.next.value",
                "flags.true",
                "by_sint.-3",
            ]
        );
        // Each path alone, too.
        for p in ROOT_PATHS {
            check(&s, &[p], &payload, true);
        }
    }

    #[test]
    fn oneof_members_and_optional() {
        let s = schema(TEST_PROTO, &[2]);
        for json in [
            r#"{"name": "x", "phone": "+1 555", "count": 1}"#,
            r#"{"alt": {"sku": "ALT", "qty": 4}, "nick": "nick"}"#,
            r#"{"email": "", "nick": "n"}"#,
            r#"{}"#,
        ] {
            let payload = encode(&s, json);
            check(&s, &["email", "phone", "alt.sku", "nick"], &payload, true);
            check(&s, &["t.Item::sku", "t.Root::email"], &payload, true);
        }
    }

    #[test]
    fn maps_with_many_entries() {
        let s = schema(TEST_PROTO, &[2]);
        let payload = encode(
            &s,
            r#"{"attrs": {"a": "1", "b c": "2", "": "3", "d\"e": "4"},
                "item_map": {"x": {"sku": "X"}, "y": {"qty": 1}, "z": {"sku": "Z", "blob": "zz"}},
                "by_id": {"1": "one", "-1": "minus one", "9223372036854775807": "max"},
                "flags": {"true": "t", "false": "f"}, "by_sint": {"-2147483648": "min", "5": "five"}}"#,
        );
        let at = check(
            &s,
            &["attrs.*", "item_map.*.sku", "item_map.*.blob", "by_id.*", "flags.*", "by_sint.*"],
            &payload,
            false,
        );
        assert_eq!(at.len(), 4 + 2 + 1 + 3 + 2 + 2);
        for expected in
            ["attrs.a", "attrs[\"b c\"]", "attrs[\"\"]", "attrs[\"d\\\"e\"]", "by_id.-1", "by_sint.-2147483648"]
        {
            assert!(at.iter().any(|a| a == expected), "{expected} not in {at:?}");
        }
        check(&s, &["t.Root::attrs", "t.Item::sku"], &payload, false);
    }

    #[test]
    fn map_entries_in_any_field_order() {
        // A map entry with its value before its key, and one with no key at all.
        let s = schema(TEST_PROTO, &[2]);
        let mut payload = vec![7 << 3 | 2, 8, 2 << 3 | 2, 1, b'v', 1 << 3 | 2, 3, b'k', b'e', b'y'];
        payload.extend([7 << 3 | 2, 3, 2 << 3 | 2, 1, b'w']);
        let (out, at) = fast(&s, &["attrs.*"], &payload);
        assert_eq!(at, ["attrs.key", "attrs[\"\"]"]);
        let mut expected = vec![7 << 3 | 2, 18, 2 << 3 | 2, 11];
        expected.extend(b"<attrs.key>");
        expected.extend([1 << 3 | 2, 3, b'k', b'e', b'y', 7 << 3 | 2, 13, 2 << 3 | 2, 11]);
        expected.extend(b"<attrs[\"\"]>");
        assert_eq!(out, expected);
    }

    #[test]
    fn type_qualified_paths_equal_reference() {
        let s = schema(TEST_PROTO, &[2]);
        let payload = encode(&s, FULL);
        for list in [
            &["t.Node::value"][..],
            &["t.Item::sku", "t.Item::blob"],
            &["t.Root::tags", "t.Root::blobs", "t.Root::secret"],
            &["t.Root::attrs", "t.Root::by_id", "t.Root::flags"],
            &["t.Node::value", "t.Item::sku", "tree.value", "name"],
        ] {
            check(&s, list, &payload, true);
        }
        let (_, at) = fast(&s, &["t.Node::value"], &payload);
        assert_eq!(
            at,
            [
                "tree.value",
                "tree.children[0].value",
                "tree.children[1].children[0].value",
                "tree.children[1].children[0].next.value",
                "tree.next.next.value"
            ]
        );
    }

    #[test]
    fn enclosing_lengths_change_size() {
        // Replacing values moves enclosing messages' lengths across varint sizes, both ways,
        // at several levels at once.
        let s = schema(TEST_PROTO, &[2]);
        let pad = |n: usize| "p".repeat(n);
        for (sku, blob) in
            [("s", 117), ("s", 118), ("s", 125), ("s", 16370), (&*"L".repeat(140), 1), (&*"L".repeat(130), 0)]
        {
            let json = serde_json::json!({
                "item": {"sku": sku, "blob": pad(blob)},
                "items": [{"sku": sku, "blob": pad(blob)}],
                "tree": {"next": {"value": sku, "children": [{"value": pad(blob)}], "next": {"value": sku}}},
            });
            let payload = encode(&s, &json.to_string());
            check(&s, &["item.sku", "items[*].sku", "t.Node::value"], &payload, true);
            check(&s, &["tree.next.next.value"], &payload, true);
        }
    }

    #[test]
    fn recursive_messages_deep() {
        let s = schema(TEST_PROTO, &[1]); // t.Node
        let mut json = r#"{"value": "bottom"}"#.to_string();
        for i in 0..60 {
            json = format!(
                r#"{{"value": "v{i}", "n": {i}, "children": [{json}, {{"value": "side"}}], "next": {{"value": "n"}}}}"#
            );
        }
        let payload = encode(&s, &json);
        let at = check(&s, &["t.Node::value"], &payload, true);
        assert_eq!(at.len(), 1 + 60 * 3);
        check(&s, &["children[*].children[*].value", "next.value"], &payload, true);
    }

    #[test]
    fn depth_limit() {
        let s = schema(TEST_PROTO, &[1]);
        let nest = |n: usize| {
            let mut msg = from_json(s.message.clone(), &serde_json::json!({"value": "x"}));
            for _ in 0..n {
                let mut outer = DynamicMessage::new(s.message.clone());
                outer.set_field_by_name("next", Value::Message(msg));
                msg = outer;
            }
            msg.encode_to_vec()
        };
        let scanner = s.scanner(paths(&["t.Node::value"])).unwrap();
        assert_eq!(scanner.scan(&nest(MAX_DEPTH), "v").unwrap().leaves().len(), 1);
        let err = scanner.scan(&nest(MAX_DEPTH + 1), "record value").err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Record);
        assert!(err.message().contains("nest too deeply"), "{err}");
        // A path that does not descend leaves deep nesting alone.
        let shallow = s.scanner(paths(&["value"])).unwrap();
        assert!(shallow.scan(&nest(MAX_DEPTH * 3), "v").is_ok());
    }

    #[test]
    fn unknown_fields_are_preserved() {
        let s = schema(TEST_PROTO, &[2]);
        let wider = ProtoSchema::parse("w.proto", TEST_PROTO, &[], &[3]).unwrap();
        let payload = encode_as(
            &wider.message,
            r#"{"name": "n", "secret": "s", "item": {"sku": "I", "more": "m", "fx": 5},
                "items": [{"sku": "a", "more": "x"}, {"more": "y", "blob": "b"}],
                "extra": "e", "extra_item": {"sku": "hidden"}, "fx": 1, "z": -5, "f": 2}"#,
        );
        check(&s, &["name", "secret", "item.sku", "items[*].sku", "items[*].blob"], &payload, true);
        check(&s, &["t.Item::sku"], &payload, true);
        // Groups (unknown here) are skipped and kept: field 99 as a group holding a varint.
        let mut grouped = payload.clone();
        grouped.extend([0x9b, 0x06, 0x08, 0x01, 0x9c, 0x06]);
        let (out, _) = fast(&s, &["name"], &grouped);
        assert!(out.ends_with(&[0x9b, 0x06, 0x08, 0x01, 0x9c, 0x06]));
        assert!(s.scanner(paths(&["name"])).unwrap().scan(&grouped[..grouped.len() - 1], "v").is_err());
    }

    #[test]
    fn payment_workload() {
        let s = ProtoSchema::parse("payment.proto", PAYMENT_PROTO, &[], &[1]).unwrap();
        assert_eq!(s.message_name(), "bench.Payment");
        let tagged = s.tagged_fields(&["PII".to_string()]);
        let names: Vec<&str> = tagged.iter().map(FieldPath::as_str).collect();
        assert_eq!(
            names,
            ["bench.Payment::email", "bench.Payment::ssn", "bench.Address::street", "bench.Payment::phone"]
        );
        let payload = encode(&s, PAYMENT_JSON);
        let list: Vec<&str> = names.clone();
        let at = check(&s, &list, &payload, true);
        assert_eq!(at, ["email", "ssn", "address.street", "phone"]);
        check(&s, &["email", "ssn", "address.street", "phone", "tags[*]", "full_name"], &payload, true);
        // A reference for meta.proto that differs only in layout is used instead of the built-in one.
        let refs = [("confluent/meta.proto".to_string(), META_PROTO.replace("  ", "\t"))];
        let s2 = ProtoSchema::parse("payment.proto", PAYMENT_PROTO, &refs, &[1]).unwrap();
        assert_eq!(s2.tagged_fields(&["PII".to_string()]), tagged);
    }

    #[test]
    fn tagged_fields_in_schema_order() {
        let s = schema(TEST_PROTO, &[2]);
        let tagged = |tags: &[&str]| -> Vec<String> {
            let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            s.tagged_fields(&tags).iter().map(|p| p.to_string()).collect()
        };
        assert_eq!(
            tagged(&["PII"]),
            ["t.Root::secret", "t.Item::sku", "t.Item::blob", "t.Root::attrs", "t.Root::email", "t.Node::value"]
        );
        assert_eq!(tagged(&["BLOB", "OTHER"]), ["t.Item::blob", "t.Root::tags"]);
        assert!(tagged(&["NONE"]).is_empty());
        // Every tagged field is one the scanner accepts.
        assert!(s.scanner(s.tagged_fields(&["PII".into(), "OTHER".into()])).is_ok());
        // No meta.proto import: nothing is tagged.
        let plain = schema("syntax = \"proto3\"; message M { string a = 1; }", &[]);
        assert!(plain.tagged_fields(&["PII".into()]).is_empty());
    }

    #[test]
    fn message_indexes() {
        let text = r#"syntax = "proto3"; package p;
            message A { message B { string b = 1; } message C { message D { string d = 1; } } string a = 1; }
            message E { string e = 1; }"#;
        for (indexes, name) in [
            (&[][..], "p.A"),
            (&[0], "p.A"),
            (&[1], "p.E"),
            (&[0, 0], "p.A.B"),
            (&[0, 1], "p.A.C"),
            (&[0, 1, 0], "p.A.C.D"),
        ] {
            assert_eq!(schema(text, indexes).message_name(), name);
        }
        for bad in [&[2][..], &[0, 2], &[-1], &[1, 0]] {
            let err = ProtoSchema::parse("s.proto", text, &[], bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Format);
        }
    }

    #[test]
    fn schema_errors_name_the_schema_not_its_text() {
        let cases = [
            ("syntax = \"proto3\"; message M { string secret_field_name = 1 }", "syntax error"),
            ("syntax = \"proto3\"; message M { Missing secret_field_name = 1; }", "invalid definitions"),
            (
                "syntax = \"proto3\"; import \"other/thing.proto\"; message M { string secret_field_name = 1; }",
                "other/thing.proto",
            ),
        ];
        for (text, expect) in cases {
            let err = ProtoSchema::parse("orders-value", text, &[], &[]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Format);
            assert!(err.message().contains("orders-value") && err.message().contains(expect), "{err}");
            assert!(!err.message().contains("secret_field_name"), "{err}");
        }
        // An error in a reference names the reference.
        let refs = [("dep.proto".to_string(), "syntax = \"proto3\"; message secret_x {".to_string())];
        let err = ProtoSchema::parse("main", "syntax = \"proto3\"; import \"dep.proto\";", &refs, &[]).unwrap_err();
        assert!(err.message().contains("dep.proto") && !err.message().contains("secret_x"), "{err}");
        // Odd schema names still compile.
        assert!(ProtoSchema::parse("/abs/../x", "syntax = \"proto3\"; message M {}", &[], &[]).is_ok());
        assert!(ProtoSchema::parse("", "syntax = \"proto3\"; message M {}", &[], &[]).is_ok());
    }

    #[test]
    fn path_errors_name_the_path() {
        let s = schema(TEST_PROTO, &[2]);
        for bad in [
            "missing",
            "count",
            "item",
            "item.qty",
            "item.nope",
            "items.sku",
            "items[*]",
            "tags",
            "attrs",
            "attrs[*]",
            "name.x",
            "item_map.*",
            "tree.children[*]",
            "nums[*]",
            "t.Root::count",
            "t.Root::item",
            "t.Nope::x",
            "t.Item::nope",
            "t.Wider::name",
            "*",
        ] {
            let err = s.scanner(paths(&[bad])).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(err.kind(), ErrorKind::Policy, "{bad}");
            assert!(err.message().contains(bad), "{err}");
        }
    }

    #[test]
    fn keep_everywhere_is_identity() {
        let s = schema(TEST_PROTO, &[2]);
        let payload = encode(&s, FULL);
        let all: Vec<&str> = ROOT_PATHS.iter().copied().chain(["t.Node::value", "t.Item::sku"]).collect();
        let scanner = s.scanner(paths(&all)).unwrap();
        let scan = scanner.scan(&payload, "v").unwrap();
        assert!(scan.leaves().len() > 20);
        assert_eq!(scan.write(&mut |_, _, emit| emit.keep()).unwrap(), payload);
        // Non-minimal varints (tag, lengths of a nested message and of a leaf) survive too.
        let odd = [0x9a, 0x00, 0x85, 0x80, 0x00, 0x0a, 0x82, 0x00, b'h', b'i', 0x78, 0x01];
        let scan = scanner.scan(&odd, "v").unwrap();
        assert_eq!(scan.leaves().len(), 1);
        assert_eq!(scan.write(&mut |_, _, emit| emit.keep()).unwrap(), odd);
        // Same size (a shorter length varint, a longer value): the span's header stays as it was.
        let out = scan.write(&mut |_, _, emit| emit.text("hey")).unwrap();
        assert_eq!(out, [0x9a, 0x00, 0x85, 0x80, 0x00, 0x0a, 0x03, b'h', b'e', b'y', 0x78, 0x01]);
        let out = scan.write(&mut |_, _, emit| emit.text("heyyy")).unwrap();
        assert_eq!(out, [0x9a, 0x00, 0x07, 0x0a, 0x05, b'h', b'e', b'y', b'y', b'y', 0x78, 0x01]);
    }

    #[test]
    fn null_omits_singular_fields_and_empties_elements() {
        let s = schema(TEST_PROTO, &[2]);
        let payload = encode(&s, FULL);
        let list = ["name", "item.sku", "tags[*]", "blobs[*]", "nick", "email", "t.Node::value", "attrs.*"];
        let scanner = s.scanner(paths(&list)).unwrap();
        let out = scanner.scan(&payload, "v").unwrap().write(&mut |_, _, emit| emit.null()).unwrap();
        let got = DynamicMessage::decode(s.message.clone(), &out[..]).unwrap();
        let mut expected = DynamicMessage::decode(s.message.clone(), &payload[..]).unwrap();
        for name in ["name", "nick", "email"] {
            expected.clear_field_by_name(name);
        }
        let Some(Value::Message(item)) = expected.get_field_by_name_mut("item") else { panic!() };
        item.clear_field_by_name("sku");
        expected.set_field_by_name("tags", Value::List(vec![Value::String(String::new()); 3]));
        expected.set_field_by_name("blobs", Value::List(vec![Value::Bytes(Default::default()); 2]));
        expected.set_field_by_name(
            "attrs",
            Value::Map([(MapKey::String("k".into()), Value::String(String::new()))].into_iter().collect()),
        );
        fn clear_values(m: &mut DynamicMessage) {
            m.clear_field_by_name("value");
            // (get_field_by_name_mut inserts a default value: look first.)
            if m.has_field_by_name("next") {
                clear_values(m.get_field_by_name_mut("next").unwrap().as_message_mut().unwrap());
            }
            if m.has_field_by_name("children") {
                for c in m.get_field_by_name_mut("children").unwrap().as_list_mut().unwrap() {
                    clear_values(c.as_message_mut().unwrap());
                }
            }
        }
        let Some(Value::Message(tree)) = expected.get_field_by_name_mut("tree") else { panic!() };
        clear_values(tree);
        assert_eq!(got, expected);
        assert!(!got.has_field_by_name("nick"), "optional: unset");
    }

    #[test]
    fn emit_rules() {
        let s = schema(TEST_PROTO, &[2]);
        let payload = encode(&s, r#"{"name": "n", "secret": "s"}"#);
        let scan = s.scanner(paths(&["name", "secret"])).unwrap();
        let scan = scan.scan(&payload, "v").unwrap();
        let err = scan.write(&mut |_, _, emit| emit.json("1")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Record);
        let err = scan.write(&mut |_, _, emit| emit.bytes(b"\xff")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Record, "raw bytes into a string field");
        let out = scan.write(&mut |_, _, emit| emit.text("é")).unwrap();
        let msg = DynamicMessage::decode(s.message.clone(), &out[..]).unwrap();
        assert_eq!(msg.get_field_by_name("secret").unwrap().as_bytes().unwrap().as_ref(), "é".as_bytes());
        // Leaves say what they hold.
        let kinds: Vec<ValueKind> = scan.leaves().iter().map(|l| l.kind).collect();
        assert_eq!(kinds, [ValueKind::Text, ValueKind::Bytes]);
        assert_eq!(scan.leaves()[0].value, b"n");
    }

    #[test]
    fn malformed_payloads_are_record_errors() {
        let s = schema(TEST_PROTO, &[2]);
        let scanner = s.scanner(paths(&["name", "item.sku", "t.Node::value", "attrs.*"])).unwrap();
        for bad in [
            &[0x08][..],                                                               // truncated varint
            &[0x78, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],       // varint overflow
            &[0x78, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], // 11 bytes
            &[0x0a, 0x05, b'a'],                                                       // length past end
            &[0x08, 0x01],                                                             // name (string) as a varint
            &[0x1a, 0x02, 0x08, 0x01],                                                 // item.sku as a varint
            &[0x1a, 0x03, 0x0a, 0x05, b'x'],                                           // nested length past its message
            &[0x0a, 0x01, 0xff],                                                       // not UTF-8
            &[0x00, 0x00],                                                             // field number 0
            &[0x0e],                                                                   // wire type 6
            &[0x0c],                                                                   // end group without start
            &[0x0b, 0x08, 0x01],                                                       // group without end
            &[0x0b, 0x14],                                                             // group ended by another number
            &[0x7d, 0x01, 0x02],                                                       // truncated fixed32
            &[0x79, 0x01, 0x02, 0x03, 0x04],                                           // truncated fixed64
            &[0x3a, 0x04, 0x08, 0x01, 0x12, 0x00],                                     // map key of the wrong wire type
            &[0x3a, 0x05, 0x0a, 0x01, 0xc0, 0x12, 0x00],                               // map key not UTF-8
        ] {
            let err = scanner.scan(bad, "record value").err().unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(err.kind(), ErrorKind::Record, "{bad:?}");
            assert!(err.message().starts_with("record value is not a valid t.Root Protobuf message"), "{err}");
        }
    }

    #[test]
    fn every_truncation_fails_unless_at_a_field_boundary() {
        let s = schema(TEST_PROTO, &[2]);
        let p = ProtoSchema::parse("payment.proto", PAYMENT_PROTO, &[], &[1]).unwrap();
        for (schema, payload, list) in [
            (&s, encode(&s, FULL), ROOT_PATHS.to_vec()),
            (&p, encode(&p, PAYMENT_JSON), vec!["email", "address.street", "tags[*]"]),
        ] {
            let scanner = schema.scanner(paths(&list)).unwrap();
            let mut boundaries = 0;
            for cut in 0..payload.len() {
                let part = &payload[..cut];
                let ours = scanner.scan(part, "v");
                let theirs = DynamicMessage::decode(schema.message.clone(), part);
                assert_eq!(ours.is_ok(), theirs.is_ok(), "cut at {cut}");
                match ours {
                    Ok(scan) => {
                        boundaries += 1;
                        scan.write(&mut fake).unwrap();
                    }
                    Err(e) => assert_eq!(e.kind(), ErrorKind::Record),
                }
            }
            assert!(boundaries < 25, "only cuts between top-level fields are valid messages");
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = schema(TEST_PROTO, &[2]);
            let scanner = s.scanner(paths(ROOT_PATHS)).unwrap();
            if let Ok(scan) = scanner.scan(&bytes, "v") {
                scan.write(&mut fake).unwrap();
                prop_assert_eq!(scan.write(&mut |_, _, e| e.keep()).unwrap(), bytes.clone());
            }
        }

        #[test]
        fn mutations_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
            let s = schema(TEST_PROTO, &[2]);
            let mut payload = encode(&s, FULL);
            for (at, byte) in flips {
                let i = at.index(payload.len());
                payload[i] = byte;
            }
            let scanner = s.scanner(paths(&["t.Node::value", "t.Item::sku", "attrs.*", "tags[*]"])).unwrap();
            if let Ok(scan) = scanner.scan(&payload, "v") {
                scan.write(&mut fake).unwrap();
                scan.write(&mut |_, _, e| e.null()).unwrap();
                prop_assert_eq!(scan.write(&mut |_, _, e| e.keep()).unwrap(), payload.clone());
            };
        }
    }
}
