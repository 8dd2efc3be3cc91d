//! Each function's environment, declared once: the `Environment` blocks of `template.yaml`
//! (`Globals` and the function's own). In AWS CloudFormation resolves their `!Ref`s; for the
//! local stack [`crate::stack::references`] does, and `make dev` writes the result as
//! `.local/functions.env` (for `cargo lambda watch --env-file`) and `.local/sam-env.json`
//! (for `sam local invoke --env-vars`). A variable added to the template reaches both files
//! without another edit; a `!Ref` the local stack cannot resolve stops `make dev`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// The template the functions are deployed with, as this build knows it.
pub const TEMPLATE: &str = include_str!("../../template.yaml");
/// Where the local endpoint goes: declared empty in the template (AWS itself), so that
/// `sam local invoke --env-vars` may set it (SAM only sets variables the template declares).
pub const ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL";
/// The file `cargo lambda watch --env-file` reads, in the state directory.
pub const ENV_FILE: &str = "functions.env";
/// The file `sam local invoke --env-vars` reads, in the state directory.
pub const SAM_ENV_FILE: &str = "sam-env.json";

/// A variable's value as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    Text(String),
    /// `!Ref Name`: a resource's or parameter's name, known only once deployed.
    Ref(String),
}

/// One function of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The template's logical id (`ApiFunction`), which `sam local invoke` takes.
    pub logical_id: String,
    /// The binary `cargo lambda` builds (`api`): `Metadata.BuildProperties.Binary`.
    pub binary: String,
    pub variables: BTreeMap<String, Declared>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("template.yaml does not parse: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template.yaml: {0}")]
    Template(String),
    #[error("template.yaml gives {variable} the reference !Ref {name}, which the local stack does not have (see billing_infra::stack::references)")]
    UnknownRef { variable: String, name: String },
    #[error("{variable} is {first:?} for one function and {second:?} for another: one env file cannot hold both")]
    Conflict {
        variable: String,
        first: String,
        second: String,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn declared(variable: &str, value: &Value) -> Result<Declared, EnvError> {
    match value {
        Value::String(s) => Ok(Declared::Text(s.clone())),
        Value::Number(n) => Ok(Declared::Text(n.to_string())),
        Value::Bool(b) => Ok(Declared::Text(b.to_string())),
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged
            .value
            .as_str()
            .map(|name| Declared::Ref(name.to_owned()))
            .ok_or_else(|| EnvError::Template(format!("{variable}: !Ref of a non-name"))),
        other => Err(EnvError::Template(format!(
            "{variable}: {other:?} is neither text nor a !Ref"
        ))),
    }
}

fn variables(block: &Value) -> Result<BTreeMap<String, Declared>, EnvError> {
    let Some(map) = block["Environment"]["Variables"].as_mapping() else {
        return Ok(BTreeMap::new());
    };
    map.iter()
        .map(|(name, value)| {
            let name = name
                .as_str()
                .ok_or_else(|| EnvError::Template(format!("variable name {name:?}")))?;
            Ok((name.to_owned(), declared(name, value)?))
        })
        .collect()
}

/// Every function of `template` with its whole environment: `Globals` overlaid with its own.
pub fn functions(template: &str) -> Result<Vec<Function>, EnvError> {
    let template: Value = serde_yaml::from_str(template)?;
    let globals = variables(&template["Globals"]["Function"])?;
    let resources = template["Resources"]
        .as_mapping()
        .ok_or_else(|| EnvError::Template("no Resources".into()))?;
    let mut functions = Vec::new();
    for (id, resource) in resources {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let logical_id = id.as_str().unwrap_or_default().to_owned();
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .ok_or_else(|| EnvError::Template(format!("{logical_id} names no Binary")))?
            .to_owned();
        let mut all = globals.clone();
        all.extend(variables(&resource["Properties"])?);
        functions.push(Function {
            logical_id,
            binary,
            variables: all,
        });
    }
    Ok(functions)
}

/// A function's environment on the local stack: each `!Ref` replaced by its local value
/// from `references`, and [`ENDPOINT_VAR`] pointed at the stand-in.
pub fn resolve(
    function: &Function,
    references: &BTreeMap<String, String>,
    endpoint: &str,
) -> Result<BTreeMap<String, String>, EnvError> {
    let mut resolved = function
        .variables
        .iter()
        .map(|(variable, value)| {
            let value = match value {
                Declared::Text(text) => text.clone(),
                Declared::Ref(name) => {
                    references
                        .get(name)
                        .cloned()
                        .ok_or_else(|| EnvError::UnknownRef {
                            variable: variable.clone(),
                            name: name.clone(),
                        })?
                }
            };
            Ok((variable.clone(), value))
        })
        .collect::<Result<BTreeMap<_, _>, EnvError>>()?;
    resolved.insert(ENDPOINT_VAR.to_owned(), endpoint.to_owned());
    Ok(resolved)
}

/// One function's variables, by name.
pub type Environment = BTreeMap<String, String>;

/// The local environments of every function, by binary name.
pub fn local(
    template: &str,
    references: &BTreeMap<String, String>,
    endpoint: &str,
) -> Result<Vec<(Function, Environment)>, EnvError> {
    functions(template)?
        .into_iter()
        .map(|f| {
            let env = resolve(&f, references, endpoint)?;
            Ok((f, env))
        })
        .collect()
}

/// `cargo lambda watch` gives every function the same environment: the union of theirs,
/// which must agree where they overlap.
pub fn env_file(functions: &[(Function, Environment)]) -> Result<String, EnvError> {
    let mut union: BTreeMap<&str, &str> = BTreeMap::new();
    for (_, env) in functions {
        for (variable, value) in env {
            match union.insert(variable, value) {
                Some(first) if first != value.as_str() => {
                    return Err(EnvError::Conflict {
                        variable: variable.clone(),
                        first: first.to_owned(),
                        second: value.clone(),
                    })
                }
                _ => {}
            }
        }
    }
    Ok(union
        .into_iter()
        .map(|(variable, value)| format!("{variable}={value}\n"))
        .collect())
}

/// `sam local invoke --env-vars`: one object per function's logical id.
pub fn sam_env_file(functions: &[(Function, Environment)]) -> String {
    let by_id: BTreeMap<&str, &BTreeMap<String, String>> = functions
        .iter()
        .map(|(f, env)| (f.logical_id.as_str(), env))
        .collect();
    serde_json::to_string_pretty(&by_id).unwrap_or_default() + "\n"
}

/// Writes both files into `state_dir`, each whole or not at all (a reader never sees half).
pub fn write(state_dir: &Path, functions: &[(Function, Environment)]) -> Result<(), EnvError> {
    let env = env_file(functions)?;
    for (name, text) in [(SAM_ENV_FILE, sam_env_file(functions)), (ENV_FILE, env)] {
        let path = state_dir.join(name);
        let partial = state_dir.join(format!(".{name}.partial"));
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|source| EnvError::Write { path, source })?;
    }
    Ok(())
}

/// Reads an env file back (`KEY=VALUE` lines).
pub fn read_env_file(path: &Path) -> std::io::Result<Vec<(String, String)>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Globals:
  Function:
    Environment:
      Variables:
        TABLE_NAME: !Ref Table
        RUST_LOG: info
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  OneFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: one
    Properties:
      Environment:
        Variables:
          FROM: !Ref Sender
          RUST_LOG: debug
  TwoFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: two
"#;

    fn refs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_function_has_the_globals_overlaid_with_its_own_variables() {
        let functions = functions(TEMPLATE).unwrap();
        assert_eq!(functions.len(), 2);
        let one = functions.iter().find(|f| f.binary == "one").unwrap();
        assert_eq!(one.logical_id, "OneFunction");
        assert_eq!(one.variables["TABLE_NAME"], Declared::Ref("Table".into()));
        assert_eq!(one.variables["RUST_LOG"], Declared::Text("debug".into()));
        assert_eq!(one.variables["FROM"], Declared::Ref("Sender".into()));
        let two = functions.iter().find(|f| f.binary == "two").unwrap();
        assert_eq!(two.variables.len(), 2);
        assert_eq!(two.variables["RUST_LOG"], Declared::Text("info".into()));
    }

    #[test]
    fn references_resolve_to_local_values_and_an_unknown_one_is_refused() {
        let references = refs(&[("Table", "billing-local"), ("Sender", "a@b.test")]);
        let local = local(TEMPLATE, &references, "http://127.0.0.1:1").unwrap();
        let (_, one) = local.iter().find(|(f, _)| f.binary == "one").unwrap();
        assert_eq!(one["TABLE_NAME"], "billing-local");
        assert_eq!(one["FROM"], "a@b.test");
        assert_eq!(one[ENDPOINT_VAR], "http://127.0.0.1:1");
        let missing = super::local(TEMPLATE, &refs(&[("Table", "t")]), "e").unwrap_err();
        assert!(
            matches!(&missing, EnvError::UnknownRef { variable, name } if variable == "FROM" && name == "Sender"),
            "{missing}"
        );
    }

    #[test]
    fn one_env_file_refuses_variables_that_differ_between_functions() {
        let references = refs(&[("Table", "billing-local"), ("Sender", "a@b.test")]);
        let local = local(TEMPLATE, &references, "e").unwrap();
        assert!(matches!(
            env_file(&local),
            Err(EnvError::Conflict { variable, .. }) if variable == "RUST_LOG"
        ));
        let agreeing: Vec<_> = local
            .into_iter()
            .filter(|(f, _)| f.binary == "one")
            .collect();
        assert_eq!(
            env_file(&agreeing).unwrap(),
            "AWS_ENDPOINT_URL=e\nFROM=a@b.test\nRUST_LOG=debug\nTABLE_NAME=billing-local\n"
        );
        let sam: serde_json::Value = serde_json::from_str(&sam_env_file(&agreeing)).unwrap();
        assert_eq!(sam["OneFunction"]["FROM"], "a@b.test");
    }
}
