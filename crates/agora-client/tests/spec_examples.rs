//! The job spec examples cannot go stale: every file in `examples/specs` must parse with
//! the real parser and name files that exist, `docs/job-spec.md` must show each of them
//! verbatim, and every TOML block in that document must parse, or fail with the message
//! its first line (`# error: ...`) promises.

use std::path::{Path, PathBuf};

use agora_client::spec::JobFile;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Every `examples/specs/*.toml`, by name.
fn example_specs() -> Vec<PathBuf> {
    let dir = workspace().join("examples/specs");
    let mut specs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/specs exists")
        .map(|entry| entry.expect("examples/specs is readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    specs.sort();
    specs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn every_example_spec_parses_and_names_existing_files() {
    let specs = example_specs();
    assert!(specs.len() >= 2, "examples/specs holds {specs:?}");
    for spec in &specs {
        let file = JobFile::load(spec).unwrap_or_else(|e| panic!("{e}"));
        assert!(!file.tasks.is_empty(), "{}: no tasks", spec.display());
        for (index, task) in file.tasks.iter().enumerate() {
            assert!(
                task.module.is_file(),
                "{} task {index}: module {} does not exist",
                spec.display(),
                task.module.display()
            );
            for (name, input) in &task.inputs {
                assert!(
                    input.is_file(),
                    "{} task {index}: input {name} = {} does not exist",
                    spec.display(),
                    input.display()
                );
            }
        }
    }
}

/// The path tracer's tiles must cover the frame exactly once, top to bottom, or the
/// stacked image in the docs would not be the frame.
#[test]
fn the_frame_example_tiles_the_whole_frame() {
    let file = JobFile::load(&workspace().join("examples/specs/frame-tiles.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut next_row = 0u32;
    let mut height = None;
    for task in &file.tasks {
        let numbers: Vec<u32> = task
            .args
            .iter()
            .map(|a| a.parse().expect("pathtrace arguments are numbers"))
            .collect();
        let [_, h, start, end, _] = numbers[..] else {
            panic!("pathtrace takes five arguments: {:?}", task.args)
        };
        assert_eq!(
            start, next_row,
            "tiles must follow each other: {:?}",
            task.args
        );
        assert_eq!(*height.get_or_insert(h), h, "one frame height");
        next_row = end;
    }
    assert_eq!(Some(next_row), height, "the tiles end at the last row");
}

#[test]
fn the_docs_show_every_example_verbatim() {
    let docs = read(&workspace().join("docs/job-spec.md"));
    for spec in example_specs() {
        let text = read(&spec);
        assert!(
            docs.contains(&text),
            "docs/job-spec.md does not show {} as it is; paste the file into the docs again",
            spec.display()
        );
    }
}

/// The ```toml blocks of a Markdown text.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_toml_block_in_the_docs_parses_or_fails_as_it_says() {
    let docs = read(&workspace().join("docs/job-spec.md"));
    let blocks = toml_blocks(&docs);
    assert!(
        blocks.len() >= 4,
        "docs/job-spec.md has {} TOML blocks",
        blocks.len()
    );
    // Relative paths resolve as they would for a file in examples/specs.
    let path = workspace().join("examples/specs/snippet.toml");
    for block in blocks {
        let expected = block
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error: "))
            .map(str::to_owned);
        match (JobFile::parse(&block, &path), expected) {
            (Ok(_), None) => {}
            (Err(e), Some(expected)) => {
                let message = e.to_string();
                assert!(
                    message.contains(&expected),
                    "this block's error is {message:?}, not {expected:?}:\n{block}"
                );
            }
            (Ok(_), Some(expected)) => {
                panic!("this block parses, but the docs say it fails with {expected:?}:\n{block}")
            }
            (Err(e), None) => panic!("this block in docs/job-spec.md does not parse: {e}\n{block}"),
        }
    }
}
