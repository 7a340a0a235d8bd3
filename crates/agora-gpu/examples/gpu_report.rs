//! Prints one JSON object describing this machine's GPUs, for checking `agora-gpu` on a
//! real GPU host (`scripts/device/gpu-check.sh` runs it there):
//! NVML and `nvidia-smi` detections side by side with their differences, the offers an
//! ask would carry, a sample placement, the container exposure of GPU 0 with the host's
//! real device numbers, CDI availability and the TFLOPS benchmark.
//!
//! `AGORA_GPU_BENCH_BUDGET_MS` sets the benchmark's budget (default 4000 ms).

use std::collections::BTreeSet;
use std::time::Duration;

use agora_gpu::detect::{compare_detections, detect_nvidia_smi};
use agora_gpu::{
    GpuDemand, HostGpuFiles, cdi_available, container_devices, detect, measure_tflops, offers,
    place,
};
use serde_json::{Value, json};

fn main() {
    let nvml = agora_gpu::nvml::detect_nvml();
    let smi = detect_nvidia_smi();
    let differences = match &nvml {
        Ok(nvml) => json!(compare_detections(nvml, &smi)),
        Err(_) => Value::Null,
    };
    let detection = detect();
    let demand = GpuDemand {
        model: detection.gpus.first().map(|g| g.class_model.clone()),
        count: 1,
        min_memory_bytes: 80 << 30,
    };
    let placement = place(&detection.gpus, &BTreeSet::new(), &demand);
    let host = HostGpuFiles::probe();
    let gpu0: Vec<_> = detection.gpus.iter().take(1).cloned().collect();
    let report = json!({
        "nvml": nvml.as_ref().map_or_else(|e| json!({ "error": e }), |d| json!(d)),
        "nvidia_smi": smi,
        "nvml_vs_nvidia_smi_differences": differences,
        "detection": detection,
        "offers": offers(&detection),
        "placement": { "demand": demand, "result": result_json(placement) },
        "container_gpu0": container_devices(&gpu0, &host),
        "host_files": host,
        "cdi": cdi_available(),
        "tflops": tflops(detection.gpus.is_empty()),
    });
    match serde_json::to_string_pretty(&report) {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("cannot print the report: {e}");
            std::process::exit(1);
        }
    }
}

fn result_json<T: serde::Serialize, E: std::fmt::Display + serde::Serialize>(
    result: Result<T, E>,
) -> Value {
    match result {
        Ok(value) => json!({ "ok": value }),
        Err(e) => json!({ "refused": e, "message": e.to_string() }),
    }
}

fn tflops(no_gpus: bool) -> Value {
    let budget_ms = std::env::var("AGORA_GPU_BENCH_BUDGET_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    if no_gpus {
        eprintln!("no GPUs detected; trying the benchmark anyway to show its error");
    }
    match measure_tflops(0, Duration::from_millis(budget_ms)) {
        Ok(report) => json!({
            "ok": report,
            "elapsed_s": report.elapsed.as_secs_f64(),
            "budget_ms": budget_ms,
        }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}
