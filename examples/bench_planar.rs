//! Throughput of the batched kernels, in the peers' unit (ns per point per layer), one JSON line
//! per kernel and path:
//!
//! ```sh
//! cargo run --release --example bench_planar -- --d 2 --k 32 --n 65536 --dtype f32 [--threads 1] [--reps 15] [--scalar 0]
//! RUSTFLAGS="-C target-cpu=native" cargo run --release --example bench_planar -- --d 16 --dtype f64
//! ```
//!
//! Kernels: `forward`, `forward_log_det`, `inverse` (with log-det), `log_prob` (sampler
//! direction, via the inverse), `log_prob_normalizing`, `sample`; paths `simd` (the `*_batch`
//! API over `[[T; D]]`), `simd_soa` (forward+log-det on structure-of-arrays chunks) and `scalar`
//! (the per-point reference). Parameters drawn as in the peers' script (`bench_planar.py`,
//! `fwd_params`): `u, w ~ N(0, 0.25/D)`, `b ~ N(0, 0.01)`, `z ~ N(0, I)`. The figure is the
//! median over `--reps` timed repetitions after 200 ms of warm-up (`ns_per_point_layer_min`: the
//! fastest repetition, less sensitive to other load on the machine). `--threads T > 1` needs the
//! `parallel` feature and times the `par_*` kernels on a T-thread rayon pool.
use flowcore::simd::{SimdLane, SimdReal};
use flowcore::{Flow, Lane, Planar, Real, SeedableRng, Xoshiro256PlusPlus};
use std::hint::black_box;
use std::time::Instant;

struct Args {
    d: usize,
    k: usize,
    n: usize,
    dtype: String,
    threads: usize,
    reps: usize,
    kernels: Vec<String>,
    scalar: bool,
}

fn parse() -> Args {
    let mut a = Args {
        d: 2,
        k: 32,
        n: 65536,
        dtype: "f32".into(),
        threads: 1,
        reps: 15,
        kernels: vec![],
        scalar: true,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < v.len() {
        let val = v[i + 1].clone();
        match v[i].as_str() {
            "--d" => a.d = val.parse().expect("--d"),
            "--k" => a.k = val.parse().expect("--k"),
            "--n" => a.n = val.parse().expect("--n"),
            "--dtype" => a.dtype = val,
            "--threads" => a.threads = val.parse().expect("--threads"),
            "--reps" => a.reps = val.parse().expect("--reps"),
            "--kernels" => a.kernels = val.split(',').map(String::from).collect(),
            "--scalar" => a.scalar = val != "0",
            o => panic!("unknown option {o}"),
        }
        i += 2;
    }
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// (median, min) seconds over `reps` runs after a warm-up of at least 200 ms (and at least one
/// call, at most 10 000). The warm-up is long so that a new thread pool runs at full width
/// before the timing starts: on the Zen 5 VM of 2026-12-05, a fresh 2-thread pool ran its
/// first ~20–60 ms on one core (why was not established: perhaps the scheduler starts the
/// second thread beside the first and moves it to the idle vCPU only later), so a kernel timed
/// first after the pool's creation showed no speed-up at N = 65536 (calls of 0.4 ms), and the
/// ones timed later showed 2×.
fn time<F: FnMut()>(reps: usize, mut f: F) -> (f64, f64) {
    let t0 = Instant::now();
    for _ in 0..10_000 {
        f();
        if t0.elapsed().as_secs_f64() >= 0.2 {
            break;
        }
    }
    let v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    (median(v), min)
}

fn run<T: Real + SimdReal, const D: usize, const K: usize>(a: &Args) {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut nrm = |s: f64| T::from_f64(flowcore::base::normal_pair(&mut r).0 * s);
    let sd = 0.5 / (D as f64).sqrt();
    let flow: Flow<T, D, K> = Flow::new(core::array::from_fn(|_| {
        let u = core::array::from_fn(|_| nrm(sd));
        let w = core::array::from_fn(|_| nrm(sd));
        Planar::new(u, w, nrm(0.1)).unwrap()
    }));
    let n = a.n;
    let z: Vec<[T; D]> = (0..n).map(|_| core::array::from_fn(|_| nrm(1.0))).collect();
    let mut x = vec![[T::ZERO; D]; n];
    let mut ld = vec![T::ZERO; n];
    flow.forward_log_det_batch(&z, &mut x, &mut ld).unwrap();
    let xs = x.clone();
    let mut zo = vec![[T::ZERO; D]; n];
    let mut out = vec![T::ZERO; n];
    let want = |k: &str| a.kernels.is_empty() || a.kernels.iter().any(|s| s == k);
    let emit = |kernel: &str, path: &str, (med, min): (f64, f64)| {
        let ns = |s: f64| s / (n * K) as f64 * 1e9;
        println!(
            "{{\"kernel\": \"{kernel}\", \"path\": \"{path}\", \"dtype\": \"{}\", \"d\": {D}, \"k\": {K}, \"n\": {n}, \"threads\": {}, \"ns_per_point_layer\": {:.4}, \"ns_per_point_layer_min\": {:.4}}}",
            a.dtype,
            a.threads,
            ns(med),
            ns(min)
        );
    };
    let reps = a.reps;
    let par = a.threads > 1;
    #[cfg(feature = "parallel")]
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .unwrap();
    macro_rules! go {
        ($seq:expr, $par:expr) => {{
            if par {
                #[cfg(feature = "parallel")]
                {
                    pool.install(|| time(reps, || $par))
                }
                #[cfg(not(feature = "parallel"))]
                {
                    panic!("--threads > 1 needs --features parallel")
                }
            } else {
                time(reps, || $seq)
            }
        }};
    }
    if want("forward") {
        let t = go!(
            flow.forward_batch(black_box(&z), &mut x).unwrap(),
            flow.par_forward_batch(black_box(&z), &mut x).unwrap()
        );
        emit("forward", "simd", t);
    }
    if want("forward_log_det") {
        let t = go!(
            flow.forward_log_det_batch(black_box(&z), &mut x, &mut ld)
                .unwrap(),
            flow.par_forward_log_det_batch(black_box(&z), &mut x, &mut ld)
                .unwrap()
        );
        emit("forward_log_det", "simd", t);
        if !par {
            let w = <T::Simd as Lane>::LANES;
            let mut soa: Vec<[T::Simd; D]> = z
                .chunks(w)
                .map(|c| {
                    core::array::from_fn(|i| {
                        T::Simd::from_fn(|j| c.get(j).map_or(T::ZERO, |p| p[i]))
                    })
                })
                .collect();
            let mut lds = vec![T::Simd::splat(T::ZERO); soa.len()];
            let orig = soa.clone();
            let t = time(reps, || {
                soa.copy_from_slice(&orig);
                flow.forward_log_det_soa(black_box(&mut soa), &mut lds)
                    .unwrap()
            });
            emit("forward_log_det", "simd_soa", t);
        }
    }
    if want("inverse") {
        let t = go!(
            assert_eq!(
                flow.inverse_batch(black_box(&xs), &mut zo, &mut ld)
                    .unwrap(),
                0
            ),
            assert_eq!(
                flow.par_inverse_batch(black_box(&xs), &mut zo, &mut ld)
                    .unwrap(),
                0
            )
        );
        emit("inverse", "simd", t);
    }
    if want("log_prob") {
        let t = go!(
            assert_eq!(flow.log_prob_batch(black_box(&xs), &mut out).unwrap(), 0),
            assert_eq!(
                flow.par_log_prob_batch(black_box(&xs), &mut out).unwrap(),
                0
            )
        );
        emit("log_prob", "simd", t);
    }
    if want("log_prob_normalizing") {
        let t = go!(
            flow.log_prob_normalizing_batch(black_box(&xs), &mut out)
                .unwrap(),
            flow.par_log_prob_normalizing_batch(black_box(&xs), &mut out)
                .unwrap()
        );
        emit("log_prob_normalizing", "simd", t);
    }
    if want("sample") && !par {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let t = time(reps, || {
            flow.sample_batch(&mut rng, &mut x, &mut out).unwrap()
        });
        emit("sample", "simd", t);
    }
    if par || !a.scalar {
        return;
    }
    // Scalar reference, per point (fewer repetitions: it is the slow path).
    let sreps = reps.min(5);
    if want("forward") {
        let t = time(sreps, || {
            for (p, q) in z.iter().zip(x.iter_mut()) {
                *q = flow.forward(black_box(p));
            }
        });
        emit("forward", "scalar", t);
    }
    if want("forward_log_det") {
        let t = time(sreps, || {
            for ((p, q), l) in z.iter().zip(x.iter_mut()).zip(ld.iter_mut()) {
                (*q, *l) = flow.forward_and_log_det(black_box(p));
            }
        });
        emit("forward_log_det", "scalar", t);
    }
    if want("inverse") {
        let t = time(sreps, || {
            for ((p, q), l) in xs.iter().zip(zo.iter_mut()).zip(ld.iter_mut()) {
                (*q, *l) = flow.inverse_and_log_det(black_box(p)).unwrap();
            }
        });
        emit("inverse", "scalar", t);
    }
    if want("log_prob") {
        let t = time(sreps, || {
            for (p, o) in xs.iter().zip(out.iter_mut()) {
                *o = flow.log_prob(black_box(p)).unwrap();
            }
        });
        emit("log_prob", "scalar", t);
    }
    if want("log_prob_normalizing") {
        let t = time(sreps, || {
            for (p, o) in xs.iter().zip(out.iter_mut()) {
                *o = flow.log_prob_normalizing(black_box(p));
            }
        });
        emit("log_prob_normalizing", "scalar", t);
    }
    if want("sample") {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let t = time(sreps, || {
            for (q, o) in x.iter_mut().zip(out.iter_mut()) {
                (*q, *o) = flow.sample(&mut rng);
            }
        });
        emit("sample", "scalar", t);
    }
}

macro_rules! dispatch {
    ($a:expr, $t:ty, [$($d:literal),*], [$($k:literal),*]) => {
        dispatch!(@d $a, $t, [$($d),*], [$($k),*])
    };
    (@d $a:expr, $t:ty, [$($d:literal),*], $ks:tt) => {
        match $a.d {
            $($d => dispatch!(@k $a, $t, $d, $ks),)*
            d => panic!("unsupported --d {d} (supported: {:?})", [$($d),*]),
        }
    };
    (@k $a:expr, $t:ty, $d:literal, [$($k:literal),*]) => {
        match $a.k {
            $($k => run::<$t, $d, $k>(&$a),)*
            k => panic!("unsupported --k {k} (supported: {:?})", [$($k),*]),
        }
    };
}

fn main() {
    let a = parse();
    match a.dtype.as_str() {
        "f32" => dispatch!(a, f32, [1, 2, 3, 5, 8, 16], [8, 32]),
        "f64" => dispatch!(a, f64, [1, 2, 3, 5, 8, 16], [8, 32]),
        o => panic!("--dtype must be f32 or f64, not {o}"),
    }
}
