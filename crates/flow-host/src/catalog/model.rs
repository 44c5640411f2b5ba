//! The catalog file format (DESIGN 5.2): a subset of Flow's `flow.yaml`, YAML or JSON.
//! Unknown fields are errors.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Other catalog files to include, relative to this one (Flow's `import`): their
    /// collections, tasks and tests join this catalog's. Resolved when a catalog is loaded
    /// from its file (`catalog::load`); a bundle as published has none left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub import: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub collections: BTreeMap<String, CollectionDef>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub materializations: BTreeMap<String, MaterializationDef>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub captures: BTreeMap<String, CaptureDef>,
    /// Each test: its steps, or (as Flow writes it) `{description, steps}`.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "tests_either_way"
    )]
    #[schemars(with = "BTreeMap<String, TestRepr>")]
    pub tests: BTreeMap<String, Vec<TestStep>>,
}

/// A test as written: its steps, or `{description, steps}` (for the catalog's schema).
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum TestRepr {
    Steps(Vec<TestStep>),
    Described(DescribedTest),
}

/// `{description, steps}`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // `description` is for the reader of the catalog.
struct DescribedTest {
    #[serde(default)]
    description: Option<String>,
    steps: Vec<TestStep>,
}

/// One test, either way it is written: by shape (a list or a map), so a bad step is
/// reported as itself, where it is, not as "matches no form".
struct EitherTest;

impl<'de> serde::de::Visitor<'de> for EitherTest {
    type Value = Vec<TestStep>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a test: a list of steps, or {description, steps}")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Vec::<TestStep>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        DescribedTest::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            .map(|t| t.steps)
    }
}

struct OneTest(Vec<TestStep>);

impl<'de> Deserialize<'de> for OneTest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EitherTest).map(OneTest)
    }
}

fn tests_either_way<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<TestStep>>, D::Error> {
    let tests = BTreeMap::<String, OneTest>::deserialize(d)?;
    Ok(tests.into_iter().map(|(name, t)| (name, t.0)).collect())
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionDef {
    /// A path relative to the catalog file (`file.yaml` or `file.yaml#/$defs/x`), or an
    /// inline schema. Or both of `writeSchema` and `readSchema` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// What documents written to the collection (ingested, captured, derived) must match;
    /// with `readSchema`, instead of `schema` (Flow's).
    #[serde(
        default,
        rename = "writeSchema",
        skip_serializing_if = "Option::is_none"
    )]
    pub write_schema: Option<Value>,
    /// What documents must match when read (by derivations, materializations and tests), whose
    /// `reduce` annotations combine them there; it may reference the write schema as
    /// `$ref: flow://write-schema`.
    #[serde(
        default,
        rename = "readSchema",
        skip_serializing_if = "Option::is_none"
    )]
    pub read_schema: Option<Value>,
    /// JSON pointers of the collection key.
    pub key: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive: Option<DeriveDef>,
    /// How the collection's journal is persisted to the fragment store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journals: Option<JournalsDef>,
    /// Named fields at document locations (Flow's `projections`), e.g.
    /// `{city: /address/city}`: materializations get them as columns.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub projections: BTreeMap<String, Projection>,
}

/// A projection: a JSON pointer, or `{location: POINTER}` as Flow also writes it, with
/// `partition: true` for a logical partition field (each of its values gets a journal of its
/// own, `{collection}/{field}={value}`; the location must be a required string, integer or
/// boolean).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Projection {
    Pointer(String),
    Location(ProjectionLocation),
}

/// `{location: POINTER, partition: BOOL}`; any other member is refused (a misspelled
/// `partition` would leave the collection unpartitioned, which it then could not change).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectionLocation {
    pub location: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partition: bool,
}

impl Projection {
    pub fn pointer(&self) -> &str {
        match self {
            Projection::Pointer(p) => p,
            Projection::Location(l) => &l.location,
        }
    }

    /// Whether it is a logical partition field.
    pub fn partition(&self) -> bool {
        matches!(self, Projection::Location(l) if l.partition)
    }
}

/// Which logical partitions of a collection a reader reads (Flow's partition selector): a
/// journal is read if, for every field of `include`, its value is one of those listed, and
/// for no field of `exclude` its value is one of those listed. Values are those of the
/// documents (`NYSE`, `3`, `true`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub include: BTreeMap<String, Vec<Value>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exclude: BTreeMap<String, Vec<Value>>,
}

/// `fields:` of a materialization binding: which fields become columns, beyond the default
/// (the key, every top-level property and every projection of the collection).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSelection {
    /// More fields: projection names, or JSON pointers (`/address/city`, a field named
    /// `address_city`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Fields left out, by name (not the key's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// `journals:` of a collection, named as in Flow.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalsDef {
    #[serde(default)]
    pub fragments: FragmentsDef,
}

/// `journals.fragments:`; every field is optional (defaults in `fragment::Settings`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FragmentsDef {
    /// Target fragment size in MB (10^6 bytes of NDJSON before compression; fractions allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<f64>,
    /// Longest a document waits before its fragment is sealed, e.g. `30m` or `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_interval: Option<String>,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_codec: Option<crate::journal::fragment::Codec>,
    /// Fragments older than this are deleted from the store, e.g. `720h`; absent keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
}

impl FragmentsDef {
    /// The settings these fields give, or why they are invalid.
    pub fn settings(&self) -> Result<crate::journal::fragment::Settings, String> {
        let mut s = crate::journal::fragment::Settings::default();
        if let Some(mb) = self.length {
            if !(mb.is_finite() && mb > 0.0 && mb <= 16_384.0) {
                return Err(format!(
                    "journals.fragments.length: {mb} MB is not between 0 and 16384 MB"
                ));
            }
            s.length = ((mb * 1e6) as u64).max(1);
        }
        let duration = |field: &str, v: &str| {
            humantime::parse_duration(v)
                .map_err(|e| format!("journals.fragments.{field}: '{v}' is not a duration like 30s, 15m or 24h: {e}"))
                .and_then(|d| {
                    if d.is_zero() {
                        Err(format!("journals.fragments.{field}: must be longer than zero"))
                    } else {
                        Ok(d)
                    }
                })
        };
        if let Some(v) = &self.flush_interval {
            s.flush_interval = duration("flushInterval", v)?;
        }
        if let Some(c) = self.compression_codec {
            s.codec = c;
        }
        if let Some(v) = &self.retention {
            s.retention = Some(duration("retention", v)?);
        }
        Ok(s)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeriveDef {
    pub using: Using,
    pub transforms: Vec<TransformDef>,
    /// What a failing source document does to the task (default: `fail`).
    #[serde(default, rename = "onError", skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// Sandbox and batching limits of this task, over the host's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TaskLimits>,
}

/// The error policy of a task.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnError {
    pub policy: ErrorPolicy,
    /// For `deadLetter`: the collection that receives a record per failed document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
}

#[derive(
    Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ErrorPolicy {
    /// Stop the task and report the error (default).
    #[default]
    Fail,
    /// Skip the failing document: count it in the task status and log it.
    Skip,
    /// Append a record of the failing document, the error, the plugin version and the
    /// transform to a collection, and go on.
    DeadLetter,
}

/// Per-task overrides of `Limits` (the host's defaults apply where a field is absent).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_deadline_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_memory_bytes_max: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_output_docs_max: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_output_bytes_max: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_result_bytes_max: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_docs_max: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_docs_max: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_time_max_ms: Option<u64>,
    /// Shortest transaction that found documents, in ms (Flow's `minTxnDuration`): more is
    /// combined per transaction at the cost of latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_time_min_ms: Option<u64>,
    /// Shortest transaction of a materialization that caught up while its documents folded
    /// 2:1 or rewrote the rows of the transaction before, in ms (default 50; 0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_time_combining_ms: Option<u64>,
}

impl TaskLimits {
    /// `base` with these overrides applied.
    pub fn apply(&self, base: &crate::limits::Limits) -> crate::limits::Limits {
        let mut l = base.clone();
        if let Some(v) = self.call_deadline_ms {
            l.call_deadline_ms = v;
        }
        if let Some(v) = self.plugin_memory_bytes_max {
            l.plugin_memory_bytes_max = v;
        }
        if let Some(v) = self.call_output_docs_max {
            l.call_output_docs_max = v;
        }
        if let Some(v) = self.call_output_bytes_max {
            l.call_output_bytes_max = v;
        }
        if let Some(v) = self.host_result_bytes_max {
            l.host_result_bytes_max = v;
        }
        if let Some(v) = self.call_docs_max {
            l.call_docs_max = v;
        }
        if let Some(v) = self.txn_docs_max {
            l.txn_docs_max = v;
        }
        if let Some(v) = self.txn_time_max_ms {
            l.txn_time_max_ms = v;
        }
        if let Some(v) = self.txn_time_min_ms {
            l.txn_time_min_ms = v;
        }
        if let Some(v) = self.txn_time_combining_ms {
            l.txn_time_combining_ms = v;
        }
        l
    }
}

/// How a task's plugin is supplied.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Using {
    pub wasm: WasmEndpoint,
}

/// A Wasm component: a module file next to the catalog, or a deployed plugin by name.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WasmEndpoint {
    /// A component file, relative to the catalog file. Publishing deploys it as a plugin named
    /// after the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// A plugin deployed with `flow plugin deploy`, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Passed to the plugin's `open`. For connectors, `path` names the SQLite database the
    /// host grants as the `sql` capability (relative to the catalog file).
    #[serde(default = "empty_object")]
    pub config: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformDef {
    pub name: String,
    pub source: SourceRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle: Option<Shuffle>,
    /// Process a document only once it is this much older than its publish time, e.g.
    /// `2h` or `30s` (Flow's `readDelay`).
    #[serde(default, rename = "readDelay", skip_serializing_if = "Option::is_none")]
    pub read_delay: Option<String>,
}

/// A source collection: `acme/orders` or `{ name: acme/orders }`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum SourceRef {
    Name(String),
    Object(SourceObject),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceObject {
    pub name: String,
    /// Which of its logical partitions are read (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<PartitionSelector>,
}

impl SourceRef {
    pub fn name(&self) -> &str {
        match self {
            SourceRef::Name(n) => n,
            SourceRef::Object(o) => &o.name,
        }
    }

    /// Its partition selector, if it has one.
    pub fn partitions(&self) -> Option<&PartitionSelector> {
        match self {
            SourceRef::Name(_) => None,
            SourceRef::Object(o) => o.partitions.as_ref(),
        }
    }
}

/// Its collection's name.
impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<&str> for SourceRef {
    fn from(name: &str) -> Self {
        SourceRef::Name(name.to_string())
    }
}

/// How a transform's source documents are shuffled: `{key: [POINTER, ...]}` (per-key order
/// and state), or `any` (Flow's: no per-key order needed; the derivation keeps one state
/// for the whole transform, under the key `[]`).
#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Shuffle {
    Key(ShuffleKey),
    /// `any`.
    Any(String),
}

/// By shape (a word or a map), so a bad `{key: ...}` is reported as itself, where it is, not
/// as "matches no variant".
impl<'de> Deserialize<'de> for Shuffle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ByShape;
        impl<'de> serde::de::Visitor<'de> for ByShape {
            type Value = Shuffle;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a shuffle: `any`, or {key: [/pointer, ...]}")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Shuffle, E> {
                Ok(Shuffle::Any(v.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Shuffle, A::Error> {
                ShuffleKey::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Shuffle::Key)
            }
        }
        d.deserialize_any(ByShape)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShuffleKey {
    pub key: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub wasm: WasmEndpoint,
    /// The host-owned destination granted to the plugin as `sql`, by connector name
    /// (`sqlite`, `postgres`, `mysql`). Without it, a `path` in `wasm.config` names a SQLite
    /// database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// Outgoing HTTP granted to the plugin as `http`: the hosts it may reach. Without it,
    /// every request is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpEndpoint>,
}

/// The `http` capability of a connector task.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpEndpoint {
    /// The hosts requests may go to: `api.example.com` (any port), `api.example.com:8443`
    /// (that port only), or `*.example.com` (its subdomains). A request to any other host,
    /// or a redirect to one, is refused and logged in the plugin's log.
    pub allow: Vec<String>,
    /// Headers the host adds to every request (replacing the plugin's of the same name),
    /// each a secret: `{env: NAME}` or `{file: PATH}`, e.g. `Authorization: {env: API_AUTH}`
    /// (the variable holding `Bearer ...`). The plugin never sees them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaterializationDef {
    pub endpoint: Endpoint,
    pub bindings: Vec<MaterializationBinding>,
    /// Sandbox and batching limits of this task, over the host's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TaskLimits>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MaterializationBinding {
    pub source: SourceRef,
    #[serde(default = "empty_object")]
    pub resource: Value,
    /// Store combined deltas instead of reduced rows.
    #[serde(default)]
    pub delta_updates: bool,
    /// Which fields become columns (default: the key, every top-level property, every
    /// projection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<FieldSelection>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureDef {
    pub endpoint: Endpoint,
    pub bindings: Vec<CaptureBinding>,
    /// How long an idle capture waits at most between polls, e.g. `30s` or `5m` (Flow's
    /// `interval`). After a poll that found the source idle the task waits 10 ms, doubling
    /// while the source stays idle, up to this. Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// What a captured document that its target collection refuses (not JSON, not valid for
    /// its schema, too large, a key that cannot be told apart) does (default: `fail`, the
    /// poll commits nothing). `skip` drops it, counted and logged; `deadLetter` appends a
    /// record of it to `collection`; either way the rest of the poll and its checkpoint
    /// commit. A poll that fails as a whole (the plugin's error, its checkpoint, its caps, a
    /// document naming no binding) fails the task under every policy.
    #[serde(default, rename = "onError", skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// Sandbox and batching limits of this task, over the host's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TaskLimits>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureBinding {
    /// The collection its documents are appended to.
    pub target: String,
    /// Which part of the source, as the connector defines it (a table, a URL): passed to
    /// its `open`.
    #[serde(default = "empty_object")]
    pub resource: Value,
}

/// One step of a test. Written `- ingest: {...}` (one transaction), `- verify: {...}`,
/// `- capture: {...}` or `- materialize: {...}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(try_from = "StepRepr", into = "StepRepr")]
pub enum TestStep {
    Ingest(TestDocs),
    Verify(TestDocs),
    Capture(TestCapture),
    Materialize(TestMaterialize),
}

#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct StepRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ingest: Option<TestDocs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify: Option<TestDocs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capture: Option<TestCapture>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    materialize: Option<TestMaterialize>,
}

impl TryFrom<StepRepr> for TestStep {
    type Error = String;
    fn try_from(r: StepRepr) -> Result<Self, String> {
        match (r.ingest, r.verify, r.capture, r.materialize) {
            (Some(d), None, None, None) => Ok(TestStep::Ingest(d)),
            (None, Some(d), None, None) => Ok(TestStep::Verify(d)),
            (None, None, Some(c), None) => Ok(TestStep::Capture(c)),
            (None, None, None, Some(m)) => Ok(TestStep::Materialize(m)),
            _ => Err(
                "a test step has exactly one of `ingest`, `verify`, `capture` or `materialize`"
                    .to_string(),
            ),
        }
    }
}

impl From<TestStep> for StepRepr {
    fn from(s: TestStep) -> Self {
        let mut r = StepRepr {
            ingest: None,
            verify: None,
            capture: None,
            materialize: None,
        };
        match s {
            TestStep::Ingest(d) => r.ingest = Some(d),
            TestStep::Verify(d) => r.verify = Some(d),
            TestStep::Capture(c) => r.capture = Some(c),
            TestStep::Materialize(m) => r.materialize = Some(m),
        }
        r
    }
}

/// `- capture: {...}`: run a capture of the catalog from where the test's earlier capture
/// steps left it until a poll finds its source idle, committing each poll as the task does.
/// Its plugin's HTTP requests are answered by `responses`, never by the network (a request
/// still has to pass the capture's `endpoint.http.allow`); a request none answers fails the
/// step, naming it. Only captures without a database source (`endpoint.connector`) can run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCapture {
    /// What the step is for: named when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The capture to run.
    pub name: String,
    /// What its plugin's HTTP requests get, by method and URL.
    #[serde(default)]
    pub responses: Vec<TestResponse>,
}

/// `- materialize: {...}`: run a materialization of the catalog until it has caught up with
/// its sources, into a SQLite database of the test's own (in place of its endpoint's: the
/// same file for every step of one test, so a later step sees what earlier ones wrote and
/// resumes from their checkpoint), then compare the rows of `table` (or of `query`) with
/// `rows`: same count, and each expected row (an object of columns) a subset of the actual
/// one at the same position. Only materializations into SQLite can run: a test reaches no
/// database server.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestMaterialize {
    /// What the step is for: named when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The materialization to run.
    pub name: String,
    /// A table whose rows are compared, ordered by their columns' values (column by column,
    /// in the table's order: the tables the SDKs make start with the key's columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// A query whose rows are compared in the order it returns them (instead of `table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The rows expected, each an object of column names and values.
    #[serde(default)]
    pub rows: Vec<serde_json::Map<String, Value>>,
}

/// One canned HTTP response of a `capture` test step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestResponse {
    /// The URL it answers, query included, as the plugin requests it.
    pub url: String,
    /// The method it answers; default `GET`.
    #[serde(default = "get_method")]
    pub method: String,
    /// Default 200.
    #[serde(default = "ok_status")]
    pub status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The body: a string as it is (NDJSON, text), anything else as its JSON (and then
    /// `content-type: application/json` unless `headers` says otherwise). Default empty.
    #[serde(default = "empty_string")]
    pub body: Value,
}

fn get_method() -> String {
    "GET".into()
}

fn ok_status() -> u16 {
    200
}

fn empty_string() -> Value {
    Value::String(String::new())
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestDocs {
    /// What the step is for: named when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The collection: a name, or for `verify`, `{name, partitions}` to verify only the
    /// documents of some of its logical partitions.
    pub collection: SourceRef,
    pub documents: Vec<Value>,
}
