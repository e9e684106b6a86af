//! Criterion benches of the SIMD batched kernels vs the scalar reference: forward+log-det,
//! inverse and log_prob (sampler direction), D ∈ {2, 16}, K = 32, N = 65536, f32 and f64.
//! Throughput is reported per point-layer (elements = N·K). Kept short (10 samples, 2 s):
//! `cargo bench --bench simd`, and `RUSTFLAGS="-C target-cpu=native" cargo bench --bench simd`.
//! The JSON figures of the README come from `examples/bench_planar.rs`.
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flowcore::simd::SimdReal;
use flowcore::{Flow, Planar, Real, SeedableRng, Xoshiro256PlusPlus};
use std::hint::black_box;
use std::time::Duration;

const K: usize = 32;
const N: usize = 65536;

fn setup<T: Real, const D: usize>() -> (Flow<T, D, K>, Vec<[T; D]>) {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(0);
    let mut nrm = |s: f64| T::from_f64(flowcore::base::normal_pair(&mut r).0 * s);
    let sd = 0.5 / (D as f64).sqrt();
    let flow = Flow::new(core::array::from_fn(|_| {
        let u = core::array::from_fn(|_| nrm(sd));
        let w = core::array::from_fn(|_| nrm(sd));
        Planar::new(u, w, nrm(0.1)).unwrap()
    }));
    let z = (0..N).map(|_| core::array::from_fn(|_| nrm(1.0))).collect();
    (flow, z)
}

fn group<T: Real + SimdReal, const D: usize>(c: &mut Criterion, name: &str) {
    let (flow, z) = setup::<T, D>();
    let mut x = vec![[T::ZERO; D]; N];
    let mut ld = vec![T::ZERO; N];
    flow.forward_log_det_batch(&z, &mut x, &mut ld).unwrap();
    let xs = x.clone();
    let mut g = c.benchmark_group(format!("{name}/d{D}"));
    g.throughput(Throughput::Elements((N * K) as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    g.bench_function(BenchmarkId::new("forward_log_det", "simd"), |b| {
        b.iter(|| {
            flow.forward_log_det_batch(black_box(&z), &mut x, &mut ld)
                .unwrap()
        })
    });
    g.bench_function(BenchmarkId::new("forward_log_det", "scalar"), |b| {
        b.iter(|| {
            for ((p, q), l) in z.iter().zip(x.iter_mut()).zip(ld.iter_mut()) {
                (*q, *l) = flow.forward_and_log_det(black_box(p));
            }
        })
    });
    let mut zo = vec![[T::ZERO; D]; N];
    g.bench_function(BenchmarkId::new("inverse", "simd"), |b| {
        b.iter(|| {
            flow.inverse_batch(black_box(&xs), &mut zo, &mut ld)
                .unwrap()
        })
    });
    g.bench_function(BenchmarkId::new("inverse", "scalar"), |b| {
        b.iter(|| {
            for ((p, q), l) in xs.iter().zip(zo.iter_mut()).zip(ld.iter_mut()) {
                (*q, *l) = flow.inverse_and_log_det(black_box(p)).unwrap();
            }
        })
    });
    g.bench_function(BenchmarkId::new("log_prob", "simd"), |b| {
        b.iter(|| flow.log_prob_batch(black_box(&xs), &mut ld).unwrap())
    });
    g.bench_function(BenchmarkId::new("log_prob", "scalar"), |b| {
        b.iter(|| {
            for (p, o) in xs.iter().zip(ld.iter_mut()) {
                *o = flow.log_prob(black_box(p)).unwrap();
            }
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    group::<f32, 2>(c, "f32");
    group::<f32, 16>(c, "f32");
    group::<f64, 2>(c, "f64");
    group::<f64, 16>(c, "f64");
}

criterion_group!(simd, benches);
criterion_main!(simd);
