//! The self-metrics endpoint: Prometheus text format (version 0.0.4) on `GET /metrics`,
//! served on a loopback address (`metrics.listen`, off by default). docs/operations.md lists
//! the metrics.
use std::{fmt::Write as _, net::SocketAddr, sync::Arc, time::Duration};

use serde::Deserialize;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::{DECISION_LATENCY, Histogram, Stats};

/// `metrics:` in the configuration file.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `127.0.0.1:PORT` (or another loopback address) to serve `/metrics` on; unset: off.
    pub listen: Option<SocketAddr>,
}

/// The endpoint could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics.listen {0} is not a loopback address: the metrics endpoint is local only")]
    NotLoopback(SocketAddr),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Starts serving `stats` on `config.listen` (nothing when unset); returns the bound address.
/// Runs on the caller's tokio runtime.
pub async fn serve(config: &MetricsConfig, stats: Arc<Stats>) -> Result<Option<SocketAddr>, MetricsError> {
    let Some(addr) = config.listen else { return Ok(None) };
    if !addr.ip().is_loopback() {
        return Err(MetricsError::NotLoopback(addr));
    }
    let listener = TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| MetricsError::Bind { addr, source })?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    tokio::spawn(answer(conn, stats.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Metrics endpoint: accept failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tracing::info!(%bound, "Serving metrics on /metrics.");
    Ok(Some(bound))
}

/// Answers one HTTP/1.x request and closes the connection.
async fn answer(mut conn: TcpStream, stats: Arc<Stats>) {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, body) = match line.split(|&b| b == b' ').take(2).collect::<Vec<_>>()[..] {
        [b"GET", b"/metrics"] => ("200 OK", render(&stats)),
        _ => ("404 Not Found", "only GET /metrics is served\n".to_owned()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(reply.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// The metrics, in Prometheus text format.
pub fn render(stats: &Stats) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let label = |k: &str, v: &str| format!("{{{k}=\"{}\"}}", v.replace('\\', "\\\\").replace('"', "\\\""));
    metric(
        "mnsensor_uptime_seconds",
        "gauge",
        "Seconds since the sensor started.",
        &[(String::new(), stats.uptime().as_secs().to_string())],
    );
    let counts: Vec<(String, String)> =
        stats.counts().iter().map(|(name, n)| (label("event", name), n.to_string())).collect();
    metric(
        "mnsensor_records_total",
        "counter",
        "Records written, by event name (events/s: rate() of this counter).",
        &counts,
    );
    metric(
        "mnsensor_events_lost_total",
        "counter",
        "Kernel records lost because the ring buffer was full.",
        &[(String::new(), stats.lost().to_string())],
    );
    if let Some(bytes) = stats.ledger_bytes() {
        metric(
            "mnsensor_ledger_bytes",
            "gauge",
            "Bytes the ledger holds on disk.",
            &[(String::new(), bytes.to_string())],
        );
    }
    let lags = stats.output_lags();
    if !lags.is_empty() {
        let records: Vec<_> =
            lags.iter().map(|l| (label("output", &l.spec), l.records.to_string())).collect();
        let seconds: Vec<_> =
            lags.iter().map(|l| (label("output", &l.spec), l.seconds.to_string())).collect();
        metric(
            "mnsensor_output_lag_records",
            "gauge",
            "Records not yet accepted by the output's receiver.",
            &records,
        );
        metric(
            "mnsensor_output_lag_seconds",
            "gauge",
            "Age of the oldest record the output has not delivered.",
            &seconds,
        );
    }
    histogram(
        &mut out,
        "mnsensor_decision_latency_seconds",
        "Time processes waited for fanotify permission decisions (BPF LSM decisions are not in it).",
        &DECISION_LATENCY,
    );
    out
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let (counts, sum) = h.snapshot();
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, n) in Histogram::BOUNDS_US.iter().zip(&counts) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {n}", *bound as f64 / 1e6);
    }
    let total = counts.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}\n{name}_sum {sum}\n{name}_count {total}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let stats = Stats::default();
        stats.count("file.open");
        stats.set_lost(2);
        let text = render(&stats);
        assert!(text.contains("# TYPE mnsensor_records_total counter\n"), "{text}");
        assert!(text.contains("mnsensor_records_total{event=\"file.open\"} 1\n"), "{text}");
        assert!(text.contains("mnsensor_events_lost_total 2\n"), "{text}");
        assert!(!text.contains("ledger"), "unknown values are left out: {text}");
        let h = Histogram::new();
        h.observe(Duration::from_micros(70));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        histogram(&mut out, "x", "h", &h);
        assert!(out.contains("x_bucket{le=\"0.00005\"} 0\nx_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\nx_sum 1.00307\nx_count 3\n"), "{out}");
    }
}
