//! OTLP logs exporter: each sealed record becomes one OpenTelemetry LogRecord (mapping in
//! docs/siem.md), and each batch one `ExportLogsServiceRequest`, sent over gRPC or
//! HTTP/protobuf, plain or TLS. The reply decides the batch: accepted, retry later, or never.
//!
//! Settings come from the output spec, then the `otlp:` configuration section, then the
//! standard `OTEL_EXPORTER_OTLP_LOGS_*` and `OTEL_EXPORTER_OTLP_*` variables, then the
//! OpenTelemetry defaults.
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Uri, header};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::{
    collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
        logs_service_client::LogsServiceClient,
    },
    common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as Any,
    },
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use tonic::transport::{Channel, Endpoint};

use super::{
    ExportError, Exporter, Sealed,
    net::{Connector, Runtime, chain},
    severity::Level,
    tls::{TlsError, TlsFiles},
};
use crate::event::{attr, sensor::SCHEMA_VERSION};

/// The instrumentation scope's name; its version is the schema version.
pub const SCOPE_NAME: &str = "mnsensor";
/// Most records in one request: the driver's batches can be larger than receivers accept
/// (4 MiB is the usual gRPC limit).
const MAX_RECORDS_PER_REQUEST: usize = 512;
/// Request timeout when none is configured (the OpenTelemetry default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `otlp:` in the configuration file. Every key is optional; unset keys fall back to the
/// `OTEL_EXPORTER_OTLP_*` variables, then to the OpenTelemetry defaults.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Receiver URL for `--output otlp`: `http://HOST:4317` (gRPC) or
    /// `https://HOST:4318/v1/logs` (HTTP; `/v1/logs` is added to an empty path).
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (the default).
    pub protocol: Option<Protocol>,
    /// Extra request headers (gRPC metadata), e.g. an authorization token.
    pub headers: BTreeMap<String, String>,
    /// Time allowed for one batch (connect, TLS, request, reply), in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Extra resource attributes (added to `OTEL_RESOURCE_ATTRIBUTES`; the sensor's own
    /// `service.*`, `host.*` and `os.*` attributes cannot be replaced).
    pub resource_attributes: BTreeMap<String, String>,
    /// Trust and client certificate for `https://` receivers.
    pub tls: TlsFiles,
}

/// OTLP transport.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
pub enum Protocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// An OTLP output that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("output {spec}: {message}")]
    Spec { spec: String, message: String },
    #[error("output {spec}: {source}")]
    Tls { spec: String, source: TlsError },
    #[error("output {spec}: cannot start the exporter's runtime: {source}")]
    Runtime { spec: String, source: std::io::Error },
}

/// Where and how to send, once every source of settings was consulted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub protocol: Protocol,
    /// `http://` or `https://` (TLS) URL; for HTTP with its path.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub tls: TlsFiles,
}

/// Resolves `spec` (`otlp`, `otlp+grpc://H:P`, `otlp+grpcs://H:P`, `otlp+http://H:P/PATH`,
/// `otlp+https://H:P/PATH`) with `config` and the environment `env`.
pub fn resolve(
    spec: &str,
    config: &OtlpConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Target, String> {
    let var = |name: &str| {
        env(&format!("OTEL_EXPORTER_OTLP_LOGS_{name}"))
            .or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{name}")))
            .filter(|v| !v.trim().is_empty())
    };
    let (protocol, url) = match spec.split_once("://") {
        Some(("otlp+grpc", rest)) => (Protocol::Grpc, format!("http://{rest}")),
        Some(("otlp+grpcs", rest)) => (Protocol::Grpc, format!("https://{rest}")),
        Some(("otlp+http", rest)) => (Protocol::HttpProtobuf, format!("http://{rest}")),
        Some(("otlp+https", rest)) => (Protocol::HttpProtobuf, format!("https://{rest}")),
        None if spec == "otlp" => {
            let protocol = match config.protocol {
                Some(p) => p,
                None => match var("PROTOCOL").as_deref().map(str::trim) {
                    None | Some("http/protobuf") => Protocol::HttpProtobuf,
                    Some("grpc") => Protocol::Grpc,
                    Some(other) => {
                        return Err(format!(
                            "OTLP protocol {other:?} is not supported: use grpc or http/protobuf"
                        ));
                    }
                },
            };
            let url = match (&config.endpoint, env("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")) {
                (Some(url), _) => url.clone(),
                (None, Some(url)) if !url.trim().is_empty() => url,
                _ => match (env("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.trim().is_empty()), protocol) {
                    // The generic endpoint is a base URL: the signal's path is appended.
                    (Some(base), Protocol::HttpProtobuf) => format!("{}/v1/logs", base.trim_end_matches('/')),
                    (Some(base), Protocol::Grpc) => base,
                    (None, Protocol::HttpProtobuf) => "http://localhost:4318/v1/logs".to_owned(),
                    (None, Protocol::Grpc) => "http://localhost:4317".to_owned(),
                },
            };
            (protocol, url.trim().to_owned())
        }
        _ => {
            return Err("expected `otlp`, `otlp+grpc://HOST:PORT`, `otlp+grpcs://HOST:PORT`, \
                 `otlp+http://HOST:PORT/v1/logs` or `otlp+https://HOST:PORT/v1/logs`"
                .to_owned());
        }
    };
    let uri: Uri = url.parse().map_err(|e| format!("invalid OTLP endpoint {url:?}: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!("invalid OTLP endpoint {url:?}: expected http://HOST:PORT or https://HOST:PORT"));
    }
    let url = match (protocol, uri.path()) {
        (Protocol::HttpProtobuf, "" | "/") => format!("{}/v1/logs", url.trim_end_matches('/')),
        _ => url,
    };
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    if let Some(list) = var("HEADERS") {
        headers.extend(parse_pairs(&list).map_err(|e| format!("OTEL_EXPORTER_OTLP_HEADERS: {e}"))?);
    }
    headers.extend(config.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())));
    let timeout = match (config.timeout_ms, var("TIMEOUT")) {
        (Some(ms), _) => Duration::from_millis(ms),
        (None, Some(ms)) => Duration::from_millis(
            ms.trim()
                .parse()
                .map_err(|_| format!("OTEL_EXPORTER_OTLP_TIMEOUT={ms:?} is not milliseconds"))?,
        ),
        (None, None) => DEFAULT_TIMEOUT,
    };
    let path = |name: &str| var(name).map(PathBuf::from);
    let tls = TlsFiles {
        ca_file: config.tls.ca_file.clone().or_else(|| path("CERTIFICATE")),
        client_cert: config.tls.client_cert.clone().or_else(|| path("CLIENT_CERTIFICATE")),
        client_key: config.tls.client_key.clone().or_else(|| path("CLIENT_KEY")),
    };
    Ok(Target { protocol, url, headers: headers.into_iter().collect(), timeout, tls })
}

/// `k=v,k2=v2` with percent-encoded values (the W3C baggage form of the OTel variables).
fn parse_pairs(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not key=value"))?;
            Ok((k.trim().to_ascii_lowercase(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The OTLP exporter of one output.
pub struct Otlp {
    spec: String,
    target: Target,
    uri: Uri,
    connector: Connector,
    resource: Resource,
    rt: Runtime,
    grpc: Option<LogsServiceClient<Channel>>,
}

impl Otlp {
    /// Sets up the output `spec` (nothing is sent yet; a receiver that is down is not an
    /// error here).
    pub fn open(spec: &str, config: &OtlpConfig) -> Result<Self, OtlpError> {
        let bad = |message: String| OtlpError::Spec { spec: spec.to_owned(), message };
        let target = resolve(spec, config, &|k| std::env::var(k).ok()).map_err(bad)?;
        let uri: Uri = target.url.parse().map_err(|e| bad(format!("{e}")))?;
        let tls = (uri.scheme_str() == Some("https"))
            .then(|| {
                let alpn: &[&[u8]] = match target.protocol {
                    Protocol::Grpc => &[b"h2"],
                    Protocol::HttpProtobuf => &[b"http/1.1"],
                };
                target.tls.client_config(alpn)
            })
            .transpose()
            .map_err(|source| OtlpError::Tls { spec: spec.to_owned(), source })?;
        let host = uri.host().unwrap_or("localhost");
        let port = uri.port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
        let connector = Connector::new(host, port, tls, target.timeout).map_err(|e| bad(e.to_string()))?;
        let rt = Runtime::new().map_err(|source| OtlpError::Runtime { spec: spec.to_owned(), source })?;
        let grpc = match target.protocol {
            Protocol::HttpProtobuf => None,
            Protocol::Grpc => {
                // TLS is done by our connector, so tonic sees a plain HTTP/2 stream.
                let endpoint = Endpoint::from_shared(format!("http://{host}:{port}"))
                    .map_err(|e| bad(e.to_string()))?
                    .timeout(target.timeout)
                    .user_agent(concat!("mnsensor/", env!("CARGO_PKG_VERSION")))
                    .map_err(|e| bad(e.to_string()))?;
                let c = connector.clone();
                let connect = tower::service_fn(move |_: Uri| {
                    let c = c.clone();
                    async move { c.connect().await.map(TokioIo::new) }
                });
                let _rt = rt.enter();
                Some(LogsServiceClient::new(endpoint.connect_with_connector_lazy(connect)))
            }
        };
        let mut extra = parse_pairs(&std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default())
            .map_err(|e| bad(format!("OTEL_RESOURCE_ATTRIBUTES: {e}")))?;
        extra.extend(config.resource_attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(Self { spec: spec.to_owned(), target, uri, connector, resource: resource(&extra), rt, grpc })
    }

    /// The request for `batch`.
    pub fn request(&self, batch: &[Sealed]) -> ExportLogsServiceRequest {
        let observed = crate::event::time::Clock::realtime_ns();
        request(self.resource.clone(), batch, u64::try_from(observed).unwrap_or(0))
    }

    /// Sends one request and reads the reply.
    fn send_request(&self, batch: &[Sealed]) -> Result<(), ExportError> {
        let req = self.request(batch);
        let reply = match self.grpc.clone() {
            Some(mut client) => {
                let target = self.target.clone();
                self.rt.block_on(async move {
                    tokio::time::timeout(target.timeout, Self::export_grpc(&mut client, req, &target))
                        .await
                        .unwrap_or_else(|_| Err(ExportError::Retryable(format!("{}: timed out", target.url))))
                })
            }
            None => {
                let body = req.encode_to_vec();
                self.rt.block_on(async {
                    tokio::time::timeout(self.target.timeout, self.post_http(body)).await.unwrap_or_else(
                        |_| Err(ExportError::Retryable(format!("{}: timed out", self.target.url))),
                    )
                })
            }
        }?;
        match reply.partial_success {
            Some(ExportLogsPartialSuccess { rejected_log_records, error_message })
                if rejected_log_records > 0 =>
            {
                Err(ExportError::Permanent(format!(
                    "{}: the receiver rejected {rejected_log_records} of {} records: {error_message}",
                    self.target.url,
                    batch.len()
                )))
            }
            _ => Ok(()),
        }
    }

    async fn post_http(&self, body: Vec<u8>) -> Result<ExportLogsServiceResponse, ExportError> {
        let retry = |what: &str, e: &(dyn std::error::Error + 'static)| {
            ExportError::Retryable(format!("{}: {what}: {}", self.target.url, chain(e)))
        };
        let io = self.connector.connect().await.map_err(|e| retry("connect", &e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| retry("HTTP", &e))?;
        let conn = tokio::spawn(conn);
        let mut req = Request::post(self.uri.clone())
            .header(header::HOST, self.uri.authority().map_or("", |a| a.as_str()))
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(header::USER_AGENT, concat!("mnsensor/", env!("CARGO_PKG_VERSION")));
        for (k, v) in &self.target.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ExportError::Permanent(format!("{}: invalid request: {e}", self.target.url)))?;
        let reply = sender.send_request(req).await.map_err(|e| retry("request", &e))?;
        let status = reply.status();
        let body = reply.into_body().collect().await.map_err(|e| retry("reply", &e))?.to_bytes();
        conn.abort();
        if status.is_success() {
            return ExportLogsServiceResponse::decode(body)
                .map_err(|e| ExportError::Retryable(format!("{}: undecodable reply: {e}", self.target.url)));
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let message = format!("{}: HTTP {status}: {}", self.target.url, text.trim());
        // Only a refusal of the content itself is final; a wrong path, token or overload
        // keeps the records waiting in the ledger.
        Err(match status.as_u16() {
            400 | 413 | 415 => ExportError::Permanent(message),
            _ => ExportError::Retryable(message),
        })
    }

    async fn export_grpc(
        client: &mut LogsServiceClient<Channel>,
        req: ExportLogsServiceRequest,
        target: &Target,
    ) -> Result<ExportLogsServiceResponse, ExportError> {
        let mut req = tonic::Request::new(req);
        for (k, v) in &target.headers {
            let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes());
            match (key, v.parse()) {
                (Ok(key), Ok(value)) => {
                    req.metadata_mut().insert(key, value);
                }
                _ => return Err(ExportError::Permanent(format!("{}: invalid header {k:?}", target.url))),
            }
        }
        match client.export(req).await {
            Ok(reply) => Ok(reply.into_inner()),
            Err(status) => {
                let message = format!("{}: {}", target.url, chain(&status));
                Err(match status.code() {
                    tonic::Code::InvalidArgument => ExportError::Permanent(message),
                    _ => ExportError::Retryable(message),
                })
            }
        }
    }
}

impl Exporter for Otlp {
    fn spec(&self) -> &str {
        &self.spec
    }

    /// Sends the batch in requests of at most [`MAX_RECORDS_PER_REQUEST`]. After a failure
    /// the driver sends the whole batch again, so the requests that had gone through arrive
    /// twice (with the same `mnsensor.seq`).
    fn send(&mut self, batch: &[Sealed]) -> Result<(), ExportError> {
        batch.chunks(MAX_RECORDS_PER_REQUEST).try_for_each(|chunk| self.send_request(chunk))
    }
}

/// The request for `batch`, under `resource`, observed at `observed_ns`.
pub fn request(resource: Resource, batch: &[Sealed], observed_ns: u64) -> ExportLogsServiceRequest {
    let scope = InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: SCHEMA_VERSION.to_owned(),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope),
                log_records: batch.iter().map(|r| log_record(r, observed_ns)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One record: `event.name` becomes EventName, `time` the timestamp, every other key an
/// attribute with its JSON type (integers as Int, arrays as arrays).
pub fn log_record(rec: &Sealed, observed_ns: u64) -> LogRecord {
    let time = u64::try_from(rec.time_ns).unwrap_or(0);
    let mut out =
        LogRecord { time_unix_nano: time, observed_time_unix_nano: observed_ns, ..Default::default() };
    let Ok(mut obj) = serde_json::from_slice::<Map<String, Value>>(&rec.line) else {
        // Never expected (the sensor wrote the line); kept, not dropped.
        out.body = Some(text(String::from_utf8_lossy(&rec.line).into_owned()));
        out.attributes.push(kv(attr::SEQ, Any::IntValue(rec.seq as i64)));
        return out;
    };
    let name = match obj.remove(attr::EVENT_NAME) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    obj.remove(attr::TIME);
    let level = Level::of(&name, obj.get(attr::DECISION).and_then(Value::as_str));
    (out.severity_number, out.severity_text) = (level.otlp().0, level.otlp().1.to_owned());
    out.event_name = name;
    out.attributes = obj.into_iter().filter_map(|(k, v)| Some(kv_owned(k, any(v)?))).collect();
    out
}

fn any(v: Value) -> Option<Any> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => Any::BoolValue(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Any::IntValue(i),
            // Above i64::MAX (never in practice): kept exact, as text.
            (None, Some(u)) => Any::StringValue(u.to_string()),
            _ => Any::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Any::StringValue(s),
        Value::Array(items) => Any::ArrayValue(ArrayValue {
            values: items.into_iter().filter_map(any).map(|v| AnyValue { value: Some(v) }).collect(),
        }),
        Value::Object(map) => Any::KvlistValue(KeyValueList {
            values: map.into_iter().filter_map(|(k, v)| Some(kv_owned(k, any(v)?))).collect(),
        }),
    })
}

fn text(s: String) -> AnyValue {
    AnyValue { value: Some(Any::StringValue(s)) }
}

fn kv(key: &str, value: Any) -> KeyValue {
    kv_owned(key.to_owned(), value)
}

fn kv_owned(key: String, value: Any) -> KeyValue {
    KeyValue { key, value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// The sensor's resource: `service.name` = mnsensor, `service.version`,
/// `service.instance.id` (a UUID derived from the machine id, stable across restarts),
/// `host.name`, `host.id` (/etc/machine-id), `os.type`, `os.version`, then `extra`.
pub fn resource(extra: &[(String, String)]) -> Resource {
    let machine_id =
        std::fs::read_to_string("/etc/machine-id").map(|s| s.trim().to_owned()).unwrap_or_default();
    let host = crate::seal::host_name();
    let mut attrs: Vec<(String, String)> = vec![
        ("service.name".into(), "mnsensor".into()),
        ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("service.instance.id".into(), instance_id(if machine_id.is_empty() { &host } else { &machine_id })),
        ("host.name".into(), host),
        ("os.type".into(), "linux".into()),
        (
            "os.version".into(),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        ),
    ];
    if !machine_id.is_empty() {
        attrs.push(("host.id".into(), machine_id));
    }
    for (k, v) in extra {
        if !attrs.iter().any(|(key, _)| key == k) {
            attrs.push((k.clone(), v.clone()));
        }
    }
    Resource {
        attributes: attrs.into_iter().map(|(k, v)| kv_owned(k, Any::StringValue(v))).collect(),
        ..Default::default()
    }
}

/// A version-8 UUID (RFC 9562) from SHA-256 of `seed`.
fn instance_id(seed: &str) -> String {
    use sha2::Digest as _;
    let mut b: [u8; 16] =
        sha2::Sha256::digest(format!("mnsensor:{seed}")).as_slice()[..16].try_into().unwrap_or([0; 16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn specs_and_environment_resolve_like_the_sdk() {
        let none = env(&[]);
        let c = OtlpConfig::default();
        let t = resolve("otlp+grpc://127.0.0.1:4317", &c, &none).unwrap();
        assert_eq!((t.protocol, t.url.as_str()), (Protocol::Grpc, "http://127.0.0.1:4317"));
        let t = resolve("otlp+https://h:4318", &c, &none).unwrap();
        assert_eq!((t.protocol, t.url.as_str()), (Protocol::HttpProtobuf, "https://h:4318/v1/logs"));
        let t = resolve("otlp", &c, &none).unwrap();
        assert_eq!(t.url, "http://localhost:4318/v1/logs");
        assert_eq!(t.timeout, DEFAULT_TIMEOUT);
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20abc,x-tenant=7"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
        ]);
        let t = resolve("otlp", &c, &e).unwrap();
        assert_eq!(t.url, "https://collector:4318/v1/logs");
        assert_eq!(
            t.headers,
            [("authorization".into(), "Bearer abc".into()), ("x-tenant".into(), "7".into())]
        );
        assert_eq!(t.timeout, Duration::from_millis(2500));
        assert_eq!(t.tls.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        let e =
            env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]);
        let t = resolve("otlp", &c, &e).unwrap();
        assert_eq!((t.protocol, t.url.as_str()), (Protocol::Grpc, "http://c:4317"));
        // The configuration file wins over the environment.
        let c = OtlpConfig { endpoint: Some("http://file:4318/x".into()), timeout_ms: Some(5), ..c };
        let t = resolve("otlp", &c, &e).unwrap();
        assert_eq!((t.url.as_str(), t.timeout), ("http://file:4318/x", Duration::from_millis(5)));
        assert!(
            resolve("otlp", &OtlpConfig::default(), &env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]))
                .is_err()
        );
        assert!(resolve("otlp+ftp://x", &OtlpConfig::default(), &none).is_err());
    }

    #[test]
    fn records_map_to_typed_log_records() {
        let line = br#"{"event.name":"policy.decision","time":"2026-11-22T05:36:31.5Z","mnsensor.seq":42,"host.name":"fs1","process.pid":7,"mnsensor.decision":"deny","mnsensor.file.created":true,"mnsensor.policy.operations":["read","write"]}"#;
        let rec = Sealed { seq: 42, time_ns: 1_795_325_791_500_000_000, line: line.to_vec() };
        let lr = log_record(&rec, 99);
        assert_eq!(lr.event_name, "policy.decision");
        assert_eq!((lr.time_unix_nano, lr.observed_time_unix_nano), (1_795_325_791_500_000_000, 99));
        assert_eq!((lr.severity_number, lr.severity_text.as_str()), (13, "WARN"));
        let get = |k: &str| lr.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone()?.value);
        assert_eq!(get("mnsensor.seq"), Some(Any::IntValue(42)));
        assert_eq!(get("process.pid"), Some(Any::IntValue(7)));
        assert_eq!(get("mnsensor.file.created"), Some(Any::BoolValue(true)));
        assert!(matches!(get("mnsensor.policy.operations"), Some(Any::ArrayValue(a)) if a.values.len() == 2));
        assert_eq!(get("event.name"), None);
        assert_eq!(get("time"), None);
        assert_eq!(lr.attributes.len(), 6);
        let id = instance_id("abc");
        assert_eq!((id.len(), &id[14..15]), (36, "8"));
        assert_eq!(id, instance_id("abc"));
    }
}
