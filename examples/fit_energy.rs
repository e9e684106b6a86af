//! Fit a planar flow to a Rezende–Mohamed energy by reverse KL and report KL(q‖π).
//!
//! ```sh
//! cargo run --release --example fit_energy -- --energy u1 --layers 32 --steps 20000 --batch 1024 --seed 1
//! ```
//!
//! Options: `--energy u1|u2|u3|u4` (U2–U4 with the envelope), `--layers K` (2, 4, 8, 16, 32, 64),
//! `--steps S`, `--batch B`, `--seed S`, `--lr LR` (default 6e−3), `--anneal N` (β_t = min(1, β₀ + t/N); 0 for
//! none), `--beta0 B0`, `--lr-final F` (cosine decay of the learning rate to F·lr; 1 = constant),
//! `--init A` (initialisation scale, 1 = normflows'), `--png FILE` (default `fit_<energy>.png`; `none` to skip),
//! `--export FILE.rs` (the trained parameters as a Rust `const`). Prints a progress line every
//! 500 steps and a final JSON line; `kl` is estimated from 65536 fresh samples with the
//! quadrature log Z.

#[path = "common/png.rs"]
mod png;

use flowcore::energy::{Energy, RmEnergy, RmKind};
use flowcore::loss::{Trainer, is_diagnostics};
use flowcore::optim::init_random_scaled;
use flowcore::{Flow, SeedableRng, Xoshiro256PlusPlus};
use std::time::Instant;

struct Args {
    energy: String,
    layers: usize,
    steps: u64,
    batch: usize,
    seed: u64,
    lr: f64,
    anneal: u64,
    beta0: f64,
    init: f64,
    decay: f64,
    png: String,
    export: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        energy: "u1".into(),
        layers: 32,
        steps: 20000,
        batch: 1024,
        seed: 1,
        lr: f64::NAN,
        anneal: u64::MAX,
        beta0: 0.01,
        init: 1.0,
        decay: 1.0,
        png: String::new(),
        export: None,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).ok_or(format!("missing value for {}", v[i]))?;
        let bad = format!("bad value for {}: {val}", v[i]);
        match v[i].as_str() {
            "--energy" => a.energy = val.to_lowercase(),
            "--layers" | "--k" => a.layers = val.parse().map_err(|_| bad.clone())?,
            "--steps" => a.steps = val.parse().map_err(|_| bad.clone())?,
            "--batch" => a.batch = val.parse().map_err(|_| bad.clone())?,
            "--seed" => a.seed = val.parse().map_err(|_| bad.clone())?,
            "--lr" => a.lr = val.parse().map_err(|_| bad.clone())?,
            "--anneal" => a.anneal = val.parse().map_err(|_| bad.clone())?,
            "--beta0" => a.beta0 = val.parse().map_err(|_| bad.clone())?,
            "--lr-final" => a.decay = val.parse().map_err(|_| bad.clone())?,
            "--init" => a.init = val.parse().map_err(|_| bad.clone())?,
            "--png" => a.png = val.clone(),
            "--export" => a.export = Some(val.clone()),
            o => return Err(format!("unknown option {o}")),
        }
        i += 2;
    }
    if a.png.is_empty() {
        a.png = format!("fit_{}.png", a.energy);
    }
    if a.lr.is_nan() {
        a.lr = 6e-3;
    }
    if a.anneal == u64::MAX {
        // Default recipe: annealing for the two-mode U1 (plain reverse KL finds one lobe).
        a.anneal = if a.energy == "u1" { a.steps / 2 } else { 0 };
    }
    Ok(a)
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fit_energy: {e}");
            std::process::exit(2);
        }
    };
    let kind = match a.energy.as_str() {
        "u1" => RmKind::U1,
        "u2" => RmKind::U2,
        "u3" => RmKind::U3,
        "u4" => RmKind::U4,
        o => {
            eprintln!("fit_energy: unknown energy {o} (u1|u2|u3|u4)");
            std::process::exit(2);
        }
    };
    match a.layers {
        2 => run::<2, 10>(&a, kind),
        4 => run::<4, 20>(&a, kind),
        8 => run::<8, 40>(&a, kind),
        16 => run::<16, 80>(&a, kind),
        32 => run::<32, 160>(&a, kind),
        64 => run::<64, 320>(&a, kind),
        k => {
            eprintln!("fit_energy: --layers must be one of 2, 4, 8, 16, 32, 64 (got {k})");
            std::process::exit(2);
        }
    }
}

fn run<const K: usize, const P: usize>(a: &Args, kind: RmKind) {
    let target = RmEnergy::new(kind);
    let log_z = target.log_z().expect("proper energies have a log Z");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(a.seed);
    let flow: Flow<f32, 2, K> = init_random_scaled(&mut rng, a.init);
    let mut t = Trainer::<f32, 2, K, P, _, _>::new(flow, a.lr, rng);
    t.anneal_steps = a.anneal;
    t.beta0 = a.beta0;
    let start = Instant::now();
    let every = 500.max(a.steps / 20);
    for step in 0..a.steps {
        t.diagnostics = (step + 1) % every == 0 || step + 1 == a.steps;
        if a.decay != 1.0 {
            // Cosine decay of the learning rate from lr to lr·decay over the run.
            let f = step as f64 / a.steps as f64;
            let m = a.decay + (1.0 - a.decay) * 0.5 * (1.0 + (std::f64::consts::PI * f).cos());
            t.adam.lr = (a.lr * m) as f32;
        }
        match t.step(&target, a.batch) {
            Ok(r) => {
                if t.diagnostics {
                    eprintln!(
                        "step {:>6}  beta {:.3}  loss {:>9.5}  kl(batch) {:>8.5}  ess {:.3}  {:.1}s",
                        step + 1,
                        t.beta(),
                        r.loss,
                        r.is.kl(log_z),
                        r.is.ess_fraction(),
                        start.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) => eprintln!("step {} rejected: {e}", step + 1),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut eval_rng = Xoshiro256PlusPlus::seed_from_u64(a.seed ^ 0x5EED_0FE7);
    let (is, bad) = is_diagnostics(&t.flow, &target, &mut eval_rng, 65536);
    if bad > 0 {
        eprintln!("{bad} evaluation samples had a non-finite weight");
    }
    if a.png != "none" {
        match write_png(&a.png, &t.flow, &target) {
            Ok(()) => eprintln!("wrote {}", a.png),
            Err(e) => eprintln!("could not write {}: {e}", a.png),
        }
    }
    if let Some(path) = &a.export {
        let mut s = String::new();
        let _ = t.flow.write_rust_const("FLOW_PARAMS", &mut s);
        match std::fs::write(path, s) {
            Ok(()) => eprintln!("wrote {path}"),
            Err(e) => eprintln!("could not write {path}: {e}"),
        }
    }
    println!(
        "{{\"energy\": \"{}\", \"layers\": {}, \"steps\": {}, \"batch\": {}, \"seed\": {}, \"kl\": {:.6}, \"ess\": {:.4}, \"log_z\": {:.7}, \"log_z_is\": {:.6}, \"rejected\": {}, \"seconds\": {:.2}}}",
        a.energy,
        K,
        a.steps,
        a.batch,
        a.seed,
        is.kl(log_z),
        is.ess_fraction(),
        log_z,
        is.log_z(),
        t.rejected,
        seconds
    );
}

/// Target density beside the fitted one on [−4, 4]², each scaled to its maximum.
fn write_png<const K: usize>(
    path: &str,
    flow: &Flow<f32, 2, K>,
    target: &RmEnergy,
) -> std::io::Result<()> {
    const N: usize = 256;
    let cell = |i: usize| -4.0 + 8.0 * (i as f64 + 0.5) / N as f64;
    let mut p = vec![0.0f64; N * N];
    let mut q = vec![0.0f64; N * N];
    for r in 0..N {
        for c in 0..N {
            let (x, y) = (cell(c), -cell(r));
            p[r * N + c] = (-Energy::<f64, 2>::energy(target, &[x, y])).exp();
            q[r * N + c] = flow
                .log_prob(&[x as f32, y as f32])
                .map_or(0.0, |l| (l as f64).exp());
        }
    }
    let (pm, qm) = (
        p.iter().cloned().fold(0.0, f64::max),
        q.iter().cloned().fold(0.0, f64::max),
    );
    let w = 2 * N + 8;
    let mut rgb = vec![255u8; w * N * 3];
    for r in 0..N {
        for c in 0..N {
            let a = png::colour(p[r * N + c] / pm);
            let b = png::colour(q[r * N + c] / qm);
            rgb[(r * w + c) * 3..(r * w + c) * 3 + 3].copy_from_slice(&a);
            rgb[(r * w + N + 8 + c) * 3..(r * w + N + 8 + c) * 3 + 3].copy_from_slice(&b);
        }
    }
    std::fs::write(path, png::encode_rgb(w as u32, N as u32, &rgb))
}
