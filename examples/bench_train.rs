//! Time a whole reverse-KL training step on U1 (sample z, forward, loss, backward, Adam), as the
//! peer script does, and print one JSON line per configuration.
//!
//! ```sh
//! cargo run --release --example bench_train -- --batch 1024 --k 32 --dtype f32 --threads 1
//! cargo run --release --features parallel --example bench_train   # the grid B ∈ {1024, 8192}, f32/f64, 1–2 threads
//! ```
//!
//! With `--threads T > 1` (needs `--features parallel`) the step is
//! `par_reverse_kl_grad_parts` with the batch in T parts on a T-thread rayon pool: each part
//! draws from its own generator stream and the parts' sums are added in batch order, so the
//! run is bitwise reproducible and gives the same bits as the serial `reverse_kl_grad_parts`
//! with T parts. With one thread the step is the plain `reverse_kl_grad_simd_with` pass.
//! Reported: the median over 5 repeats of the mean time per step over ≈ 0.4 s of steps, after
//! a warm-up.

use flowcore::energy::{RmEnergy, RmKind};
use flowcore::grad::FlowGrad;
use flowcore::loss::reverse_kl_grad_simd_with;
use flowcore::optim::{Adam, init_random};
use flowcore::simd::SimdReal;
use flowcore::{Flow, SeedableRng, Xoshiro256PlusPlus};
use std::time::Instant;

fn main() {
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut batches = vec![1024usize, 8192];
    let mut ks = vec![32usize];
    let mut dtypes = vec!["f32".to_string(), "f64".to_string()];
    let mut threads = if cfg!(feature = "parallel") {
        vec![1usize, 2]
    } else {
        vec![1usize]
    };
    let mut i = 0;
    while i + 1 < v.len() {
        let val = &v[i + 1];
        match v[i].as_str() {
            "--batch" => batches = vec![val.parse().expect("--batch N")],
            "--k" | "--layers" => ks = vec![val.parse().expect("--k K")],
            "--dtype" => dtypes = vec![val.clone()],
            "--threads" => threads = vec![val.parse().expect("--threads T")],
            o => {
                eprintln!("bench_train: unknown option {o}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    for &b in &batches {
        for &k in &ks {
            for d in &dtypes {
                for &t in &threads {
                    let ms = match (d.as_str(), k) {
                        ("f32", 8) => bench::<f32, 8, 40>(b, t),
                        ("f32", 16) => bench::<f32, 16, 80>(b, t),
                        ("f32", 32) => bench::<f32, 32, 160>(b, t),
                        ("f32", 64) => bench::<f32, 64, 320>(b, t),
                        ("f64", 8) => bench::<f64, 8, 40>(b, t),
                        ("f64", 16) => bench::<f64, 16, 80>(b, t),
                        ("f64", 32) => bench::<f64, 32, 160>(b, t),
                        ("f64", 64) => bench::<f64, 64, 320>(b, t),
                        _ => {
                            eprintln!("bench_train: dtype f32|f64 and k in 8, 16, 32, 64");
                            std::process::exit(2);
                        }
                    };
                    println!(
                        "{{\"batch\": {b}, \"k\": {k}, \"dtype\": \"{d}\", \"threads\": {t}, \"ms_per_step\": {ms:.4}}}"
                    );
                }
            }
        }
    }
}

fn step<T: SimdReal + Send + Sync, const K: usize, const P: usize>(
    flow: &mut Flow<T, 2, K>,
    adam: &mut Adam<T, P>,
    rng: &mut Xoshiro256PlusPlus,
    batch: usize,
    threads: usize,
) {
    let e = RmEnergy::new(RmKind::U1);
    let mut g = FlowGrad::zero();
    if threads == 1 {
        reverse_kl_grad_simd_with(flow, &e, T::ONE, rng, batch, false, &mut g).expect("finite");
    } else {
        #[cfg(feature = "parallel")]
        flowcore::loss::par_reverse_kl_grad_parts(
            flow,
            &e,
            T::ONE,
            rng,
            batch,
            threads,
            false,
            &mut g,
        )
        .expect("finite");
        #[cfg(not(feature = "parallel"))]
        {
            eprintln!("bench_train: --threads > 1 needs --features parallel");
            std::process::exit(2);
        }
    }
    adam.step(flow, &g).expect("valid update");
}

fn bench<T: SimdReal + Send + Sync, const K: usize, const P: usize>(
    batch: usize,
    threads: usize,
) -> f64 {
    #[cfg(feature = "parallel")]
    {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("rayon pool");
        pool.install(|| bench_in::<T, K, P>(batch, threads))
    }
    #[cfg(not(feature = "parallel"))]
    bench_in::<T, K, P>(batch, threads)
}

fn bench_in<T: SimdReal + Send + Sync, const K: usize, const P: usize>(
    batch: usize,
    threads: usize,
) -> f64 {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut flow: Flow<T, 2, K> = init_random(&mut rng);
    let mut adam = Adam::<T, P>::new(T::from_f64(1e-3));
    for _ in 0..20 {
        step(&mut flow, &mut adam, &mut rng, batch, threads);
    }
    // Steps per repeat: about 0.4 s.
    let t0 = Instant::now();
    step(&mut flow, &mut adam, &mut rng, batch, threads);
    let one = t0.elapsed().as_secs_f64().max(1e-6);
    let n = ((0.4 / one) as usize).clamp(5, 5000);
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            step(&mut flow, &mut adam, &mut rng, batch, threads);
        }
        times.push(t.elapsed().as_secs_f64() * 1e3 / n as f64);
    }
    times.sort_by(f64::total_cmp);
    times[2]
}
