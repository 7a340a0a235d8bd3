//! Finding this machine's GPUs: NVML first, `nvidia-smi` second, and an empty answer with
//! a reason when neither works. Never an error: a provider without GPUs still offers CPUs.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::smi::{
    MINIMAL_QUERY_FIELDS, QUERY_FIELDS, merge_xml, parse_query_csv, parse_smi_header, parse_smi_xml,
};
use crate::types::{Detection, DetectionSource};

/// How long one `nvidia-smi` call may take: a wedged driver can make it hang.
pub const SMI_TIMEOUT: Duration = Duration::from_secs(15);

/// This machine's GPUs: through NVML when `libnvidia-ml.so.1` loads, else by running
/// `nvidia-smi`; when neither works the detection is empty and
/// [`why_none`](Detection::why_none) says why.
pub fn detect() -> Detection {
    match crate::nvml::detect_nvml() {
        Ok(detection) => detection,
        Err(nvml_error) => {
            let mut detection = detect_nvidia_smi();
            if let Some(why) = &detection.why_none {
                detection.why_none = Some(format!("{nvml_error}; {why}"));
            }
            detection.nvml_error = Some(nvml_error);
            detection
        }
    }
}

/// The GPUs as `nvidia-smi` reports them (the fallback of [`detect`]; also called on
/// its own to cross-check NVML).
pub fn detect_nvidia_smi() -> Detection {
    let query = match query_gpus() {
        Ok(query) => query,
        Err(why) => return Detection::none(why),
    };
    let mut gpus = query.gpus;
    let xml = run_smi(&["-q", "-x"]).map(|text| parse_smi_xml(&text));
    let (mut driver, mut cuda) = (query.driver_version, None);
    if let Ok(xml) = &xml {
        merge_xml(&mut gpus, xml);
        driver = driver.or(xml.driver_version.clone());
        cuda = xml.cuda_version.clone();
    }
    if cuda.is_none() {
        let banner = run_smi(&[]).map(|text| parse_smi_header(&text));
        if let Ok((banner_driver, banner_cuda)) = banner {
            driver = driver.or(banner_driver);
            cuda = banner_cuda;
        }
    }
    let why_none = gpus
        .is_empty()
        .then(|| "nvidia-smi found no GPUs".to_owned());
    Detection {
        gpus,
        driver_version: driver,
        cuda_version: cuda,
        source: DetectionSource::NvidiaSmi,
        why_none,
        nvml_error: None,
    }
}

/// Runs the CSV query with [`QUERY_FIELDS`], then with [`MINIMAL_QUERY_FIELDS`] for old
/// drivers that refuse a field.
fn query_gpus() -> Result<crate::smi::SmiQuery, String> {
    let mut last_error = String::new();
    for fields in [QUERY_FIELDS, MINIMAL_QUERY_FIELDS] {
        let query = format!("--query-gpu={}", fields.join(","));
        match run_smi(&[&query, "--format=csv,noheader,nounits"]) {
            Ok(text) => return parse_query_csv(fields, &text).map_err(|e| e.to_string()),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

fn run_smi(args: &[&str]) -> Result<String, String> {
    run_tool("nvidia-smi", args, SMI_TIMEOUT)
}

/// Runs `program` and returns its standard output, or a sentence saying what failed.
/// The child is killed after `timeout`.
pub fn run_tool(program: &str, args: &[&str], timeout: Duration) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("{program} not found on PATH; install the NVIDIA driver to offer GPUs")
            }
            _ => format!("cannot start {program}: {e}"),
        })?;
    // Read in threads so a chatty child cannot block on a full pipe while we wait.
    let stdout = read_in_thread(child.stdout.take());
    let stderr = read_in_thread(child.stderr.take());
    let status = wait_with_timeout(&mut child, timeout)
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    let out = stdout.join().unwrap_or_default();
    if status.success() {
        return Ok(out);
    }
    let err = stderr.join().unwrap_or_default();
    let detail = if err.trim().is_empty() { &out } else { &err };
    Err(format!(
        "{program} {} failed ({status}): {}",
        args.join(" "),
        detail.trim()
    ))
}

fn read_in_thread<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Result<std::process::ExitStatus, String> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "timed out after {timeout:?}; the driver may be wedged"
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Where two detections of the same machine disagree (e.g. NVML against `nvidia-smi`),
/// one sentence per difference; empty when they agree. Memory is compared in whole MiB,
/// the unit `nvidia-smi` reports.
pub fn compare_detections(a: &Detection, b: &Detection) -> Vec<String> {
    let mut differences = Vec::new();
    if a.gpus.len() != b.gpus.len() {
        differences.push(format!("{} GPUs against {}", a.gpus.len(), b.gpus.len()));
    }
    for (x, y) in a.gpus.iter().zip(&b.gpus) {
        let mut differ = |what: &str, l: String, r: String| {
            if l != r {
                differences.push(format!("GPU {} {what}: {l:?} against {r:?}", x.index));
            }
        };
        differ("index", x.index.to_string(), y.index.to_string());
        differ("uuid", x.uuid.clone(), y.uuid.clone());
        differ("model", x.model.clone(), y.model.clone());
        differ(
            "memory MiB",
            (x.memory_bytes >> 20).to_string(),
            (y.memory_bytes >> 20).to_string(),
        );
        differ(
            "PCI bus id",
            x.pci_bus_id.to_ascii_lowercase(),
            y.pci_bus_id.to_ascii_lowercase(),
        );
        differ(
            "compute capability",
            format!("{:?}", x.compute_capability),
            format!("{:?}", y.compute_capability),
        );
        differ(
            "minor number",
            format!("{:?}", x.minor_number),
            format!("{:?}", y.minor_number),
        );
        differ(
            "MIG mode",
            format!("{:?}", x.mig_mode),
            format!("{:?}", y.mig_mode),
        );
    }
    for (what, l, r) in [
        ("driver", &a.driver_version, &b.driver_version),
        ("CUDA", &a.cuda_version, &b.cuda_version),
    ] {
        if l != r {
            differences.push(format!("{what} version {l:?} against {r:?}"));
        }
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smi::{merge_xml, parse_smi_xml};
    use crate::types::MigMode;

    fn recorded_h200() -> Detection {
        let fields = [
            "index",
            "uuid",
            "name",
            "memory.total",
            "memory.used",
            "driver_version",
            "pci.bus_id",
            "compute_cap",
            "power.draw",
            "power.limit",
            "clocks.max.sm",
        ];
        let csv = include_str!("../tests/fixtures/h200-query.csv");
        let xml = parse_smi_xml(include_str!("../tests/fixtures/h200-nvidia-smi-q.xml"));
        let mut gpus = parse_query_csv(&fields, csv).unwrap().gpus;
        merge_xml(&mut gpus, &xml);
        Detection {
            gpus,
            driver_version: xml.driver_version,
            cuda_version: xml.cuda_version,
            source: DetectionSource::NvidiaSmi,
            why_none: None,
            nvml_error: None,
        }
    }

    #[test]
    fn identical_detections_agree_and_differences_are_named() {
        let smi = recorded_h200();
        assert_eq!(smi.gpus[0].minor_number, Some(0));
        let mut nvml = smi.clone();
        nvml.source = DetectionSource::Nvml;
        // NVML reports bytes; the same MiB count agrees.
        nvml.gpus[0].memory_bytes += 1000;
        assert!(compare_detections(&nvml, &smi).is_empty());
        nvml.gpus[0].mig_mode = MigMode::Enabled;
        nvml.cuda_version = Some("12.8".into());
        let differences = compare_detections(&nvml, &smi);
        assert_eq!(differences.len(), 2, "{differences:?}");
        assert!(differences[0].contains("MIG mode"));
        nvml.gpus.clear();
        assert!(compare_detections(&nvml, &smi)[0].contains("0 GPUs against 1"));
    }

    #[test]
    fn detection_never_fails_and_explains_an_empty_answer() {
        let detection = detect();
        if detection.gpus.is_empty() {
            let why = detection
                .why_none
                .as_deref()
                .expect("an empty detection says why");
            assert!(!why.is_empty());
        }
        if detection.source == DetectionSource::None {
            assert!(detection.nvml_error.is_some(), "{detection:?}");
        }
    }

    #[test]
    fn a_missing_tool_is_a_sentence_not_a_panic() {
        let err = run_tool("agora-no-such-tool", &[], SMI_TIMEOUT).unwrap_err();
        assert!(err.contains("not found on PATH"), "{err}");
    }

    #[test]
    fn a_failing_tool_reports_its_stderr() {
        let err = run_tool("sh", &["-c", "echo broken >&2; exit 3"], SMI_TIMEOUT).unwrap_err();
        assert!(err.contains("broken"), "{err}");
        let out = run_tool("sh", &["-c", "echo fine"], SMI_TIMEOUT).unwrap();
        assert_eq!(out.trim(), "fine");
    }

    #[test]
    fn a_hanging_tool_is_killed() {
        let err = run_tool("sleep", &["5"], Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }
}
