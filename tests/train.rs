//! Training: loss gradients against finite differences, the seed's identities, a real fit of
//! U1, bitwise reproducibility, bad-input rejection, and the export round trip.

use flowcore::base::uniform_open0;
use flowcore::energy::{Energy, RmEnergy, RmKind};
use flowcore::grad::FlowGrad;
use flowcore::loss::{
    Trainer, forward_kl_grad, is_diagnostics, reverse_kl_grad, reverse_kl_grad_points,
    reverse_kl_grad_points_simd,
};
use flowcore::optim::{Adam, init_random, init_random_scaled};
use flowcore::{Flow, FlowError, SeedableRng, StandardNormal, Xoshiro256PlusPlus};

const K: usize = 4;
const P: usize = K * 5;

fn small_flow(seed: u64) -> Flow<f64, 2, K> {
    init_random(&mut Xoshiro256PlusPlus::seed_from_u64(seed))
}

fn flat(g: &FlowGrad<f64, 2, K>) -> [f64; P] {
    let mut out = [0.0; P];
    g.write_flat(&mut out).unwrap();
    out
}

/// Batch losses are deterministic functions of the parameters for a fixed RNG seed, so their
/// gradients can be checked by central differences (step 1e−6, tolerance 1e−5 relative to
/// max(|g|, 1e−2·‖g‖∞): the losses are means of O(1) smooth terms).
fn check_fd(
    name: &str,
    flow: &Flow<f64, 2, K>,
    g: &[f64; P],
    loss: impl Fn(&Flow<f64, 2, K>) -> f64,
) {
    let mut p = [0.0; P];
    flow.write_params(&mut p).unwrap();
    let scale = g.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for j in 0..P {
        let h = 1e-6 * p[j].abs().max(1.0);
        let (mut a, mut b) = (p, p);
        a[j] += h;
        b[j] -= h;
        let fd = (loss(&flow.with_params(&a).unwrap()) - loss(&flow.with_params(&b).unwrap()))
            / (2.0 * h);
        let denom = g[j].abs().max(1e-2 * scale);
        assert!(
            ((fd - g[j]) / denom).abs() < 1e-5,
            "{name}[{j}]: {} vs {fd}",
            g[j]
        );
    }
}

#[test]
fn reverse_kl_gradient_matches_finite_differences() {
    let flow = small_flow(1);
    for kind in [RmKind::U1, RmKind::U3] {
        let e = RmEnergy::new(kind);
        for beta in [0.3, 1.0] {
            let loss = |f: &Flow<f64, 2, K>| {
                let mut g = FlowGrad::zero();
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
                reverse_kl_grad(f, &e, beta, &mut rng, 64, &mut g)
                    .unwrap()
                    .loss
            };
            let mut g = FlowGrad::zero();
            reverse_kl_grad(
                &flow,
                &e,
                beta,
                &mut Xoshiro256PlusPlus::seed_from_u64(7),
                64,
                &mut g,
            )
            .unwrap();
            check_fd("reverse KL", &flow, &flat(&g), loss);
        }
    }
}

#[test]
fn forward_kl_gradient_matches_finite_differences() {
    let flow = small_flow(2);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let data: Vec<[f64; 2]> = (0..64)
        .map(|_| StandardNormal::<f64, 2>::new().sample(&mut rng))
        .map(|z| [2.0 * z[0], z[1] + 0.5])
        .collect();
    let loss = |f: &Flow<f64, 2, K>| forward_kl_grad(f, &data, &mut FlowGrad::zero()).unwrap();
    let mut g = FlowGrad::zero();
    let nll = forward_kl_grad(&flow, &data, &mut g).unwrap();
    let direct: f64 = data
        .iter()
        .map(|x| -flow.log_prob_normalizing(x))
        .sum::<f64>()
        / 64.0;
    assert!((nll - direct).abs() < 1e-12);
    check_fd("forward KL", &flow, &flat(&g), loss);
}

#[test]
fn reverse_kl_x_space_equals_z_space_sample_by_sample() {
    // E_q[log q(x) + U(x)] (x-space, log q through the exact inverse) and
    // E_p[log p_z(z) − ln|det J_g(z)| + U(g(z))] (z-space) agree term by term; in f64 the two
    // routes differ by the inverse's round-off times the conditioning: 1e−9 is ample.
    let flow = small_flow(5);
    let e = RmEnergy::new(RmKind::U2);
    let base = StandardNormal::<f64, 2>::new();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    for _ in 0..2000 {
        let z = base.sample(&mut rng);
        let (x, ld) = flow.forward_and_log_det(&z);
        let z_space = base.log_prob(&z) - ld + e.energy(&x);
        let x_space = flow.log_prob(&x).unwrap() + e.energy(&x);
        assert!(
            (z_space - x_space).abs() < 1e-9 * (1.0 + z_space.abs()),
            "{z_space} vs {x_space}"
        );
    }
}

#[test]
fn forward_kl_both_forms_agree_sample_by_sample() {
    // Flow as normaliser: log p_x(x) by the forward pass (no inverse) and by the sampling route
    // x = f⁻¹(z) with log p_x = log p_z(z) − ln|det J_f(x)| agree sample by sample.
    let flow = small_flow(6);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
    for _ in 0..2000 {
        let (x, lp_sampling) = flow.sample_normalizing(&mut rng).unwrap();
        let lp_forward = flow.log_prob_normalizing(&x);
        assert!(
            (lp_forward - lp_sampling).abs() < 1e-9 * (1.0 + lp_forward.abs()),
            "{lp_forward} vs {lp_sampling}"
        );
    }
}

fn train_u1(seed: u64, steps: u64) -> Trainer<f32, 2, 16, 80, flowcore::Tanh, Xoshiro256PlusPlus> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let flow = init_random_scaled::<f32, 2, 16, _>(&mut rng, 1.0);
    let mut t = Trainer::new(flow, 1e-2, rng);
    t.anneal_steps = steps / 2;
    t.beta0 = 0.01;
    let e = RmEnergy::new(RmKind::U1);
    for _ in 0..steps {
        t.step(&e, 256).unwrap();
    }
    t
}

#[test]
fn fit_u1_and_kl_agrees_with_quadrature() {
    // K = 16, batch 256, 3000 steps (half of them annealed), lr 1e−2, seed 1. One lobe of U1
    // gives KL ≈ ln 2 ≈ 0.69 and the initial flow KL > 2, so KL < 0.1 shows that the fit
    // covers both lobes.
    let t = train_u1(1, 3000);
    let e = RmEnergy::new(RmKind::U1);
    let log_z = e.log_z().unwrap();
    let (is, bad) = is_diagnostics(
        &t.flow,
        &e,
        &mut Xoshiro256PlusPlus::seed_from_u64(99),
        65536,
    );
    assert_eq!(bad, 0);
    let kl_mc = is.kl(log_z);
    assert!(kl_mc < 0.1, "KL {kl_mc}");
    assert!(is.ess_fraction() > 0.5, "ESS {}", is.ess_fraction());
    // Quadrature of ∫ q (log q + U) + log Z over [−6, 6]² (q's mass outside < 1e−6 for this fit;
    // spacing 1/24: q is smooth on that scale), against the Monte Carlo estimate (standard
    // error ≈ sd/√65536 ≈ 0.002): agree to 0.02.
    let h = 1.0 / 24.0;
    let n = (12.0 / h) as i64;
    let (mut kl_q, mut mass) = (0.0, 0.0);
    for i in 0..=n {
        for j in 0..=n {
            let x = [(-6.0 + i as f64 * h) as f32, (-6.0 + j as f64 * h) as f32];
            let lq = t.flow.log_prob(&x).unwrap() as f64;
            let q = lq.exp();
            let u = Energy::<f64, 2>::energy(&e, &[x[0] as f64, x[1] as f64]);
            kl_q += q * (lq + u) * h * h;
            mass += q * h * h;
        }
    }
    kl_q += log_z;
    eprintln!(
        "U1 fit: KL {kl_mc:.4} (MC), {kl_q:.4} (quadrature), ESS {:.3}, mass {mass:.5}",
        is.ess_fraction()
    );
    assert!((mass - 1.0).abs() < 2e-3, "mass {mass}");
    assert!(
        (kl_q - kl_mc).abs() < 0.02,
        "quadrature {kl_q} vs Monte Carlo {kl_mc}"
    );
    // The importance-sampling log Z agrees with the exact one for a good fit.
    assert!((is.log_z() - log_z).abs() < 0.05, "{}", is.log_z());
}

#[test]
fn training_is_bitwise_reproducible() {
    let a = train_u1(3, 60);
    let b = train_u1(3, 60);
    let c = train_u1(4, 60);
    let (pa, pb, pc): ([f32; 80], [f32; 80], [f32; 80]) =
        (a.flow.to_params(), b.flow.to_params(), c.flow.to_params());
    assert!(pa.iter().zip(&pb).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(pa.iter().zip(&pc).any(|(x, y)| x.to_bits() != y.to_bits()));
}

/// An energy that is NaN (or +∞) in part of the plane.
struct Broken(f64);
impl Energy<f32, 2> for Broken {
    fn energy(&self, x: &[f32; 2]) -> f32 {
        self.energy_and_grad(x).0
    }
    fn energy_and_grad(&self, x: &[f32; 2]) -> (f32, [f32; 2]) {
        if x[0] > 2.0 {
            (self.0 as f32, [0.0, 0.0])
        } else {
            (0.5 * (x[0] * x[0] + x[1] * x[1]), *x)
        }
    }
}

#[test]
fn bad_energy_rejects_the_step() {
    for bad in [f64::NAN, f64::INFINITY] {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let flow = init_random::<f32, 2, 4, _>(&mut rng);
        let mut t = Trainer::<f32, 2, 4, 20, _, _>::new(flow, 1e-2, rng);
        let before = (t.flow, t.adam);
        // Batch large enough that some sample lands at x₀ > 2.
        let r = t.step(&Broken(bad), 4096);
        assert_eq!(r, Err(FlowError::NonFiniteInput));
        assert_eq!((t.flow, t.adam), before);
        assert_eq!((t.step_count, t.rejected), (0, 1));
        // Good steps continue afterwards.
        t.step(&RmEnergy::new(RmKind::U1), 64).unwrap();
        assert_eq!(t.step_count, 1);
    }
}

#[test]
fn bad_data_rejects_the_step() {
    let mut flow = init_random::<f64, 2, 4, _>(&mut Xoshiro256PlusPlus::seed_from_u64(1));
    let before = flow;
    let data = [[0.1, 0.2], [f64::NAN, 0.0], [0.3, -0.1]];
    let mut g = FlowGrad::zero();
    assert_eq!(
        forward_kl_grad(&flow, &data, &mut g),
        Err(FlowError::NonFiniteInput)
    );
    assert_eq!(g, FlowGrad::zero());
    // A non-finite gradient is refused by the optimiser with nothing changed.
    let mut adam = Adam::<f64, 20>::new(1e-2);
    let adam0 = adam;
    g.layers[1].w[0] = f64::INFINITY;
    assert_eq!(adam.step(&mut flow, &g), Err(FlowError::NonFiniteParameter));
    assert_eq!((flow, adam), (before, adam0));
}

#[test]
fn adam_matches_reference_formula() {
    // Three steps on f(p) = ½‖p‖² against the textbook update computed here in f64.
    let mut adam = Adam::<f64, 3>::new(0.1);
    let mut p = [1.0, -2.0, 0.5];
    let mut r = p;
    let (mut m, mut v) = ([0.0; 3], [0.0; 3]);
    for t in 1..=3 {
        let g = p;
        adam.update(&mut p, &g).unwrap();
        for i in 0..3 {
            let gi = r[i];
            m[i] = 0.9 * m[i] + 0.1 * gi;
            v[i] = 0.999 * v[i] + 0.001 * gi * gi;
            let mh = m[i] / (1.0 - 0.9f64.powi(t));
            let vh = v[i] / (1.0 - 0.999f64.powi(t));
            r[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
        }
        for i in 0..3 {
            assert!(
                (p[i] - r[i]).abs() < 1e-12,
                "step {t}: {} vs {}",
                p[i],
                r[i]
            );
        }
    }
}

fn parse_export(text: &str) -> Vec<u32> {
    text.split("from_bits(0x")
        .skip(1)
        .map(|s| u32::from_str_radix(&s[..s.find(')').unwrap()], 16).unwrap())
        .collect()
}

#[test]
fn exported_flow_reproduces_the_trained_one_bit_for_bit() {
    let t = train_u1(2, 40);
    let mut text = String::new();
    t.flow.write_rust_const("FLOW_PARAMS", &mut text).unwrap();
    assert!(text.contains("pub const FLOW_PARAMS: [f32; 80] = ["));
    let bits = parse_export(&text);
    assert_eq!(bits.len(), 80);
    let params: Vec<f32> = bits.iter().map(|b| f32::from_bits(*b)).collect();
    let back = Flow::<f32, 2, 16>::identity().with_params(&params).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    for _ in 0..1000 {
        let z = [
            (4.0 * uniform_open0(&mut rng) - 2.0) as f32,
            (4.0 * uniform_open0(&mut rng) - 2.0) as f32,
        ];
        let (x1, l1) = t.flow.forward_and_log_det(&z);
        let (x2, l2) = back.forward_and_log_det(&z);
        assert_eq!(
            [x1[0].to_bits(), x1[1].to_bits(), l1.to_bits()],
            [x2[0].to_bits(), x2[1].to_bits(), l2.to_bits()]
        );
    }
    // Negative zero and tiny values survive too.
    let f = Flow::<f64, 1, 1>::new([flowcore::Planar::new([-0.0], [5e-324], -1.5).unwrap()]);
    let mut s = String::new();
    f.write_rust_const("X", &mut s).unwrap();
    assert!(
        s.contains("f64::from_bits(0x8000000000000000)") && s.contains("f64::from_bits(0x1)"),
        "{s}"
    );
}

#[test]
fn is_stats_match_a_direct_computation() {
    // Streaming (with rescaling and merging) against the two-pass formulas in f64.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
    let lw: Vec<f64> = (0..1000)
        .map(|i| 30.0 * uniform_open0(&mut rng) - 15.0 + 0.01 * i as f64)
        .collect();
    let mut a = flowcore::loss::IsStats::new();
    let mut b = flowcore::loss::IsStats::new();
    for (i, v) in lw.iter().enumerate() {
        if i % 3 == 0 { a.push(*v) } else { b.push(*v) }
    }
    a.merge(&b);
    let m = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s1: f64 = lw.iter().map(|v| (v - m).exp()).sum();
    let s2: f64 = lw.iter().map(|v| (2.0 * (v - m)).exp()).sum();
    let n = lw.len() as f64;
    assert_eq!(a.count(), 1000);
    assert!((a.log_z() - (m + (s1 / n).ln())).abs() < 1e-12);
    assert!((a.ess_fraction() - s1 * s1 / (n * s2)).abs() < 1e-12);
    assert!((a.elbo() - lw.iter().sum::<f64>() / n).abs() < 1e-12);
    assert!(a.ess_fraction() <= 1.0);
}

#[test]
fn simd_gradient_matches_scalar_reference() {
    // Same base points through the batched (SIMD) pass and the scalar reference; a batch size
    // that is not a multiple of the lane width exercises the masked tail. The two differ only by
    // the vector math's few-ulp errors, amplified by the K = 4 layers and the mean: 1e−11
    // relative to the largest gradient entry in f64, 2e−4 in f32.
    let flow = small_flow(21);
    let e = RmEnergy::new(RmKind::U4);
    let base = StandardNormal::<f64, 2>::new();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(13);
    let zs: Vec<[f64; 2]> = (0..203).map(|_| base.sample(&mut rng)).collect();
    let (mut ga, mut gb) = (FlowGrad::zero(), FlowGrad::zero());
    let ra = reverse_kl_grad_points(&flow, &e, 0.7, &zs, &mut ga).unwrap();
    let rb = reverse_kl_grad_points_simd(&flow, &e, 0.7, &zs, &mut gb).unwrap();
    let (fa, fb) = (flat(&ga), flat(&gb));
    let scale = fa.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for j in 0..P {
        assert!(
            (fa[j] - fb[j]).abs() < 1e-11 * scale,
            "f64 [{j}] {} vs {}",
            fa[j],
            fb[j]
        );
    }
    assert!((ra.loss - rb.loss).abs() < 1e-12 * ra.loss.abs().max(1.0));
    assert_eq!(ra.is.count(), rb.is.count());

    let p64: [f64; P] = flow.to_params();
    let p32: Vec<f32> = p64.iter().map(|v| *v as f32).collect();
    let flow32 = Flow::<f32, 2, K>::identity().with_params(&p32).unwrap();
    let zs32: Vec<[f32; 2]> = zs.iter().map(|z| [z[0] as f32, z[1] as f32]).collect();
    let (mut g32, mut g32s) = (FlowGrad::zero(), FlowGrad::zero());
    reverse_kl_grad_points(&flow32, &e, 0.7, &zs32, &mut g32).unwrap();
    reverse_kl_grad_points_simd(&flow32, &e, 0.7, &zs32, &mut g32s).unwrap();
    let (mut a32, mut b32) = ([0.0f32; P], [0.0f32; P]);
    g32.write_flat(&mut a32).unwrap();
    g32s.write_flat(&mut b32).unwrap();
    let scale = a32.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    for j in 0..P {
        assert!(
            (a32[j] - b32[j]).abs() < 2e-4 * scale,
            "f32 [{j}] {} vs {}",
            a32[j],
            b32[j]
        );
    }
}

#[test]
fn scalar_and_simd_trainers_both_learn() {
    // The scalar reference path of the trainer also fits U1 (KL < 0.1 after 3000 steps).
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let flow = init_random_scaled::<f32, 2, 16, _>(&mut rng, 1.0);
    let mut t = Trainer::<f32, 2, 16, 80, _, _>::new(flow, 1e-2, rng);
    t.simd = false;
    t.anneal_steps = 1500;
    t.beta0 = 0.01;
    let e = RmEnergy::new(RmKind::U1);
    for _ in 0..3000 {
        t.step(&e, 256).unwrap();
    }
    let (is, _) = is_diagnostics(
        &t.flow,
        &e,
        &mut Xoshiro256PlusPlus::seed_from_u64(99),
        65536,
    );
    eprintln!("U1 fit (scalar path): KL {:.4}", is.kl(e.log_z().unwrap()));
    assert!(is.kl(e.log_z().unwrap()) < 0.1);
}

#[test]
fn simd_forward_kl_matches_scalar_reference() {
    // Same data through the batched and the scalar forward KL; 203 points (not a multiple of
    // the lane width or of the 4-chunk group). Tolerances as for the reverse-KL comparison.
    let flow = small_flow(22);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(14);
    let data: Vec<[f64; 2]> = (0..203)
        .map(|_| StandardNormal::<f64, 2>::new().sample(&mut rng))
        .map(|z| [1.5 * z[0] + 0.3, z[1] - 0.2 * z[0]])
        .collect();
    let (mut ga, mut gb) = (FlowGrad::zero(), FlowGrad::zero());
    let la = forward_kl_grad(&flow, &data, &mut ga).unwrap();
    let lb = flowcore::loss::forward_kl_grad_simd(&flow, &data, &mut gb).unwrap();
    assert!((la - lb).abs() < 1e-12 * la.abs().max(1.0), "{la} vs {lb}");
    let (fa, fb) = (flat(&ga), flat(&gb));
    let scale = fa.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for j in 0..P {
        assert!(
            (fa[j] - fb[j]).abs() < 1e-11 * scale,
            "[{j}] {} vs {}",
            fa[j],
            fb[j]
        );
    }
    let mut bad = data.clone();
    bad[100][1] = f64::NAN;
    let mut gc = FlowGrad::zero();
    assert_eq!(
        flowcore::loss::forward_kl_grad_simd(&flow, &bad, &mut gc),
        Err(FlowError::NonFiniteInput)
    );
    assert_eq!(gc, FlowGrad::zero());
}

#[test]
fn parts_gradient_is_the_weighted_mean_of_its_parts() {
    // `reverse_kl_grad_parts` against an independent assembly: each part's batched gradient
    // (`reverse_kl_grad_simd_with` on the part's generator stream: one u64 from the caller's
    // generator seeds a Xoshiro256++, part i is it after i jumps) averaged with the part
    // sizes as weights. 192 = 3·64 points in 3 parts: 64 each for every lane width (64 is a
    // multiple of the 4 chunks in flight × up to 16 lanes). The two differ only in where the
    // rounding of the linear chain through û and of the 1/n scaling happens: 1e−12 relative
    // to the largest entry in f64.
    use flowcore::Rng;
    use flowcore::loss::{reverse_kl_grad_parts, reverse_kl_grad_simd_with};
    let flow = small_flow(31);
    let e = RmEnergy::new(RmKind::U2);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut g = FlowGrad::zero();
    let r = reverse_kl_grad_parts(&flow, &e, 0.8, &mut rng.clone(), 192, 3, true, &mut g).unwrap();
    let mut stream = Xoshiro256PlusPlus::seed_from_u64(rng.next_u64());
    let mut want = [0.0f64; P];
    let mut loss = 0.0;
    for _ in 0..3 {
        let mut gi = FlowGrad::zero();
        let ri = reverse_kl_grad_simd_with(&flow, &e, 0.8, &mut stream.clone(), 64, true, &mut gi)
            .unwrap();
        stream.jump();
        for (w, v) in want.iter_mut().zip(flat(&gi)) {
            *w += v / 3.0;
        }
        loss += ri.loss / 3.0;
    }
    let got = flat(&g);
    let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for j in 0..P {
        assert!(
            (got[j] - want[j]).abs() < 1e-12 * scale,
            "[{j}] {} vs {}",
            got[j],
            want[j]
        );
    }
    assert!((r.loss - loss).abs() < 1e-12 * loss.abs().max(1.0));
    assert_eq!(r.is.count(), 192);
    assert!(matches!(
        reverse_kl_grad_parts(&flow, &e, 0.8, &mut rng, 192, 0, true, &mut g),
        Err(FlowError::InvalidArgument(_))
    ));
}

#[cfg(feature = "parallel")]
#[test]
fn parallel_step_is_bitwise_the_serial_one_for_any_thread_count() {
    // The parts are computed on 1 or 2 rayon threads and added in batch order, so gradient,
    // loss and IS statistics must equal the serial `reverse_kl_grad_parts` bit for bit (an
    // uneven batch: the last part is short and has a masked tail), and a 2-thread `par_step`
    // training run must reproduce the serial `step` run exactly.
    use flowcore::loss::{par_reverse_kl_grad_parts, reverse_kl_grad_parts};
    let flow = small_flow(32);
    let e = RmEnergy::new(RmKind::U3);
    for &(batch, parts) in &[(1000usize, 3usize), (1000, 4), (37, 2), (5, 4)] {
        let mut g0 = FlowGrad::zero();
        let r0 = reverse_kl_grad_parts(
            &flow,
            &e,
            1.0,
            &mut Xoshiro256PlusPlus::seed_from_u64(8),
            batch,
            parts,
            true,
            &mut g0,
        )
        .unwrap();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut g1 = FlowGrad::zero();
            let r1 = pool
                .install(|| {
                    par_reverse_kl_grad_parts(
                        &flow,
                        &e,
                        1.0,
                        &mut Xoshiro256PlusPlus::seed_from_u64(8),
                        batch,
                        parts,
                        true,
                        &mut g1,
                    )
                })
                .unwrap();
            let (a, b) = (flat(&g0), flat(&g1));
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "batch {batch} parts {parts} threads {threads}"
            );
            assert_eq!(r0.loss.to_bits(), r1.loss.to_bits());
            assert_eq!(r0.is, r1.is);
        }
    }
    let run = |par: bool| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let flow = init_random::<f32, 2, 16, _>(&mut rng);
        let mut t = Trainer::<f32, 2, 16, 80, _, _>::new(flow, 1e-2, rng);
        t.parts = 2;
        let e = RmEnergy::new(RmKind::U1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for _ in 0..40 {
            if par {
                pool.install(|| t.par_step(&e, 300)).unwrap();
            } else {
                t.step(&e, 300).unwrap();
            }
        }
        t.flow.to_params::<80>()
    };
    let (a, b) = (run(false), run(true));
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
}
