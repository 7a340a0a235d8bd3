//! Checks against what `scripts/device/gpu-check.sh` recorded on a real H200 machine
//! (`tests/fixtures/device-run/`, 2026-12-04): the library must reproduce, from the
//! recorded inputs, what it computed there.

use agora_gpu::container::parse_ldconfig;
use agora_gpu::detect::compare_detections;
use agora_gpu::smi::{merge_xml, parse_smi_header, parse_smi_xml};
use agora_gpu::{
    ContainerGpu, Detection, DetectionSource, HostGpuFiles, TflopsReport, container_devices, offers,
};
use serde_json::Value;

fn report() -> Value {
    serde_json::from_str(include_str!("fixtures/device-run/gpu_report.json")).unwrap()
}

fn detection(key: &str) -> Detection {
    serde_json::from_value(report()[key].clone()).unwrap()
}

#[test]
fn nvml_and_nvidia_smi_agreed_on_the_h200() {
    let nvml = detection("nvml");
    let smi = detection("nvidia_smi");
    assert_eq!(nvml.source, DetectionSource::Nvml);
    assert_eq!(smi.source, DetectionSource::NvidiaSmi);
    assert_eq!(compare_detections(&nvml, &smi), Vec::<String>::new());
    let gpu = &nvml.gpus[0];
    assert_eq!(gpu.class_model, "NVIDIA-H200");
    assert_eq!(gpu.memory_bytes, 143_771 << 20);
    assert_eq!(gpu.compute_capability.as_deref(), Some("9.0"));
    assert_eq!(nvml.cuda_version.as_deref(), Some("13.0"));
}

#[test]
fn the_recorded_xml_and_banner_match_nvml() {
    let nvml = detection("nvml");
    let xml = parse_smi_xml(include_str!("fixtures/device-run/nvidia-smi-q.xml"));
    let mut gpus = nvml.gpus.clone();
    for gpu in &mut gpus {
        gpu.minor_number = None;
    }
    merge_xml(&mut gpus, &xml);
    assert_eq!(gpus, nvml.gpus);
    let banner = parse_smi_header(include_str!("fixtures/device-run/nvidia-smi.txt"));
    assert_eq!(
        banner,
        (nvml.driver_version.clone(), nvml.cuda_version.clone())
    );
}

#[test]
fn container_exposure_is_reproduced_from_the_recorded_host() {
    let report = report();
    let host: HostGpuFiles = serde_json::from_value(report["host_files"].clone()).unwrap();
    let expected: ContainerGpu = serde_json::from_value(report["container_gpu0"].clone()).unwrap();
    let gpus = detection("detection").gpus;
    assert_eq!(container_devices(&gpus[..1], &host), expected);
    assert!(expected.missing.is_empty());
    let ldconfig = parse_ldconfig(include_str!("fixtures/device-run/ldconfig-p.txt"));
    for (soname, _) in agora_gpu::container::DRIVER_LIBRARIES {
        assert!(
            ldconfig.contains_key(*soname),
            "{soname} not in the recorded ldconfig"
        );
    }
}

#[test]
fn the_benchmark_ran_within_budget_and_fills_the_offer() {
    let tflops: TflopsReport = serde_json::from_value(report()["tflops"]["ok"].clone()).unwrap();
    assert_eq!(tflops.matrix_n, 8192);
    assert!(tflops.elapsed.as_secs_f64() < 10.0);
    // H200 SXM: 67 TFLOPS FP32 and 989 TFLOPS dense FP16 peak.
    assert!(
        (20.0..70.0).contains(&tflops.fp32_tflops),
        "{}",
        tflops.fp32_tflops
    );
    let fp16 = tflops.fp16_tflops.unwrap();
    assert!((200.0..1000.0).contains(&fp16), "{fp16}");
    let mut offer = offers(&detection("detection")).remove(0);
    offer.fp32_tflops = Some(tflops.fp32_tflops);
    offer.fp16_tflops = tflops.fp16_tflops;
    assert_eq!(
        (offer.class_model.as_str(), offer.count),
        ("NVIDIA-H200", 1)
    );
}
