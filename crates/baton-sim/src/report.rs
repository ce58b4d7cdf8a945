//! What a run reports: the counts of one or many seeds, and a failing seed with how to reproduce
//! it and its last steps.

use crate::check::Violation;
use std::collections::BTreeMap;
use std::fmt;

/// Counts from one or many seeds.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub seeds: u64,
    pub steps: u64,
    pub kills: u64,
    pub faults: u64,
    pub tasks: u64,
    pub checks: u64,
    pub merges: u64,
    /// Merges of a merge-queue batch's one commit (several changes at once).
    pub batch_merges: u64,
    pub done: u64,
    pub cancelled: u64,
    pub blocked: u64,
    pub bursts: u64,
    pub results_applied: u64,
    pub results_suppressed: u64,
    pub duplicates: u64,
    pub engine_errors: u64,
    /// Seeds whose repositories ran the post-deploy monitor.
    pub monitored_seeds: u64,
    /// Deploys the monitor found degraded (tasks that got an incident).
    pub degraded: u64,
    /// Freezes opened, and reverts that landed.
    pub freezes: u64,
    pub reverts_done: u64,
    /// Kills that left a degraded deploy's consequences half carried out (the effect begun and not
    /// finished).
    pub kills_mid_effect: u64,
    /// Seeds whose store ran at READ COMMITTED, the lock waits there, and the calls failed
    /// `Busy` (a deadlock or a lock timeout).
    pub read_committed_seeds: u64,
    /// Jobs the second instance of a READ COMMITTED world claimed.
    pub peer_claims: u64,
    /// Times the second instance's process was stopped and later ran on.
    pub peer_stops: u64,
    pub lock_waits: u64,
    pub lock_busy: u64,
    /// Seeds that hit each known engine bug (tolerated).
    pub known_bugs: BTreeMap<String, u64>,
    /// First seed that hit each known engine bug.
    pub known_bug_seeds: BTreeMap<String, u64>,
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        self.seeds += other.seeds;
        self.steps += other.steps;
        self.kills += other.kills;
        self.faults += other.faults;
        self.tasks += other.tasks;
        self.checks += other.checks;
        self.merges += other.merges;
        self.batch_merges += other.batch_merges;
        self.done += other.done;
        self.cancelled += other.cancelled;
        self.blocked += other.blocked;
        self.bursts += other.bursts;
        self.results_applied += other.results_applied;
        self.results_suppressed += other.results_suppressed;
        self.duplicates += other.duplicates;
        self.engine_errors += other.engine_errors;
        self.monitored_seeds += other.monitored_seeds;
        self.degraded += other.degraded;
        self.freezes += other.freezes;
        self.reverts_done += other.reverts_done;
        self.kills_mid_effect += other.kills_mid_effect;
        self.read_committed_seeds += other.read_committed_seeds;
        self.peer_claims += other.peer_claims;
        self.peer_stops += other.peer_stops;
        self.lock_waits += other.lock_waits;
        self.lock_busy += other.lock_busy;
        for (kind, n) in &other.known_bugs {
            *self.known_bugs.entry(kind.clone()).or_insert(0) += n;
        }
        for (kind, seed) in &other.known_bug_seeds {
            self.known_bug_seeds.entry(kind.clone()).or_insert(*seed);
        }
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seeds {} · steps {} · kills {} · faults injected {} · tasks {} · invariant checks {}",
            self.seeds, self.steps, self.kills, self.faults, self.tasks, self.checks
        )?;
        writeln!(
            f,
            "tasks done {} · cancelled {} · blocked {} · merges {} (batches {}) · concurrent bursts {} · results applied {} · suppressed {} · duplicates {} · engine errors {}",
            self.done,
            self.cancelled,
            self.blocked,
            self.merges,
            self.batch_merges,
            self.bursts,
            self.results_applied,
            self.results_suppressed,
            self.duplicates,
            self.engine_errors
        )?;
        writeln!(
            f,
            "monitored seeds {} · deploys degraded {} · freezes {} · reverts landed {} · kills mid-effect {}",
            self.monitored_seeds, self.degraded, self.freezes, self.reverts_done, self.kills_mid_effect
        )?;
        writeln!(
            f,
            "read committed seeds {} · claims by a second instance {} · second instance stopped {} · lock waits {} · calls failed busy {}",
            self.read_committed_seeds, self.peer_claims, self.peer_stops, self.lock_waits, self.lock_busy
        )?;
        if self.known_bugs.is_empty() {
            write!(f, "known engine bugs hit: none")
        } else {
            let hits: Vec<String> = self
                .known_bugs
                .iter()
                .map(|(kind, n)| {
                    let seed = self.known_bug_seeds.get(kind).copied().unwrap_or_default();
                    format!("{kind} in {n} seeds (e.g. --seed {seed})")
                })
                .collect();
            write!(f, "known engine bugs hit (tolerated): {}", hits.join("; "))
        }
    }
}

/// A seed that broke an invariant.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    /// The arguments of `cargo xtask sim` that replay it: the seed, and the run's length and
    /// isolation when they are not the defaults.
    pub replay: String,
    pub step: u64,
    pub violations: Vec<Violation>,
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} broke an invariant at step {}:", self.seed, self.step)?;
        for violation in &self.violations {
            writeln!(f, "  {violation}")?;
        }
        writeln!(f, "reproduce: cargo xtask sim {}", self.replay)?;
        writeln!(f, "last {} steps:", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}
