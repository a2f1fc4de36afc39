//! Settings from a TOML file: each key is a long flag name (`broker`, `data-dir` or
//! `data_dir`, ...) and becomes the default for that flag's `MQPAXOS_*` environment variable,
//! unless the environment already sets it. So the precedence is: command line, environment,
//! file, built-in default.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn env_names(cmd: &clap::Command, out: &mut BTreeSet<String>) {
    for a in cmd.get_arguments() {
        if let Some(e) = a.get_env() {
            out.insert(e.to_string_lossy().into_owned());
        }
    }
    for s in cmd.get_subcommands() {
        env_names(s, out);
    }
}

fn config_path() -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("MQPAXOS_CONFIG").map(PathBuf::from)
}

pub fn load_file_into_env(cmd: clap::Command) -> Result<(), String> {
    let Some(path) = config_path() else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config file {}: {e}", path.display()))?;
    let mut known = BTreeSet::new();
    env_names(&cmd, &mut known);
    for (key, value) in table {
        let var = format!("MQPAXOS_{}", key.to_uppercase().replace('-', "_"));
        if !known.contains(&var) || var == "MQPAXOS_CONFIG" {
            return Err(format!(
                "config file {}: unknown setting {key:?}",
                path.display()
            ));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "config file {}: {key:?} must be a string, number or boolean, not {}",
                    path.display(),
                    other.type_str()
                ))
            }
        };
        if std::env::var_os(&var).is_none() {
            // Still single-threaded here: nothing else reads the environment concurrently.
            std::env::set_var(var, text);
        }
    }
    Ok(())
}
