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

/// Why the settings file was refused. Each names the file: it is read before the command
/// line is, so the message is all the operator gets.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Boxed: the parser's error is about 100 bytes, and it is the rare case.
    #[error("config file {}: {source}", path.display())]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// A key that is no flag's name (or `config` itself, which a file cannot set).
    #[error("config file {}: unknown setting {key:?}", path.display())]
    UnknownSetting { path: PathBuf, key: String },
    #[error(
        "config file {}: {key:?} must be a string, number or boolean, not {found}",
        path.display()
    )]
    BadType {
        path: PathBuf,
        key: String,
        found: &'static str,
    },
}

pub fn load_file_into_env(cmd: clap::Command) -> Result<(), ConfigError> {
    let Some(path) = config_path() else {
        return Ok(());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(source) => {
            return Err(ConfigError::Toml {
                path,
                source: Box::new(source),
            })
        }
    };
    let mut known = BTreeSet::new();
    env_names(&cmd, &mut known);
    for (key, value) in table {
        let var = format!("MQPAXOS_{}", key.to_uppercase().replace('-', "_"));
        if !known.contains(&var) || var == "MQPAXOS_CONFIG" {
            return Err(ConfigError::UnknownSetting { path, key });
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError::BadType {
                    path,
                    key,
                    found: other.type_str(),
                })
            }
        };
        if std::env::var_os(&var).is_none() {
            // Still single-threaded here: nothing else reads the environment concurrently.
            std::env::set_var(var, text);
        }
    }
    Ok(())
}
