//! Writes the golden files of `crates/node/tests/data/golden/` that are missing, with the bytes
//! today's code makes of the values in `tests/support/golden.rs`. Never overwrites a file:
//! the committed ones are the format, and one that no longer matches is reported (a format
//! change, see the directory's README), not replaced. The tests never run this.
//!
//! ```text
//! cargo run -p mqpaxos-node --example write-golden
//! ```

#[path = "../tests/support/golden.rs"]
mod golden;

use std::io::Write;

fn main() {
    let dir = golden::dir();
    std::fs::create_dir_all(&dir).expect("create the golden directory");
    let (mut written, mut kept, mut differ) = (0, 0, 0);
    for (name, bytes) in golden::all_files() {
        let path = dir.join(&name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(&bytes).expect("write a golden file");
                f.sync_all().expect("sync a golden file");
                println!("wrote {name} ({} bytes)", bytes.len());
                written += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let old = std::fs::read(&path).expect("read a golden file");
                if old == bytes {
                    kept += 1;
                } else {
                    eprintln!(
                        "{name}: today's bytes differ from the committed file, which is NOT \
                         rewritten: this is a format change (see README.md)"
                    );
                    differ += 1;
                }
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    println!("{written} written, {kept} already there and unchanged, {differ} differ");
    if differ > 0 {
        std::process::exit(1);
    }
}
