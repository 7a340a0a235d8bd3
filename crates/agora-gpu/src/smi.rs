//! Pure parsers for `nvidia-smi` output, the fallback when NVML cannot be loaded.
//!
//! Three outputs are read, all tested on text recorded from a real H200
//! (`tests/fixtures/h200-*`):
//! - `nvidia-smi --query-gpu=FIELDS --format=csv,noheader,nounits` ([`parse_query_csv`]):
//!   the GPU list. Columns are looked up by field name, so any field order works.
//! - `nvidia-smi -q -x` ([`parse_smi_xml`]): driver and CUDA versions, minor numbers
//!   (`/dev/nvidiaN`) and MIG state, which the CSV query cannot all give on every driver.
//! - plain `nvidia-smi` ([`parse_smi_header`]): the banner's driver and CUDA versions,
//!   used when the XML is unavailable.

use crate::types::{GpuInfo, MigMode, class_model};

/// The fields [`crate::detect()`] asks `nvidia-smi --query-gpu` for, in this order.
pub const QUERY_FIELDS: &[&str] = &[
    "index",
    "uuid",
    "name",
    "memory.total",
    "pci.bus_id",
    "compute_cap",
    "driver_version",
    "mig.mode.current",
];

/// The fields every driver since R470 knows, asked for when [`QUERY_FIELDS`] is refused.
pub const MINIMAL_QUERY_FIELDS: &[&str] = &[
    "index",
    "uuid",
    "name",
    "memory.total",
    "pci.bus_id",
    "driver_version",
];

/// Why `nvidia-smi` output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmiParseError {
    /// The field list lacks a field the parser needs.
    #[error("the nvidia-smi query must include the field {0:?}")]
    MissingField(&'static str),
    /// A CSV line has the wrong number of columns or an unreadable value.
    #[error(
        "nvidia-smi line {line} ({text:?}) is unreadable: {detail}; check that the driver works (run nvidia-smi by hand)"
    )]
    Line {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
        /// What was wrong.
        detail: String,
    },
}

/// What the CSV query gives: the GPUs and the driver version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmiQuery {
    /// The GPUs, in the order printed.
    pub gpus: Vec<GpuInfo>,
    /// The driver version, when the `driver_version` field was asked for.
    pub driver_version: Option<String>,
}

/// Parses `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits` output.
///
/// `fields` is the comma-separated list that was asked for, as a slice. `index`, `uuid`,
/// `name` and `memory.total` (MiB) are required; `pci.bus_id`, `compute_cap`,
/// `driver_version`, `mig.mode.current` are used when present. `[N/A]` values count as
/// absent. Output saying no devices were found gives an empty list.
pub fn parse_query_csv(fields: &[&str], text: &str) -> Result<SmiQuery, SmiParseError> {
    let columns = Columns::new(fields)?;
    let mut query = SmiQuery {
        gpus: Vec::new(),
        driver_version: None,
    };
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || is_no_devices(line) {
            continue;
        }
        let (gpu, driver) = parse_row(&columns, line).map_err(|detail| SmiParseError::Line {
            line: number + 1,
            text: line.to_owned(),
            detail,
        })?;
        query.driver_version = query.driver_version.or(driver);
        query.gpus.push(gpu);
    }
    Ok(query)
}

fn is_no_devices(line: &str) -> bool {
    line.to_ascii_lowercase().contains("no devices were found")
}

/// Column positions of the fields a row is read from.
struct Columns {
    count: usize,
    index: usize,
    uuid: usize,
    name: usize,
    memory: usize,
    pci: Option<usize>,
    compute_cap: Option<usize>,
    driver: Option<usize>,
    mig: Option<usize>,
}

impl Columns {
    fn new(fields: &[&str]) -> Result<Columns, SmiParseError> {
        let find = |name: &str| fields.iter().position(|f| f.trim() == name);
        let need = |name: &'static str| find(name).ok_or(SmiParseError::MissingField(name));
        Ok(Columns {
            count: fields.len(),
            index: need("index")?,
            uuid: need("uuid")?,
            name: need("name")?,
            memory: need("memory.total")?,
            pci: find("pci.bus_id"),
            compute_cap: find("compute_cap"),
            driver: find("driver_version"),
            mig: find("mig.mode.current"),
        })
    }
}

fn parse_row(columns: &Columns, line: &str) -> Result<(GpuInfo, Option<String>), String> {
    let values: Vec<&str> = line.split(',').map(str::trim).collect();
    if values.len() != columns.count {
        return Err(format!(
            "{} columns, expected {}",
            values.len(),
            columns.count
        ));
    }
    let optional = |column: Option<usize>| column.and_then(|i| present(values[i]));
    let index: u32 = values[columns.index]
        .parse()
        .map_err(|_| format!("index {:?} is not a number", values[columns.index]))?;
    let model = present(values[columns.name]).ok_or("the name is empty")?;
    let uuid = present(values[columns.uuid]).ok_or("the uuid is empty")?;
    let memory_bytes = parse_mib(values[columns.memory])?;
    let gpu = GpuInfo {
        index,
        uuid,
        class_model: class_model(&model),
        model,
        memory_bytes,
        pci_bus_id: optional(columns.pci).unwrap_or_default(),
        compute_capability: optional(columns.compute_cap),
        minor_number: None,
        mig_mode: optional(columns.mig)
            .map(|m| MigMode::from_smi(&m))
            .unwrap_or(MigMode::NotSupported),
    };
    Ok((gpu, optional(columns.driver)))
}

/// A value, or `None` for empty and `[N/A]`-style placeholders.
fn present(value: &str) -> Option<String> {
    let value = value.trim();
    let placeholder = value.is_empty()
        || value.starts_with('[')
        || value.eq_ignore_ascii_case("n/a")
        || value.eq_ignore_ascii_case("not supported");
    (!placeholder).then(|| value.to_owned())
}

/// `143771` or `143771 MiB` → bytes.
fn parse_mib(value: &str) -> Result<u64, String> {
    let number = value.trim().trim_end_matches("MiB").trim();
    let mib: u64 = number
        .parse()
        .map_err(|_| format!("memory {value:?} is not a number of MiB"))?;
    if mib == 0 {
        return Err("memory is 0 MiB".into());
    }
    mib.checked_mul(1 << 20)
        .ok_or_else(|| format!("memory {value:?} overflows"))
}

/// One `<gpu>` element of `nvidia-smi -q -x`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlGpu {
    /// `<uuid>`.
    pub uuid: Option<String>,
    /// The `id` attribute (PCI bus id).
    pub pci_bus_id: Option<String>,
    /// `<product_name>`.
    pub product_name: Option<String>,
    /// `<minor_number>`.
    pub minor_number: Option<u32>,
    /// `<mig_mode><current_mig>`.
    pub mig_mode: MigMode,
}

/// What `nvidia-smi -q -x` gives beyond the CSV query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmiXml {
    /// `<driver_version>`.
    pub driver_version: Option<String>,
    /// `<cuda_version>`.
    pub cuda_version: Option<String>,
    /// The `<gpu>` elements in document order.
    pub gpus: Vec<XmlGpu>,
}

/// Reads the few elements Agora needs from `nvidia-smi -q -x`. The format is NVIDIA's
/// fixed, flat XML, so plain tag search suffices; unknown or missing elements are absent
/// values, never errors.
pub fn parse_smi_xml(text: &str) -> SmiXml {
    let mut blocks = text.split("<gpu id=");
    let head = blocks.next().unwrap_or_default();
    SmiXml {
        driver_version: element(head, "driver_version"),
        cuda_version: element(head, "cuda_version"),
        gpus: blocks.map(parse_xml_gpu).collect(),
    }
}

fn parse_xml_gpu(block: &str) -> XmlGpu {
    let pci_bus_id = block
        .strip_prefix('"')
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned);
    XmlGpu {
        uuid: element(block, "uuid"),
        pci_bus_id,
        product_name: element(block, "product_name"),
        minor_number: element(block, "minor_number").and_then(|m| m.parse().ok()),
        mig_mode: element(block, "current_mig")
            .map(|m| MigMode::from_smi(&m))
            .unwrap_or(MigMode::NotSupported),
    }
}

/// The trimmed text of the first `<tag>…</tag>`, if present and not a placeholder.
fn element(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    present(&text[start..end])
}

/// Driver and CUDA versions from plain `nvidia-smi`'s banner line
/// (`| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0 |`).
pub fn parse_smi_header(text: &str) -> (Option<String>, Option<String>) {
    let after = |label: &str| {
        let start = text.find(label)? + label.len();
        let word = text[start..].split_whitespace().next()?;
        present(word.trim_end_matches('|'))
    };
    (after("Driver Version:"), after("CUDA Version:"))
}

/// Fills minor numbers and MIG state from the XML into GPUs found by the CSV query,
/// matching on uuid (then PCI bus id).
pub fn merge_xml(gpus: &mut [GpuInfo], xml: &SmiXml) {
    for gpu in gpus {
        let found = xml.gpus.iter().find(|x| {
            x.uuid.as_deref() == Some(gpu.uuid.as_str())
                || (!gpu.pci_bus_id.is_empty()
                    && x.pci_bus_id.as_deref() == Some(gpu.pci_bus_id.as_str()))
        });
        if let Some(x) = found {
            gpu.minor_number = gpu.minor_number.or(x.minor_number);
            if matches!(gpu.mig_mode, MigMode::Unknown | MigMode::NotSupported) {
                gpu.mig_mode = x.mig_mode;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field list `tests/fixtures/h200-query.csv` was recorded with.
    const RECORDED_FIELDS: &[&str] = &[
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
    const H200_CSV: &str = include_str!("../tests/fixtures/h200-query.csv");
    const H200_XML: &str = include_str!("../tests/fixtures/h200-nvidia-smi-q.xml");
    const H200_SMI: &str = include_str!("../tests/fixtures/h200-nvidia-smi.txt");

    #[test]
    fn the_recorded_h200_query_parses() {
        let query = parse_query_csv(RECORDED_FIELDS, H200_CSV).unwrap();
        assert_eq!(query.driver_version.as_deref(), Some("580.159.04"));
        let [gpu] = query.gpus.as_slice() else {
            panic!("{:?}", query.gpus)
        };
        assert_eq!(gpu.index, 0);
        assert_eq!(gpu.uuid, "GPU-bbab14d7-c848-33dd-a12c-497857c54ff5");
        assert_eq!(gpu.model, "NVIDIA H200");
        assert_eq!(gpu.class_model, "NVIDIA-H200");
        assert_eq!(gpu.memory_bytes, 143_771 << 20);
        assert_eq!(gpu.pci_bus_id, "00000000:00:06.0");
        assert_eq!(gpu.compute_capability.as_deref(), Some("9.0"));
    }

    #[test]
    fn the_recorded_h200_xml_gives_versions_minor_and_mig() {
        let xml = parse_smi_xml(H200_XML);
        assert_eq!(xml.driver_version.as_deref(), Some("580.159.04"));
        assert_eq!(xml.cuda_version.as_deref(), Some("13.0"));
        let [gpu] = xml.gpus.as_slice() else {
            panic!("{:?}", xml.gpus)
        };
        assert_eq!(gpu.minor_number, Some(0));
        assert_eq!(gpu.mig_mode, MigMode::Disabled);
        assert_eq!(gpu.pci_bus_id.as_deref(), Some("00000000:00:06.0"));
        assert_eq!(gpu.product_name.as_deref(), Some("NVIDIA H200"));
    }

    #[test]
    fn the_recorded_banner_gives_versions() {
        let (driver, cuda) = parse_smi_header(H200_SMI);
        assert_eq!(driver.as_deref(), Some("580.159.04"));
        assert_eq!(cuda.as_deref(), Some("13.0"));
        assert_eq!(parse_smi_header("garbage"), (None, None));
    }

    #[test]
    fn xml_fills_what_the_csv_lacks() {
        let mut gpus = parse_query_csv(RECORDED_FIELDS, H200_CSV).unwrap().gpus;
        assert_eq!(gpus[0].minor_number, None);
        merge_xml(&mut gpus, &parse_smi_xml(H200_XML));
        assert_eq!(gpus[0].minor_number, Some(0));
        assert_eq!(gpus[0].mig_mode, MigMode::Disabled);
    }

    #[test]
    fn no_devices_is_an_empty_list() {
        let text = include_str!("../tests/fixtures/synthetic-no-devices.txt");
        assert!(parse_query_csv(QUERY_FIELDS, text).unwrap().gpus.is_empty());
        assert!(parse_query_csv(QUERY_FIELDS, "").unwrap().gpus.is_empty());
    }

    #[test]
    fn eight_mixed_gpus_parse_with_mig_and_placeholders() {
        let text = include_str!("../tests/fixtures/synthetic-multi-gpu-query.csv");
        let query = parse_query_csv(QUERY_FIELDS, text).unwrap();
        assert_eq!(query.gpus.len(), 8);
        let a100s = query
            .gpus
            .iter()
            .filter(|g| g.class_model == "NVIDIA-A100-SXM4-80GB");
        assert_eq!(a100s.count(), 4);
        assert_eq!(query.gpus[3].mig_mode, MigMode::Enabled);
        let t4 = &query.gpus[7];
        assert_eq!(t4.class_model, "Tesla-T4");
        assert_eq!(t4.mig_mode, MigMode::NotSupported);
        assert_eq!(t4.compute_capability, None);
    }

    #[test]
    fn multi_gpu_xml_gives_each_minor_number() {
        let text = include_str!("../tests/fixtures/synthetic-multi-gpu-q.xml");
        let xml = parse_smi_xml(text);
        let minors: Vec<_> = xml.gpus.iter().map(|g| g.minor_number).collect();
        assert_eq!(minors, [Some(2), Some(0), Some(1)]);
        assert_eq!(xml.gpus[2].mig_mode, MigMode::Enabled);
        assert_eq!(xml.cuda_version.as_deref(), Some("12.4"));
    }

    #[test]
    fn garbage_lines_are_typed_errors_naming_the_line() {
        let text = include_str!("../tests/fixtures/synthetic-garbage-query.csv");
        let err = parse_query_csv(QUERY_FIELDS, text).unwrap_err();
        assert!(
            matches!(err, SmiParseError::Line { line: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("run nvidia-smi by hand"), "{err}");
        let err = parse_query_csv(&["index", "name"], "").unwrap_err();
        assert_eq!(err, SmiParseError::MissingField("uuid"));
    }

    #[test]
    fn bad_values_are_rejected() {
        let fields = &["index", "uuid", "name", "memory.total"];
        for bad in [
            "x, GPU-1, A100, 100",
            "0, GPU-1, , 100",
            "0, [N/A], A100, 100",
            "0, GPU-1, A100, lots",
            "0, GPU-1, A100, 0",
            "0, GPU-1, A100",
        ] {
            assert!(parse_query_csv(fields, bad).is_err(), "{bad:?} accepted");
        }
        let ok = parse_query_csv(fields, "0, GPU-1, A100, 40960 MiB").unwrap();
        assert_eq!(ok.gpus[0].memory_bytes, 40 << 30);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "(?s).{0,300}") {
            let _ = parse_query_csv(QUERY_FIELDS, &text);
            let _ = parse_smi_xml(&text);
            let _ = parse_smi_header(&text);
        }
    }
}
