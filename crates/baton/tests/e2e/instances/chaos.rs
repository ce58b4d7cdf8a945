//! The multi-instance test's trouble, drawn from a seed: several rounds of SIGKILL and restart of a
//! random running instance (down for less or more than the heartbeat grace period) and one SIGSTOP
//! of a random running instance past the grace period, then SIGCONT. Each is carried out when the
//! test's loop reaches its moment; what was done, to whom and when is kept for the checks (which
//! instance may legitimately have been declared dead) and printed with the summary.

use super::fleet::Instance;
use crate::crash::chaos::Rng;
use crate::crash::witness;
use crate::support::Env;

/// SIGKILL-and-restart rounds: uniform in this range.
const KILL_ROUNDS: (u64, u64) = (3, 5);
/// When the trouble happens, in ms after the instances start: uniform in this window, which the
/// pipeline of sixty tickets outlasts.
const WINDOW_MS: (u64, u64) = (5_000, 100_000);

/// How long a kill aimed at a deploy waits for one to run before it takes a random instance.
const DEPLOY_WAIT_MS: u64 = 30_000;

/// One thing done to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// SIGKILL, then a restart `down_ms` later; `in_deploy`: aimed at an instance while its deploy
    /// command runs (the instance that takes its job over must not deploy again).
    Kill { down_ms: u64, in_deploy: bool },
    /// SIGSTOP, then SIGCONT `for_ms` later.
    Freeze { for_ms: u64 },
}

/// What happened to one instance, with times in ms since the start.
#[derive(Debug, Clone)]
pub struct Done {
    pub instance: &'static str,
    pub act: Act,
    pub at_ms: u64,
    /// When it was restarted or thawed; `None` until then.
    pub back_ms: Option<u64>,
}

/// The drawn schedule and its progress.
pub struct Chaos {
    rng: Rng,
    /// (moment, act) not yet carried out, earliest first.
    planned: Vec<(u64, Act)>,
    pub done: Vec<Done>,
    /// Whether the kill aimed at a deploy found one running.
    pub hit_deploy: bool,
}

impl Chaos {
    pub fn draw(mut rng: Rng, grace_secs: u64) -> Chaos {
        let grace_ms = grace_secs * 1000;
        let mut planned = Vec::new();
        for round in 0..rng.between(KILL_ROUNDS) {
            // Down for less than the grace period (the instance adopts its own jobs when it comes
            // back) or well past it (another instance takes them over first). The first round
            // waits for a deploy and stays down past the grace period.
            let in_deploy = round == 0;
            let down_ms = if in_deploy {
                rng.between((grace_ms + 2_000, 2 * grace_ms + 2_000))
            } else {
                rng.between((500, 2 * grace_ms + 2_000))
            };
            planned.push((rng.between(WINDOW_MS), Act::Kill { down_ms, in_deploy }));
        }
        let for_ms = grace_ms + rng.between((2_000, 4_000));
        planned.push((rng.between(WINDOW_MS), Act::Freeze { for_ms }));
        planned.sort_by_key(|(at, _)| *at);
        Chaos { rng, planned, done: Vec::new(), hit_deploy: false }
    }

    /// The schedule, for the log printed at the start.
    pub fn describe(&self) -> String {
        let list: Vec<String> = self.planned.iter().map(|(at, act)| format!("{act:?} at {at} ms")).collect();
        list.join(", ")
    }

    /// Whether everything planned was done and every instance is back.
    pub fn finished(&self) -> bool {
        self.planned.is_empty() && self.done.iter().all(|d| d.back_ms.is_some())
    }

    /// A random running instance (not frozen, listening), for an API call.
    pub fn pick(&mut self, env: &Env, instances: &mut [Instance]) -> Option<(&'static str, String)> {
        let ready: Vec<(&'static str, String)> =
            instances.iter_mut().filter_map(|i| i.address(env).map(|addr| (i.name, addr))).collect();
        self.rng.pick(&ready).cloned()
    }

    /// Carries out what is due at `now_ms`: restarts and thaws first, then the next planned act on
    /// a random running instance, as long as another one keeps running.
    pub fn step(&mut self, env: &Env, instances: &mut [Instance], now_ms: u64) {
        for done in self.done.iter_mut().filter(|d| d.back_ms.is_none()) {
            let instance = instances.iter_mut().find(|i| i.name == done.instance).unwrap();
            match done.act {
                Act::Kill { down_ms, .. } if now_ms >= done.at_ms + down_ms => instance.start(env),
                Act::Freeze { for_ms } if now_ms >= done.at_ms + for_ms => instance.thaw(),
                _ => continue,
            }
            done.back_ms = Some(now_ms);
        }
        let Some(&(at_ms, act)) = self.planned.first() else { return };
        let running: Vec<usize> = (0..instances.len()).filter(|&i| instances[i].is_running()).collect();
        if now_ms < at_ms || running.len() < 2 {
            return;
        }
        let target = match act {
            Act::Kill { in_deploy: true, .. } => {
                let deploying = deploying(env);
                let aimed: Vec<usize> =
                    running.iter().copied().filter(|&i| deploying.iter().any(|d| d == instances[i].name)).collect();
                match self.rng.pick(&aimed) {
                    Some(&i) => {
                        self.hit_deploy = true;
                        i
                    }
                    None if now_ms < at_ms + DEPLOY_WAIT_MS => return,
                    None => *self.rng.pick(&running).unwrap(),
                }
            }
            _ => *self.rng.pick(&running).unwrap(),
        };
        let instance = &mut instances[target];
        match act {
            Act::Kill { .. } => instance.kill(),
            Act::Freeze { .. } => instance.freeze(),
        }
        self.planned.remove(0);
        self.done.push(Done { instance: instance.name, act, at_ms: now_ms, back_ms: None });
    }

    /// Whether the test silenced `instance` (killed or froze it) at some moment: a declaration of
    /// its death has a cause the test knows.
    pub fn silenced(&self, instance: &str) -> bool {
        self.done.iter().any(|d| d.instance == instance)
    }

    /// One line per act, for the summary.
    pub fn log(&self) -> String {
        let lines: Vec<String> = self
            .done
            .iter()
            .map(|d| {
                let back = d.back_ms.map_or("not yet".to_string(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
                format!("  {:>6.1} s  {} {:?}, back at {back}", d.at_ms as f64 / 1000.0, d.instance, d.act)
            })
            .collect();
        lines.join("\n")
    }
}

/// The instances running a deploy command now: a start line in a repository's deploy witness log
/// without its end line, run in a worktree under `data-<instance>/`.
fn deploying(env: &Env) -> Vec<String> {
    let mut running: Vec<(String, String)> = Vec::new();
    for (repo, _) in super::REPOS {
        let log = std::fs::read_to_string(env.root.join("witness").join(repo).join(witness::DEPLOYS_LOG));
        for line in log.unwrap_or_default().lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match (fields.first(), fields.get(2), fields.get(6)) {
                (Some(&"start"), Some(pid), Some(dir)) => {
                    if let Some(instance) = super::instance_of(dir) {
                        running.push((pid.to_string(), instance.to_string()));
                    }
                }
                (Some(&"end"), Some(pid), _) => running.retain(|(p, _)| p != pid),
                _ => {}
            }
        }
    }
    running.into_iter().map(|(_, instance)| instance).collect()
}
