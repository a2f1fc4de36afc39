//! Backup and disaster recovery on real processes: `mqpaxos snapshot save` from a running
//! three-server cluster, every data directory wiped, `mqpaxos snapshot restore` of all three
//! from the file, and the restored cluster serving every key written before the save (and
//! none written after it) and taking new writes. A damaged or cut file is refused.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `mqpaxos snapshot restore` of `backup` as server `id`'s data directory `dir`.
fn restore(backup: &Path, id: &str, dir: &Path) -> std::process::Output {
    run(&[
        "snapshot",
        "restore",
        path(backup),
        "--id",
        id,
        "--data-dir",
        path(dir),
    ])
}

#[test]
fn a_whole_cluster_is_restored_from_a_backup() {
    let broker = Broker::start(Kind::Embedded);
    let mut cluster = Cluster::start(&broker, 3);
    cluster.leader(Duration::from_secs(30));
    let files = tempfile::tempdir().expect("temp dir");

    for i in 0..20 {
        let o = cluster.cli(&[
            "put",
            &format!("k{i}"),
            &format!("v{i}"),
            "--timeout",
            "20s",
        ]);
        assert!(o.status.success(), "put k{i}: {}", stderr(&o));
    }
    // Five values of ~1 MB make a state over the 4 MiB of one piece: the copy comes in
    // several, which must join into one point in time.
    for i in 0..5 {
        let f = files.path().join(format!("big{i}"));
        std::fs::write(&f, format!("{i}").repeat(1_000_000)).expect("write value");
        let o = cluster.cli(&[
            "put",
            &format!("big{i}"),
            "--file",
            path(&f),
            "--timeout",
            "20s",
        ]);
        assert!(o.status.success(), "put big{i}: {}", stderr(&o));
    }

    let backup = files.path().join("cluster.backup");
    let o = cluster.cli(&["snapshot", "save", path(&backup), "--timeout", "30s"]);
    assert!(o.status.success(), "snapshot save: {}", stderr(&o));
    eprintln!("{}", stdout(&o));
    assert!(stdout(&o).contains("25 keys"), "{}", stdout(&o));

    let o = run(&["snapshot", "status", path(&backup), "--json"]);
    assert!(o.status.success(), "snapshot status: {}", stderr(&o));
    let header: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(header["cluster"], cluster.cluster.as_str());
    assert_eq!(header["keys"], 25);
    assert!(header["next_slot"].as_u64().is_some_and(|s| s >= 25));

    // Written after the save: the restored cluster must not have it.
    let o = cluster.cli(&["put", "after-save", "x", "--timeout", "20s"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Disaster: every server stopped, every data directory gone.
    for id in 1..=3 {
        cluster.kill(id);
        std::fs::remove_dir_all(cluster.data.path().join(format!("server{id}")))
            .expect("wipe the data directory");
    }
    for id in 1..=3 {
        let dir = cluster.data.path().join(format!("server{id}"));
        let o = restore(&backup, &id.to_string(), &dir);
        assert!(o.status.success(), "restore {id}: {}", stderr(&o));
        eprintln!("{}", stdout(&o));
    }
    // A restored directory is never written over.
    let o = restore(&backup, "1", &cluster.data.path().join("server1"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));

    // Started with no flags: a restored directory is no empty one, so no `--new-cluster`.
    for id in 1..=3 {
        cluster.start_server(id);
    }
    cluster.leader(Duration::from_secs(30));
    for i in 0..20 {
        let o = cluster.cli(&["get", &format!("k{i}"), "--timeout", "20s"]);
        assert!(o.status.success(), "get k{i}: {}", stderr(&o));
        assert_eq!(stdout(&o), format!("v{i}"));
    }
    for i in 0..5 {
        let o = cluster.cli(&["get", &format!("big{i}"), "--timeout", "20s"]);
        assert!(o.status.success(), "get big{i}: {}", stderr(&o));
        assert!(
            stdout(&o) == format!("{i}").repeat(1_000_000),
            "big{i} differs"
        );
    }
    let o = cluster.cli(&["get", "after-save", "--timeout", "20s"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "written after the save: {}",
        stdout(&o)
    );
    let o = cluster.cli(&["put", "new", "write", "--timeout", "20s"]);
    assert!(o.status.success(), "a new write: {}", stderr(&o));
    let o = cluster.cli(&["get", "new", "--timeout", "20s"]);
    assert_eq!(stdout(&o), "write");
    // The replicas agree on the restored state once they have executed the same slots.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = cluster.status();
        let executed: Vec<&serde_json::Value> = st.iter().map(|s| &s["executed"]).collect();
        if executed.iter().all(|e| *e == executed[0]) {
            let digests: Vec<&serde_json::Value> = st.iter().map(|s| &s["digest"]).collect();
            assert!(digests.iter().all(|d| *d == digests[0]), "{st:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{st:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_damaged_or_cut_backup_is_refused() {
    let d = tempfile::tempdir().expect("temp dir");
    let backup = d.path().join("b");
    // Not a backup at all.
    std::fs::write(&backup, "hello").expect("write");
    let o = run(&["snapshot", "status", path(&backup)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not an mqpaxos backup"),
        "{}",
        stderr(&o)
    );

    // A real one, from a one-server cluster.
    let broker = Broker::start(Kind::Embedded);
    let cluster = Cluster::start(&broker, 1);
    cluster.leader(Duration::from_secs(30));
    let o = cluster.cli(&["put", "k", "v", "--timeout", "20s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cluster.cli(&["snapshot", "save", path(&backup), "--timeout", "20s"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let good = std::fs::read(&backup).expect("read backup");
    assert!(run(&["snapshot", "status", path(&backup)]).status.success());

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let cut = good[..good.len() - 7].to_vec();
    for (what, bytes) in [("a flipped bit", flipped), ("a cut file", cut)] {
        std::fs::write(&backup, &bytes).expect("write");
        let o = run(&["snapshot", "status", path(&backup)]);
        assert_eq!(o.status.code(), Some(2), "{what}");
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{what}: {e}");
        assert!(
            e.contains("damaged") && e.contains("checksum"),
            "{what}: {e}"
        );
        let dir = d.path().join("restored");
        let o = restore(&backup, "1", &dir);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(&o));
        assert!(
            !dir.exists(),
            "{what}: nothing is written from a damaged file"
        );
    }
}
