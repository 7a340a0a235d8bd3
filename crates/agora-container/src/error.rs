//! Typed failures of a container run.
//!
//! Failures that [`agora_exec::ExecError`] already names (invalid job, memory, output and
//! wall-clock limits, output symlinks, cancellation, host I/O) are carried as that type, so
//! that a provider reports WASM and container jobs alike. The few that only containers
//! have (the pids limit, an entrypoint that cannot start, the runtime or cgroups failing)
//! get their own variants with the same [`kind`](ContainerError::kind) /
//! [`is_job_fault`](ContainerError::is_job_fault) contract.

use agora_exec::{ExecError, PartialRun};

/// Why a container job did not produce a [`ContainerRun`](crate::ContainerRun).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A failure WASM jobs share (see [`ExecError`]).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The job hit its process limit and then failed or ran out of time (a fork bomb, or a
    /// job that needs more processes than it asked for).
    #[error(
        "pids limit reached: the job tried to run more than {limit} processes/threads and then failed; \
         raise the pids limit or make the job fork less"
    )]
    PidsLimit {
        /// The configured limit.
        limit: u64,
        /// What the job wrote, and the fuel it burnt, before it stopped.
        partial: Option<Box<PartialRun>>,
    },
    /// The runtime could not start the job's program (not found, not executable, bad cwd).
    #[error("the job's program could not be started: {message}")]
    StartFailed {
        /// The runtime's message.
        message: String,
    },
    /// The OCI runtime itself failed (not the job's fault).
    #[error("container runtime failed while {context}: {message}")]
    Runtime {
        /// What the executor was doing.
        context: String,
        /// The runtime's message (its stderr or log).
        message: String,
    },
    /// Creating, limiting or reading the job's cgroup failed (not the job's fault).
    #[error("cgroup error while {context}: {source}")]
    Cgroup {
        /// What the executor was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ContainerError {
    /// Wraps a host I/O error as [`ExecError::Host`].
    pub(crate) fn host(context: impl Into<String>, source: std::io::Error) -> Self {
        ContainerError::Exec(ExecError::Host {
            context: context.into(),
            source,
        })
    }

    /// A cgroup I/O failure.
    pub(crate) fn cgroup(context: impl Into<String>, source: std::io::Error) -> Self {
        ContainerError::Cgroup {
            context: context.into(),
            source,
        }
    }

    /// A short, stable snake_case name of the failure (for JSON output and metrics); the
    /// shared failures use [`ExecError::kind`]'s names.
    pub fn kind(&self) -> &'static str {
        match self {
            ContainerError::Exec(e) => e.kind(),
            ContainerError::PidsLimit { .. } => "pids_limit",
            ContainerError::StartFailed { .. } => "start_failed",
            ContainerError::Runtime { .. } => "runtime",
            ContainerError::Cgroup { .. } => "cgroup",
        }
    }

    /// Whether the failure is the job's own fault (as opposed to the host's or a
    /// cancellation).
    pub fn is_job_fault(&self) -> bool {
        match self {
            ContainerError::Exec(e) => e.is_job_fault(),
            ContainerError::PidsLimit { .. } | ContainerError::StartFailed { .. } => true,
            ContainerError::Runtime { .. } | ContainerError::Cgroup { .. } => false,
        }
    }

    /// What a job that failed at run time wrote before it stopped.
    pub fn partial(&self) -> Option<&PartialRun> {
        match self {
            ContainerError::Exec(e) => e.partial(),
            ContainerError::PidsLimit { partial, .. } => partial.as_deref(),
            _ => None,
        }
    }

    /// Attaches what the job wrote before a run-time failure.
    pub fn with_partial(self, run: PartialRun) -> Self {
        match self {
            ContainerError::Exec(e) => ContainerError::Exec(e.with_partial(run)),
            ContainerError::PidsLimit { limit, .. } => ContainerError::PidsLimit {
                limit,
                partial: Some(Box::new(run)),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_faults() {
        let e = ContainerError::PidsLimit {
            limit: 16,
            partial: None,
        };
        assert_eq!(e.kind(), "pids_limit");
        assert!(e.is_job_fault());
        let e = ContainerError::from(ExecError::Cancelled {
            fuel_used: agora_core::Fuel(0),
        });
        assert_eq!(e.kind(), "cancelled");
        assert!(!e.is_job_fault());
        let e = ContainerError::Runtime {
            context: "x".into(),
            message: "y".into(),
        };
        assert_eq!(e.kind(), "runtime");
        assert!(!e.is_job_fault());
    }
}
