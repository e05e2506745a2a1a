//! The layout keeps every write within the budget and changes only what a step changed.

use super::*;
use crate::machine::NodeProgress;

/// A run of `nodes` nodes, each like those of the bundled five-node record.
fn doc(nodes: usize) -> StoreDoc {
    let mut doc =
        StoreDoc::from_json(include_str!("../../tests/fixtures/store/v1-interrupted.json"))
            .expect("the fixture reads");
    let run = doc.run.as_mut().unwrap();
    let like: Vec<NodeProgress> = run.nodes.iter().map(|n| (**n).clone()).collect();
    run.nodes = (0..nodes)
        .map(|i| {
            let mut n = like[i % like.len()].clone();
            n.hostname = format!("worker{i:04}");
            n.node = crate::model::NodeId(format!("{:025}", i));
            n
        })
        .collect();
    doc
}

fn stored(layout: &Layout) -> Result<StoreDoc, SchemaError> {
    join(&layout.header, |k| layout.shards.get(k).cloned())
}

#[test]
fn a_document_reads_back_whole_and_every_part_fits_the_budget() {
    for nodes in [0, 1, 5, 16, 17, 2500] {
        let d = doc(nodes);
        let layout = split(&d);
        assert_eq!(stored(&layout).unwrap(), d, "{nodes} nodes");
        assert_eq!(layout.shards.len(), nodes.div_ceil(SHARD_NODES));
        let largest = layout.shards.iter().map(String::len).chain([layout.header.len()]).max();
        assert!(largest.unwrap() <= WRITE_BUDGET, "{nodes} nodes: {largest:?} bytes");
    }
    let empty = StoreDoc::default();
    assert_eq!(stored(&split(&empty)).unwrap(), empty);
    assert!(split(&empty).shards.is_empty());
}

#[test]
fn a_step_on_one_node_rewrites_its_shard_only() {
    let before = doc(100);
    let mut after = before.clone();
    after.run.as_mut().unwrap().nodes[37].reason = Some("rolled back".into());
    let (a, b) = (split(&before), split(&after));
    assert_eq!(a.header, b.header);
    let changed: Vec<usize> = (0..a.shards.len()).filter(|&k| a.shards[k] != b.shards[k]).collect();
    assert_eq!(changed, [37 / SHARD_NODES]);
    let mut renewed = before.clone();
    renewed.last_token += 1;
    let c = split(&renewed);
    assert_ne!(a.header, c.header);
    assert_eq!(a.shards, c.shards, "the lock lives in the header");
}

#[test]
fn reasons_are_capped() {
    let mut d = doc(3);
    let long = "x".repeat(10 * REASON_CHARS);
    d.run.as_mut().unwrap().nodes[1].reason = Some(long.clone());
    d.run.as_mut().unwrap().nodes[1].recovery = Some(long.clone());
    d.run.as_mut().unwrap().reason = Some(long);
    let back = stored(&split(&d)).unwrap();
    let run = back.run.unwrap();
    let recovery = &run.nodes[1].recovery;
    for (r, chars) in [
        (&run.reason, REASON_CHARS),
        (&run.nodes[1].reason, REASON_CHARS),
        (recovery, RECOVERY_CHARS),
    ] {
        let r = r.as_ref().unwrap();
        assert_eq!(r.chars().count(), chars);
        assert!(r.ends_with('…'));
    }
    let mut failed = doc(SHARD_NODES);
    for n in failed.run.as_mut().unwrap().nodes.iter_mut().take(SHARD_NODES / 2) {
        n.reason = Some("r".repeat(REASON_CHARS));
        n.recovery = Some("s".repeat(RECOVERY_CHARS));
    }
    let largest = split(&failed).shards[0].len();
    assert!(largest <= WRITE_BUDGET, "half a shard left failed: {largest} bytes");
    // Every node of a shard upgraded and marked for attention, with three hook runs each of
    // the longest output kept (quotes: each written escaped) and a long command.
    let mut hooked = doc(SHARD_NODES);
    let output = "\"".repeat(10_000);
    for n in hooked.run.as_mut().unwrap().nodes.iter_mut() {
        n.attention = Some("a".repeat(10 * REASON_CHARS));
        n.hooks = crate::model::hooks::HOOK_POINTS
            .iter()
            .map(|&point| crate::model::hooks::HookRun {
                point,
                command: format!("/etc/swarm-upgrade/hooks/{}", "c".repeat(200)),
                exit: Some(1),
                timed_out: false,
                signal: None,
                millis: 300_000,
                output: output.clone(),
            })
            .collect();
    }
    let layout = split(&hooked);
    let largest = layout.shards[0].len();
    assert!(largest <= WRITE_BUDGET, "a shard of hooked nodes: {largest} bytes");
    let back = stored(&layout).unwrap().run.unwrap();
    assert_eq!(back.nodes[0].attention.as_ref().unwrap().chars().count(), ATTENTION_CHARS);
    assert_eq!(back.nodes[0].hooks[0].command.chars().count(), COMMAND_CHARS);
}

#[test]
fn a_whole_document_of_an_older_build_is_read_and_a_missing_shard_is_named() {
    let whole = serde_json::to_string(&doc(5)).unwrap();
    assert_eq!(join(&whole, |_| None).unwrap(), doc(5), "written whole (layout 2): no shards");
    assert_eq!(shards_of(&whole).unwrap(), None);
    let layout = split(&doc(40));
    let run = layout.run.clone().unwrap();
    assert_eq!(shards_of(&layout.header).unwrap(), Some((run.clone(), 3)));
    let e = join(&layout.header, |k| (k != 1).then(|| layout.shards[k].clone())).unwrap_err();
    assert_eq!(e, SchemaError::Malformed(format!("shard 1 of run {run}'s record is missing")));
}
