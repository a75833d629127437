//! The case files lint clean, the built-in cases are the files on disk,
//! and the generated files (the case schema, the case tables of
//! `spec/CONFORMANCE.md`) are what the code generates (ARCHITECTURE.md,
//! "Generated files": `scripts/regenerate.sh` writes them).

use std::path::PathBuf;

use dask_conformance::{case, lint};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn case_files_lint_clean() {
    let cases = case::load_dir(&root().join("cases")).expect("case files parse");
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    // Spec anchors are checked once the spec exists.
    let protocol = std::fs::read_to_string(root().join("../spec/PROTOCOL.md")).ok();
    let problems = lint::lint(&cases, protocol.as_deref());
    assert!(
        problems.is_empty(),
        "case problems:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn built_in_cases_are_the_files_on_disk() {
    let on_disk: Vec<String> = case::load_dir(&root().join("cases"))
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let built_in: Vec<String> = case::embedded()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(on_disk, built_in);
}

#[test]
fn committed_case_schema_is_up_to_date() {
    dask_testkit::generated::check(&root().join("cases/case.schema.json"), &case::schema());
}

#[test]
fn lint_catches_the_usual_mistakes() {
    let text = r#"[
      {"id": "dask-1/other/01", "description": "x", "spec": "PROTOCOL.md#nowhere", "requirement": "MUST x", "level": "SHOULD",
       "steps": [{"send": {"op": "compute-task", "key": "k"}}, {"expect": {"op": "no-op", "v": {"$var": "later"}}}]},
      {"id": "dask-1/other/01", "description": "y", "spec": "PROTOCOL.md#a", "requirement": "MUST y", "level": "MUST",
       "steps": [{"expect": {"op": "hello", "x": {"$nope": 1}}}]}
    ]"#;
    let cases = case::parse_file("misc.json", text).unwrap();
    let problems = lint::lint(&cases, Some("# A\n"));
    let all = problems.join("\n");
    for needle in [
        "duplicate id",
        "is not the file's name",
        "not a positive integer",
        "does not contain its level word SHOULD",
        "SHOULD cases belong in cases/optional/",
        "#nowhere is not a heading",
        "not valid dask/1",
        "\"no-op\" is not a dask/1 op",
        "\"later\" is not defined",
        "unknown or malformed matcher",
    ] {
        assert!(all.contains(needle), "lint missed {needle:?} in:\n{all}");
    }
}

#[test]
fn conformance_md_lists_every_case() {
    let path = root().join("../spec/CONFORMANCE.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let heading = "\n## The cases\n";
    let head = doc
        .find(heading)
        .map(|i| &doc[..i + heading.len()])
        .unwrap_or(&doc);
    let cases = case::load_dir(&root().join("cases")).unwrap();
    let generated = format!("{head}{}", case::markdown_tables(&cases));
    dask_testkit::generated::check(&path, &generated);
}

#[test]
fn lint_holds_client_cases_to_their_own_rules() {
    let text = r#"[
      {"id": "dask-1/misc/1", "description": "x", "spec": "PROTOCOL.md#a", "requirement": "MUST x", "level": "MUST",
       "steps": [{"drive": {"do": "fly"}}, {"peer_holds": {"k": 1}}, {"expect_output": {"key": {"$var": "nope"}}}]}
    ]"#;
    let cases = case::parse_file("client/misc.json", text).unwrap();
    assert!(cases[0].is_client());
    let all = lint::lint(&cases, Some("# A\n")).join("\n");
    for needle in [
        "id is not of the form dask-1/client/<topic>/<n>",
        "drive needs \"do\"",
        "`peer_holds` has no meaning in a client case",
        "\"nope\" is not defined",
    ] {
        assert!(all.contains(needle), "lint missed {needle:?} in:\n{all}");
    }
    let worker = case::parse_file(
        "misc.json",
        r#"[{"id": "dask-1/misc/1", "description": "x", "spec": "PROTOCOL.md#a", "requirement": "MUST x",
             "level": "MUST", "steps": [{"drive": {"do": "close"}}]}]"#,
    )
    .unwrap();
    let all = lint::lint(&worker, Some("# A\n")).join("\n");
    assert!(
        all.contains("`drive` has no meaning in a worker case"),
        "{all}"
    );
}
