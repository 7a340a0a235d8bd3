//! Agora's GPU support for providers: what GPUs a machine has, which of them a job gets,
//! how a container sees only those, and how fast they are.
//!
//! - [`detect()`] (module [`detect`](mod@detect)): lists the GPUs through NVML
//!   ([`nvml`], the `nvml-wrapper` crate, which loads `libnvidia-ml.so.1` at run time) and
//!   falls back to parsing `nvidia-smi` ([`smi`], pure parsers tested on recorded output).
//!   A machine without GPUs or drivers gets an empty [`Detection`] that says why, never an
//!   error that stops a provider.
//! - [`place`] (module [`placement`]): pure choice of GPU indices for a [`GpuDemand`], or a
//!   typed [`PlacementRefusal`] usable in the market's "why no match".
//! - [`container_devices`] (module [`container`]): device nodes, read-only driver mounts
//!   and environment that expose the assigned GPUs, and only those, to a container.
//! - [`measure_tflops`] (module [`bench`](mod@bench)): cuBLAS SGEMM/HGEMM throughput, run once at
//!   provider start; CUDA is loaded at run time, so this crate builds and tests without it.
//! - [`offers`] (module [`offer`]): the GPU groups a provider advertises in its asks.
//!
//! Nothing here links against NVIDIA libraries at build time.
#![warn(unused_crate_dependencies, missing_docs)]

pub mod bench;
pub mod container;
pub mod detect;
pub mod nvml;
pub mod offer;
pub mod placement;
pub mod smi;
mod types;

pub use bench::{GpuBenchError, TflopsReport, measure_tflops};
pub use container::{
    BindMount, ContainerGpu, DeviceNode, HostGpuFiles, cdi_available, container_devices,
};
pub use detect::detect;
pub use offer::{GpuOffer, offers};
pub use placement::{GpuDemand, PlacementRefusal, place};
pub use types::{Detection, DetectionSource, GpuInfo, MigMode, class_model};

#[cfg(test)]
use proptest as _;
