//! The one error type of the crate, [`ImageError`], and its short machine-readable codes.
//!
//! Every refusal names what was wrong and what the image author (or operator) can do about it;
//! [`ImageError::kind`] gives a stable snake_case code that a provider can put in a signed
//! failure report without leaking host paths.

use std::io;

/// Why an image could not be loaded, or a process could not be derived from its config.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A filesystem operation of the store itself failed (disk full, permissions of the root).
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The archive is not a readable OCI layout / `docker save` tarball, or its JSON is malformed.
    #[error(
        "bad image archive: {0}; build it with `docker save` or as an OCI image layout tarball"
    )]
    BadArchive(String),
    /// A layer is corrupt, truncated, or holds an entry the unpacker cannot represent.
    #[error("bad layer {layer}: {reason}; rebuild the image")]
    BadLayer {
        /// Zero-based index of the layer, bottom first.
        layer: usize,
        /// What was wrong.
        reason: String,
    },
    /// Content does not hash to the digest that references it.
    #[error(
        "digest mismatch for {what}: expected {expected}, got {actual}; the archive is corrupt or was altered"
    )]
    DigestMismatch {
        /// Which blob.
        what: String,
        /// The digest the referrer names.
        expected: String,
        /// The digest of the bytes present.
        actual: String,
    },
    /// A blob's length differs from the size its descriptor names.
    #[error(
        "size mismatch for {what}: descriptor says {expected} bytes, blob has {actual}; the archive is corrupt"
    )]
    SizeMismatch {
        /// Which blob.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// The blob's length.
        actual: u64,
    },
    /// A layer entry path is absolute or climbs out with `..`.
    #[error(
        "layer {layer}: entry path {path:?} escapes the root filesystem (absolute or `..`); refused"
    )]
    TarSlip {
        /// Zero-based layer index.
        layer: usize,
        /// The path as written in the layer.
        path: String,
    },
    /// A symlink or hard link target resolves outside the root filesystem.
    #[error(
        "layer {layer}: link {path:?} -> {target:?} points outside the root filesystem; refused"
    )]
    LinkEscape {
        /// Zero-based layer index.
        layer: usize,
        /// The link's path.
        path: String,
        /// The link's target.
        target: String,
    },
    /// An entry would be written (or deleted) through a symlink placed by an earlier entry.
    #[error(
        "layer {layer}: entry {path:?} lies below a symlink; writing through symlinks is refused"
    )]
    SymlinkTraversal {
        /// Zero-based layer index.
        layer: usize,
        /// The entry path.
        path: String,
    },
    /// A device node or fifo: containers get their `/dev` from the runtime, never from a layer.
    #[error(
        "layer {layer}: entry {path:?} is a {node}; device nodes and fifos are refused, remove them from the image"
    )]
    DeviceNode {
        /// Zero-based layer index.
        layer: usize,
        /// The entry path.
        path: String,
        /// "character device", "block device" or "fifo".
        node: &'static str,
    },
    /// A setuid or setgid bit, refused under [`crate::SetuidPolicy::Refuse`].
    #[error(
        "layer {layer}: entry {path:?} has mode {mode:o} with setuid/setgid; refused (clear the bit or let the provider strip it)"
    )]
    Setuid {
        /// Zero-based layer index.
        layer: usize,
        /// The entry path.
        path: String,
        /// The mode bits as written.
        mode: u32,
    },
    /// A size limit of [`crate::ImageLimits`] was exceeded.
    #[error("image too large: {what} exceeds the limit of {limit}; use a smaller image")]
    TooLarge {
        /// Which quantity.
        what: &'static str,
        /// The limit that was hit.
        limit: u64,
    },
    /// More layer entries than [`crate::ImageLimits::max_entries`].
    #[error("image has more than {limit} entries; use a smaller image")]
    TooManyEntries {
        /// The limit that was hit.
        limit: u64,
    },
    /// More layers than [`crate::ImageLimits::max_layers`].
    #[error("image has {count} layers, more than the limit of {limit}; squash the image")]
    TooManyLayers {
        /// Layers in the image.
        count: usize,
        /// The limit.
        limit: u32,
    },
    /// The archive's index offers several images and none for linux/amd64.
    #[error("no linux/amd64 image in the archive (found: {found}); save the amd64 variant")]
    NoPlatform {
        /// The platforms that were offered.
        found: String,
    },
    /// A layer uses a media type or compression this build cannot unpack.
    #[error(
        "unsupported layer media type {0:?}; use uncompressed, gzip or (with the `zstd` feature) zstd layers"
    )]
    UnsupportedMediaType(String),
    /// Neither the image nor the overrides give a program to run.
    #[error(
        "image has no Entrypoint or Cmd and the job gives no entrypoint or args; name the program to run"
    )]
    NoEntrypoint,
    /// The config's `User` names a user or group the rootfs cannot resolve.
    #[error(
        "image user {0:?} cannot be resolved to a numeric uid:gid (no matching entry in the image's /etc/passwd or /etc/group); use USER uid:gid"
    )]
    UnknownUser(String),
    /// A job override is malformed.
    #[error("bad override: {0}")]
    BadOverride(String),
}

impl ImageError {
    /// A short, stable snake_case code for this error, fit for signed failure reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::BadArchive(_) => "bad_archive",
            Self::BadLayer { .. } => "bad_layer",
            Self::DigestMismatch { .. } => "digest_mismatch",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::TarSlip { .. } => "tar_slip",
            Self::LinkEscape { .. } => "link_escape",
            Self::SymlinkTraversal { .. } => "symlink_traversal",
            Self::DeviceNode { .. } => "device_node",
            Self::Setuid { .. } => "setuid",
            Self::TooLarge { .. } => "too_large",
            Self::TooManyEntries { .. } => "too_many_entries",
            Self::TooManyLayers { .. } => "too_many_layers",
            Self::NoPlatform { .. } => "no_platform",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::NoEntrypoint => "no_entrypoint",
            Self::UnknownUser(_) => "unknown_user",
            Self::BadOverride(_) => "bad_override",
        }
    }

    /// Wraps an I/O error of the store with what it was doing at `path`.
    pub(crate) fn io(what: &str, path: &std::path::Path, source: io::Error) -> Self {
        Self::Io {
            context: format!("{what} {}", path.display()),
            source,
        }
    }

    /// Shorthand for [`ImageError::BadArchive`].
    pub(crate) fn bad_archive(msg: impl Into<String>) -> Self {
        Self::BadArchive(msg.into())
    }
}

/// Adds `with_path` to io results: `fs::x(&p).with_path("creating", &p)?`.
pub(crate) trait IoContext<T> {
    /// Maps the error to [`ImageError::Io`] naming the operation and path.
    fn with_path(self, what: &str, path: &std::path::Path) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn with_path(self, what: &str, path: &std::path::Path) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::io(what, path, e))
    }
}

/// Paths in errors are relative to the rootfs; this renders one.
pub(crate) fn show(path: &std::path::Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_is_send_and_sync() {
        fn is<T: Send + Sync + 'static>() {}
        is::<super::ImageError>();
    }
}
