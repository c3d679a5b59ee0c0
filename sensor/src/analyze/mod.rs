//! Detectors that look at more than one event: they take their own small input types (fed
//! by the daemon, later by the pipeline's analyze stage) and return detections.
pub mod exfil;
