//! `baton-sim [--seeds N] [--first S] [--seed S] [--steps N] [--tasks MIN-MAX] [--strict] [--trace] [--mutate M] [--skip-recover]
//! [--isolation rc|serial|mixed]`: runs the simulation and
//! prints counts and seeds per second; a failing seed prints how to reproduce it and its trace.
//!
//! Exit codes: 0 all seeds passed, 1 a seed broke an invariant, 2 bad arguments.

use baton_sim::{Config, IsolationMix, Mutation, sweep};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str =
    "usage: baton-sim [--seeds N] [--first S] [--seed S] [--steps N] [--tasks MIN-MAX] [--strict] [--trace] [--mutate M] [--skip-recover] [--isolation I]
  --seeds N   run N seeds (default 1000) starting at --first (default 0)
  --seed S    run only seed S (to reproduce a failure)
  --steps N   steps per seed before draining (default 400)
  --tasks MIN-MAX  tasks per seed, drawn between the two (default 3-6; more tasks form more batches)
  --strict    fail on known engine bugs instead of counting them
  --trace     print every step as it happens
  --mutate M  break one store rule on purpose (SkipVersionCas, SkipJobFlipGuard, SkipAllAdvanceGuards,
              KeepLeasesOnRelease, InboxSurvivesFailure, RequeueNothing, ForgetKeptJob; at READ COMMITTED
              ClaimWithoutLock, LeaseWithoutLock): the run must then fail
  --skip-recover  restarts skip Engine::recover (the run must then fail)
  --isolation I   the store's isolation: serial (SQLite's), rc (PostgreSQL's READ COMMITTED) or
              mixed (default: a seeded quarter of the seeds at rc)";

struct Args {
    first: u64,
    count: u64,
    steps: u32,
    tasks: (u32, u32),
    strict: bool,
    echo: bool,
    mutation: Mutation,
    skip_recover: bool,
    isolation: IsolationMix,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        first: 0,
        count: 1000,
        steps: 400,
        tasks: (Config::sweep(0).tasks_min, Config::sweep(0).tasks_max),
        strict: false,
        echo: false,
        mutation: Mutation::None,
        skip_recover: false,
        isolation: IsolationMix::Mixed,
    };
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| -> Result<u64, String> {
            let text = args.get(i + 1).ok_or_else(|| format!("{} needs a number", args[i]))?;
            text.parse().map_err(|_| format!("{}: `{text}` is not a number", args[i]))
        };
        match args[i].as_str() {
            "--seeds" => parsed.count = value(i)?,
            "--first" => parsed.first = value(i)?,
            "--seed" => {
                parsed.first = value(i)?;
                parsed.count = 1;
            }
            "--steps" => parsed.steps = u32::try_from(value(i)?).map_err(|_| "--steps is too large".to_string())?,
            "--tasks" => {
                let text = args.get(i + 1).ok_or("--tasks needs MIN-MAX, such as 8-12")?;
                parsed.tasks = parse_tasks(text)?;
            }
            "--strict" => {
                parsed.strict = true;
                i += 1;
                continue;
            }
            "--skip-recover" => {
                parsed.skip_recover = true;
                i += 1;
                continue;
            }
            "--mutate" => {
                let name = args.get(i + 1).ok_or("--mutate needs a name")?;
                parsed.mutation = Mutation::parse(name).ok_or_else(|| {
                    let names: Vec<String> = Mutation::ALL.iter().map(|m| format!("{m:?}")).collect();
                    format!("unknown mutation `{name}`; one of {}", names.join(", "))
                })?;
            }
            "--isolation" => {
                let name = args.get(i + 1).ok_or("--isolation needs rc, serial or mixed")?;
                parsed.isolation = IsolationMix::parse(name)
                    .ok_or_else(|| format!("unknown isolation `{name}`; one of rc, serial, mixed"))?;
            }
            "--trace" => {
                parsed.echo = true;
                i += 1;
                continue;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
        i += 2;
    }
    Ok(parsed)
}

/// `MIN-MAX` (or one number for both), each at least 1 and MIN at most MAX.
fn parse_tasks(text: &str) -> Result<(u32, u32), String> {
    let (min, max) = text.split_once('-').unwrap_or((text, text));
    let number = |part: &str| part.trim().parse::<u32>().ok().filter(|n| (1..=64).contains(n));
    match (number(min), number(max)) {
        (Some(min), Some(max)) if min <= max => Ok((min, max)),
        _ => Err(format!("--tasks: `{text}` is not MIN-MAX with 1 <= MIN <= MAX <= 64, such as 8-12")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("baton-sim: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let base = Config {
        steps_max: args.steps,
        tasks_min: args.tasks.0,
        tasks_max: args.tasks.1,
        tolerate_known_bugs: !args.strict,
        echo: args.echo,
        mutation: args.mutation,
        skip_recover: args.skip_recover,
        isolation: args.isolation,
        ..Config::sweep(args.first)
    };
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    #[allow(clippy::disallowed_methods)] // seeds per second are wall time
    let started = Instant::now();
    match sweep(args.first, args.count, &base) {
        Ok(totals) => {
            let secs = started.elapsed().as_secs_f64();
            println!("{totals}");
            println!(
                "{:.0} seeds/s ({build} build, {:.2} s for seeds {}..{})",
                totals.seeds as f64 / secs.max(1e-9),
                secs,
                args.first,
                args.first + args.count
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}
