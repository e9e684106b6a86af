//! Scalar reference path, one point at a time: forward + log-det and inverse through K = 32
//! layers, D ∈ {2, 16}, f32 and f64. The baseline the SIMD kernels are measured against.
//! Reported per point per layer by dividing criterion's per-call time by K.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flowcore::{Flow, Planar, Real, SeedableRng, StandardNormal, Xoshiro256PlusPlus};
use std::hint::black_box;

const K: usize = 32;
const N: usize = 256;

fn flow<T: Real, const D: usize>() -> Flow<T, D, K> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let base = StandardNormal::<f64, D>::new();
    let s = 1.0 / (D as f64).sqrt();
    Flow::new(core::array::from_fn(|_| {
        let u = base.sample(&mut rng).map(|v| T::from_f64(0.5 * v));
        let w = base.sample(&mut rng).map(|v| T::from_f64(s * v));
        Planar::new(u, w, T::from_f64(0.3 * base.sample(&mut rng)[0])).unwrap()
    }))
}

fn bench_one<T: Real, const D: usize>(c: &mut Criterion, dtype: &str) {
    let f = flow::<T, D>();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
    let base = StandardNormal::<T, D>::new();
    let zs: Vec<[T; D]> = (0..N).map(|_| base.sample(&mut rng)).collect();
    let xs: Vec<[T; D]> = zs.iter().map(|z| f.forward(z)).collect();
    let mut g = c.benchmark_group(format!("scalar_{dtype}_d{D}_k{K}"));
    // One "element" = one point through one layer, so criterion's throughput is point-layers/s.
    g.throughput(Throughput::Elements((N * K) as u64));
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(2));
    g.warm_up_time(std::time::Duration::from_millis(500));
    g.bench_function(BenchmarkId::new("forward_log_det", N), |b| {
        b.iter(|| {
            let mut acc = T::ZERO;
            for z in &zs {
                let (x, ld) = f.forward_and_log_det(black_box(z));
                acc = acc + x[0] + ld;
            }
            acc
        })
    });
    g.bench_function(BenchmarkId::new("inverse", N), |b| {
        b.iter(|| {
            let mut acc = T::ZERO;
            for x in &xs {
                let (z, ld) = f.inverse_and_log_det(black_box(x)).unwrap();
                acc = acc + z[0] + ld;
            }
            acc
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_one::<f32, 2>(c, "f32");
    bench_one::<f64, 2>(c, "f64");
    bench_one::<f32, 16>(c, "f32");
    bench_one::<f64, 16>(c, "f64");
}

criterion_group!(scalar, benches);
criterion_main!(scalar);
