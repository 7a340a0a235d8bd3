//! Job spec files (`agora job run job.toml`, agora-client's `JobFile::parse`): any text
//! gives a job or a typed error that names the field and a line inside the file.

use std::path::Path;

use agora_client::spec::{JobFile, MAX_TASKS, SpecError};

/// See the module docs.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match JobFile::parse(text, Path::new("/fuzz/job.toml")) {
        Ok(job) => {
            assert!(job.concurrency >= 1, "a job with no concurrency");
            assert!(!job.tasks.is_empty() && job.tasks.len() <= MAX_TASKS);
            let of = job.tasks.len() as u32;
            for (index, task) in job.tasks.iter().enumerate() {
                if let Some(t) = &task.task {
                    assert_eq!((t.index, t.of), (index as u32, of), "tasks numbered wrong");
                    assert_eq!(t.job, job.name);
                }
                for (name, _) in &task.inputs {
                    // The working tree and stdin travel as inputs under reserved names.
                    let reserved = name == "/" || name == "/dev/stdin";
                    assert!(
                        reserved || (!name.is_empty() && !name.contains(['/', '\\'])),
                        "input {name:?}"
                    );
                }
            }
        }
        Err(SpecError::Invalid { line, .. }) => {
            let lines = text.lines().count().max(1) + 1;
            assert!(
                line >= 1 && line <= lines,
                "line {line} of a {lines}-line file"
            );
        }
        Err(_) => {}
    }
}
