//! Tests of the repositories' forge keys (`forge`, `forge_repo`, `forge_api_url`,
//! `forge_token_env`, `merge_style`, `ci`) and the `ci_green` gate they bring into the pipeline.

use super::{Config, ConfigIssue, load};
use baton_domain::pipeline::GateSpec;
use baton_engine::{CiPolicy, ForgeKind, MergeStyle};
use std::path::{Path, PathBuf};

const TOKEN: &str = "ghp_forge_token_value_0123456789";

fn load_text(dir: &Path, text: &str, vars: &[(&str, &str)]) -> Result<Config, Vec<ConfigIssue>> {
    let path = dir.join("baton.toml");
    std::fs::write(&path, text).unwrap();
    let env: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    load(Some(&path), &env, PathBuf::from("/usr/bin/baton"))
}

fn gates(config: &Config, stage: &str) -> Vec<String> {
    let stage = config.engine.pipeline.stage(stage).unwrap();
    stage.gates.iter().map(|g| g.name().to_string()).collect()
}

// A GitHub repository and a Forgejo one load with their settings; `ci_green` follows `mergeable`;
// the token variable defaults to `credentials_env`.
#[test]
fn hosted_forges_load_and_bring_the_ci_gate() {
    let dir = tempfile::tempdir().unwrap();
    let config = load_text(
        dir.path(),
        "[server]\ndata_dir = \"data\"\n\n\
         [[repos]]\nname = \"app\"\nurl = \"https://github.com/acme/app.git\"\nprefix = \"APP\"\n\
         credentials_env = \"GH_TOKEN\"\nforge = \"github\"\nforge_repo = \"acme/app\"\nmerge_style = \"squash\"\n\n\
         [[repos]]\nname = \"web\"\nurl = \"https://git.example.com/acme/web.git\"\nprefix = \"WEB\"\n\
         forge = \"forgejo\"\nforge_repo = \"acme/web\"\nforge_api_url = \"https://git.example.com/api/v1\"\n\
         forge_token_env = \"FJ_TOKEN\"\nmerge_style = \"merge\"\nci = \"optional\"\n",
        &[("GH_TOKEN", TOKEN), ("FJ_TOKEN", "forgejo-token-abcdefgh")],
    )
    .unwrap_or_else(|issues| panic!("{issues:#?}"));
    let app = &config.engine.repo("app").unwrap().forge;
    assert_eq!(app.kind, ForgeKind::GitHub);
    assert_eq!(app.repo.as_deref(), Some("acme/app"));
    assert_eq!(app.token_env.as_deref(), Some("GH_TOKEN"));
    assert_eq!(app.merge_style, MergeStyle::Squash);
    assert_eq!(app.ci, CiPolicy::Required, "required by default on a hosted forge");
    let web = &config.engine.repo("web").unwrap().forge;
    assert_eq!(web.kind, ForgeKind::Gitea);
    assert_eq!(web.api_url.as_deref(), Some("https://git.example.com/api/v1"));
    assert_eq!(web.merge_style, MergeStyle::Merge);
    assert_eq!(web.ci, CiPolicy::Optional);
    assert_eq!(gates(&config, "deploy_staging"), ["mergeable", "ci_green"]);
    assert!(!format!("{config:?}").contains(TOKEN), "the token is not in the settings");
}

// Without a hosted forge the pipeline stays as written; a custom pipeline may place `ci_green`
// itself and it is not added twice.
#[test]
fn ci_gate_only_for_hosted_forges_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("project")).unwrap();
    let bare = dir.path().join("bare.git");
    std::fs::create_dir_all(bare.join("objects")).unwrap();
    std::fs::write(bare.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    let config = load_text(
        dir.path(),
        "[server]\ndata_dir = \"data\"\n[[repos]]\nname = \"app\"\nurl = \"bare.git\"\nprefix = \"APP\"\n",
        &[],
    )
    .unwrap_or_else(|issues| panic!("{issues:#?}"));
    assert_eq!(config.engine.repo("app").unwrap().forge.kind, ForgeKind::Local);
    assert_eq!(gates(&config, "deploy_staging"), ["mergeable"]);

    let config = load_text(
        dir.path(),
        "[server]\ndata_dir = \"data\"\n\
         [[repos]]\nname = \"app\"\nurl = \"https://github.com/acme/app.git\"\nprefix = \"APP\"\n\
         forge = \"github\"\nforge_repo = \"acme/app\"\nforge_token_env = \"GH_TOKEN\"\n\
         [[pipeline.stages]]\nname = \"ship\"\nactor = { kind = \"none\" }\ngates = [\"ci_green\", \"mergeable\"]\n\
         [[pipeline.stages]]\nname = \"deploy\"\nactor = { kind = \"deploy\" }\n",
        &[("GH_TOKEN", TOKEN)],
    )
    .unwrap_or_else(|issues| panic!("{issues:#?}"));
    assert_eq!(gates(&config, "ship"), ["ci_green", "mergeable"]);
    assert!(config.engine.pipeline.stage("ship").unwrap().gates.contains(&GateSpec::CiGreen));
}

// Every mistake in the forge keys names its key and a fix, and never shows a token.
#[test]
fn forge_key_mistakes_are_reported_with_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("project/.git")).unwrap();
    let found = load_text(
        dir.path(),
        "[server]\ndata_dir = \"data\"\n\n\
         [[repos]]\nname = \"a\"\nurl = \"https://h/a.git\"\nprefix = \"A\"\nforge = \"gitlab\"\n\n\
         [[repos]]\nname = \"b\"\nurl = \"https://h/b.git\"\nprefix = \"B\"\nforge = \"gitea\"\nforge_repo = \"nope\"\n\
         forge_token_env = \"UNSET_TOKEN\"\n\n\
         [[repos]]\nname = \"c\"\nurl = \"https://h/c.git\"\nprefix = \"C\"\nforge = \"github\"\nforge_repo = \"o/c\"\n\
         forge_api_url = \"http://ghe.example.com/api/v3\"\nforge_token_env = \"GH_TOKEN\"\nmerge_style = \"rebase\"\n\n\
         [[repos]]\nname = \"d\"\nurl = \"https://h/d.git\"\nprefix = \"D\"\nforge = \"github\"\nforge_token_env = \"GH_TOKEN\"\n\n\
         [[repos]]\nname = \"e\"\nurl = \"https://h/e.git\"\nprefix = \"E\"\nforge_repo = \"o/e\"\nci = \"optional\"\n\n\
         [[repos]]\nname = \"f\"\nurl = \"https://h/f.git\"\nprefix = \"F\"\nforge = \"github\"\nforge_repo = \"o/f\"\n",
        &[("GH_TOKEN", TOKEN)],
    )
    .expect_err("issues");
    let has = |key: &str, words: &str| {
        let issue = found.iter().find(|i| i.key == key).unwrap_or_else(|| panic!("no issue for {key}: {found:#?}"));
        assert!(!issue.fix.is_empty(), "{issue:?}");
        assert!(issue.to_string().contains(words), "{key}: `{words}` not in {issue}");
    };
    has("repos[0].forge", "gitlab");
    has("repos[1].forge_repo", "owner/name");
    has("repos[1].forge_api_url", "api/v1");
    has("repos[1].forge_token_env", "UNSET_TOKEN");
    has("repos[2].forge_api_url", "http");
    has("repos[2].merge_style", "merge_style");
    has("repos[3].forge_repo", "owner/name");
    has("repos[4].forge_repo", "hosted forge");
    has("repos[4].ci", "hosted forge");
    has("repos[5].forge_token_env", "forge_token_env");
    assert!(!found.iter().any(|i| i.to_string().contains(TOKEN)), "a token was shown: {found:#?}");
}

// A hosted forge needs the repository's `url`.
#[test]
fn hosted_forge_needs_url() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("project/.git/refs/heads")).unwrap();
    std::fs::write(dir.path().join("project/.git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(dir.path().join("project/.git/refs/heads/main"), "0000000000000000000000000000000000000001\n")
        .unwrap();
    let found = load_text(
        dir.path(),
        "[server]\ndata_dir = \"data\"\n[[repos]]\nname = \"a\"\npath = \"project\"\nprefix = \"A\"\nforge = \"github\"\n\
         forge_repo = \"o/a\"\nforge_token_env = \"GH_TOKEN\"\n",
        &[("GH_TOKEN", TOKEN)],
    )
    .expect_err("issues");
    let issue = found.iter().find(|i| i.key == "repos[0].url").unwrap_or_else(|| panic!("{found:#?}"));
    assert!(issue.fix.contains("url"), "{issue}");
}
