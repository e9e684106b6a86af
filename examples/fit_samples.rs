//! Fit a planar flow to samples by forward KL (maximum likelihood), the flow used as the
//! normaliser (layers map data to the base), and report the held-out NLL.
//!
//! ```sh
//! cargo run --release --example fit_samples -- --data moons --layers 32 --steps 4000 --batch 512 --seed 1
//! ```
//!
//! `--data moons` (two moons, noise 0.1, centred) or `--data u1` (exact samples of
//! exp(−U1) by rejection from a Gaussian proposal). 2¹⁴ training and 2¹³ held-out points.
//! Prints progress and a final JSON line with the held-out NLL (nats per point); writes a PNG
//! with a histogram of the data beside the fitted density (`--png FILE`, default
//! `fit_samples_<data>.png`).

#[path = "common/png.rs"]
mod png;

use flowcore::base::{normal_pair, uniform_open0};
use flowcore::energy::{Energy, RmEnergy, RmKind};
use flowcore::grad::FlowGrad;
use flowcore::loss::{forward_kl_grad_simd, mean_nll};
use flowcore::optim::{Adam, init_random_scaled};
use flowcore::{Flow, Rng, SeedableRng, Xoshiro256PlusPlus};
use std::time::Instant;

const K: usize = 32;
const P: usize = K * 5;

fn moons<R: Rng>(rng: &mut R, n: usize) -> Vec<[f64; 2]> {
    (0..n)
        .map(|i| {
            let t = std::f64::consts::PI * uniform_open0(rng);
            let (a, b) = normal_pair(rng);
            let (x, y) = if i % 2 == 0 {
                (t.cos(), t.sin())
            } else {
                (1.0 - t.cos(), 0.5 - t.sin())
            };
            // Centre and scale to unit-ish spread.
            [(x + 0.1 * a - 0.5) * 1.5, (y + 0.1 * b - 0.25) * 1.5]
        })
        .collect()
}

fn u1_samples<R: Rng>(rng: &mut R, n: usize) -> Vec<[f64; 2]> {
    // Rejection from N(0, 2.5²·I): exp(−U1(x)) ≤ 1 ≤ M·N(x; 0, 2.5²)/… with M chosen from the
    // maximum of exp(−U1)/g over the plane (checked numerically below on a grid).
    let e = RmEnergy::new(RmKind::U1);
    let s = 2.5;
    let log_g = |x: &[f64; 2]| -0.5 * (x[0] * x[0] + x[1] * x[1]) / (s * s);
    let mut log_m = f64::NEG_INFINITY;
    for i in -200..=200 {
        for j in -200..=200 {
            let x = [i as f64 * 0.04, j as f64 * 0.04];
            log_m = log_m.max(-Energy::<f64, 2>::energy(&e, &x) - log_g(&x));
        }
    }
    log_m += 0.01;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (a, b) = normal_pair(rng);
        let x = [s * a, s * b];
        if uniform_open0(rng).ln() < -Energy::<f64, 2>::energy(&e, &x) - log_g(&x) - log_m {
            out.push(x);
        }
    }
    out
}

fn main() {
    let v: Vec<String> = std::env::args().skip(1).collect();
    let (mut data, mut steps, mut batch, mut seed, mut lr) =
        ("moons".to_string(), 4000u64, 512usize, 1u64, 5e-3f64);
    let mut png_path = String::new();
    let mut i = 0;
    while i + 1 < v.len() {
        let val = &v[i + 1];
        match v[i].as_str() {
            "--data" => data = val.clone(),
            "--steps" => steps = val.parse().expect("--steps S"),
            "--batch" => batch = val.parse().expect("--batch B"),
            "--seed" => seed = val.parse().expect("--seed S"),
            "--lr" => lr = val.parse().expect("--lr LR"),
            "--png" => png_path = val.clone(),
            "--layers" => assert_eq!(val, "32", "fit_samples is built for --layers 32"),
            o => {
                eprintln!("fit_samples: unknown option {o}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    if png_path.is_empty() {
        png_path = format!("fit_samples_{data}.png");
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let make_data = |rng: &mut Xoshiro256PlusPlus, n| match data.as_str() {
        "moons" => moons(rng, n),
        "u1" => u1_samples(rng, n),
        o => {
            eprintln!("fit_samples: unknown data {o} (moons|u1)");
            std::process::exit(2);
        }
    };
    let train: Vec<[f32; 2]> = make_data(&mut rng, 1 << 14)
        .iter()
        .map(|x| [x[0] as f32, x[1] as f32])
        .collect();
    let test: Vec<[f32; 2]> = make_data(&mut rng, 1 << 13)
        .iter()
        .map(|x| [x[0] as f32, x[1] as f32])
        .collect();
    let mut flow: Flow<f32, 2, K> = init_random_scaled(&mut rng, 0.5);
    let mut adam = Adam::<f32, P>::new(lr as f32);
    let start = Instant::now();
    let mut mb = vec![[0.0f32; 2]; batch];
    let mut g = FlowGrad::zero();
    for s in 0..steps {
        for m in mb.iter_mut() {
            *m = train[(rng.next_u64() % train.len() as u64) as usize];
        }
        // Cosine decay of the learning rate to 10 % over the run.
        let frac = s as f64 / steps as f64;
        adam.lr = (lr * (0.1 + 0.45 * (1.0 + (std::f64::consts::PI * frac).cos()))) as f32;
        match forward_kl_grad_simd(&flow, &mb, &mut g)
            .and_then(|l| adam.step(&mut flow, &g).map(|()| l))
        {
            Ok(l) => {
                if (s + 1) % 500 == 0 {
                    eprintln!(
                        "step {:>6}  nll(batch) {l:.4}  {:.1}s",
                        s + 1,
                        start.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) => eprintln!("step {} rejected: {e}", s + 1),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let train_nll = mean_nll(&flow, &train);
    let test_nll = mean_nll(&flow, &test);
    match write_png(&png_path, &flow, &train) {
        Ok(()) => eprintln!("wrote {png_path}"),
        Err(e) => eprintln!("could not write {png_path}: {e}"),
    }
    println!(
        "{{\"data\": \"{data}\", \"layers\": {K}, \"steps\": {steps}, \"batch\": {batch}, \"seed\": {seed}, \"train_nll\": {train_nll:.5}, \"test_nll\": {test_nll:.5}, \"seconds\": {seconds:.2}}}"
    );
}

fn write_png(path: &str, flow: &Flow<f32, 2, K>, data: &[[f32; 2]]) -> std::io::Result<()> {
    const N: usize = 200;
    let (lo, hi) = (-4.0f64, 4.0f64);
    let cell = |i: usize| lo + (hi - lo) * (i as f64 + 0.5) / N as f64;
    let mut hist = vec![0.0f64; N * N];
    for x in data {
        let c = ((x[0] as f64 - lo) / (hi - lo) * N as f64).floor();
        let r = ((hi - x[1] as f64) / (hi - lo) * N as f64).floor();
        if (0.0..N as f64).contains(&c) && (0.0..N as f64).contains(&r) {
            hist[r as usize * N + c as usize] += 1.0;
        }
    }
    let mut q = vec![0.0f64; N * N];
    for r in 0..N {
        for c in 0..N {
            q[r * N + c] =
                (flow.log_prob_normalizing(&[cell(c) as f32, -cell(r) as f32]) as f64).exp();
        }
    }
    let (hm, qm) = (
        hist.iter().cloned().fold(0.0, f64::max),
        q.iter().cloned().fold(0.0, f64::max),
    );
    let w = 2 * N + 8;
    let mut rgb = vec![255u8; w * N * 3];
    for r in 0..N {
        for c in 0..N {
            let a = png::colour(hist[r * N + c] / hm);
            let b = png::colour(q[r * N + c] / qm);
            rgb[(r * w + c) * 3..(r * w + c) * 3 + 3].copy_from_slice(&a);
            rgb[(r * w + N + 8 + c) * 3..(r * w + N + 8 + c) * 3 + 3].copy_from_slice(&b);
        }
    }
    std::fs::write(path, png::encode_rgb(w as u32, N as u32, &rgb))
}
