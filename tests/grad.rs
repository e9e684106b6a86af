//! Gradients of planar layers and flows against central finite differences (f64).
//!
//! Tolerance: central differences with step `h = 1e−5·max(1, |p|)` have truncation error
//! `O(h²·|L‴|) ≈ 1e−10` and rounding error `≈ eps·|L|/h ≈ 1e−11·|L|` for the O(1) losses here,
//! so every analytic derivative must agree to `1e−6` relative to `max(|g|, 1e−2·‖g‖∞, 1e-3)`:
//! four orders above the FD error, and far below any real mistake (a wrong term is O(1)).

use flowcore::base::uniform_open0;
use flowcore::grad::{LayerAcc, LayerGrad};
use flowcore::{
    Activation, Constraint, Flow, LeakyRelu, Planar, SeedableRng, Tanh, Xoshiro256PlusPlus,
};

const D: usize = 3;
const TOL: f64 = 1e-6;

fn unif(rng: &mut Xoshiro256PlusPlus, a: f64) -> f64 {
    a * (2.0 * uniform_open0(rng) - 1.0)
}

fn vec3(rng: &mut Xoshiro256PlusPlus, a: f64) -> [f64; D] {
    [unif(rng, a), unif(rng, a), unif(rng, a)]
}

fn check(name: &str, analytic: &[f64], fd: &[f64]) {
    let scale = analytic.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for (i, (a, f)) in analytic.iter().zip(fd).enumerate() {
        let denom = a.abs().max(1e-2 * scale).max(1e-3);
        assert!(
            ((a - f) / denom).abs() < TOL,
            "{name}[{i}]: analytic {a:e} vs finite difference {f:e}"
        );
    }
}

fn fd<F: Fn(f64) -> f64>(p: f64, f: F) -> f64 {
    let h = 1e-5 * p.abs().max(1.0);
    (f(p + h) - f(p - h)) / (2.0 * h)
}

/// L = aᵀx + β·ln|det J| for one layer at z.
fn layer_loss<A: Activation<f64>>(
    l: &Planar<f64, D, A>,
    z: &[f64; D],
    a: &[f64; D],
    beta: f64,
) -> f64 {
    let (x, ld) = l.forward_and_log_det(z);
    x.iter().zip(a).map(|(x, a)| x * a).sum::<f64>() + beta * ld
}

fn layer_grads<A: Activation<f64>>(
    l: &Planar<f64, D, A>,
    z: &[f64; D],
    a: &[f64; D],
    beta: f64,
) -> ([f64; D], LayerGrad<f64, D>) {
    let mut x = *z;
    let (s, _) = l.forward_lanes_s(&mut x);
    let mut gx = *a;
    let mut acc = LayerAcc::zero();
    l.backward_lanes(&mut x, s, &mut gx, beta, &mut acc);
    for i in 0..D {
        assert!(
            (x[i] - z[i]).abs() < 1e-14 * (1.0 + z[i].abs()),
            "input not recovered"
        );
    }
    (gx, l.reparam_vjp(&acc))
}

fn check_layer<A: Activation<f64>>(
    tag: &str,
    l: Planar<f64, D, A>,
    z: [f64; D],
    a: [f64; D],
    beta: f64,
) {
    let (gz, g) = layer_grads(&l, &z, &a, beta);
    let loss = |l: &Planar<f64, D, A>, z: &[f64; D]| layer_loss(l, z, &a, beta);
    let mut fz = [0.0; D];
    let mut fu = [0.0; D];
    let mut fw = [0.0; D];
    for i in 0..D {
        fz[i] = fd(z[i], |v| {
            let mut z2 = z;
            z2[i] = v;
            loss(&l, &z2)
        });
        fu[i] = fd(l.u()[i], |v| {
            let mut u = *l.u();
            u[i] = v;
            loss(&l.with_params(u, *l.w(), l.b()).unwrap(), &z)
        });
        fw[i] = fd(l.w()[i], |v| {
            let mut w = *l.w();
            w[i] = v;
            loss(&l.with_params(*l.u(), w, l.b()).unwrap(), &z)
        });
    }
    let fb = fd(l.b(), |v| {
        loss(&l.with_params(*l.u(), *l.w(), v).unwrap(), &z)
    });
    check(&format!("{tag} dz"), &gz, &fz);
    check(&format!("{tag} du"), &g.u, &fu);
    check(&format!("{tag} dw"), &g.w, &fw);
    check(&format!("{tag} db"), &[g.b], &[fb]);
}

fn constraints() -> [Constraint<f64>; 4] {
    [
        Constraint::Smooth,
        Constraint::Paper,
        Constraint::Project { margin: 0.05 },
        Constraint::Unconstrained,
    ]
}

#[test]
fn layer_gradients_all_constraints_and_activations() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let leaky = LeakyRelu::new(0.2).unwrap();
    for (ci, c) in constraints().into_iter().enumerate() {
        let mut done = 0;
        let mut tries = 0;
        while done < 12 && tries < 1000 {
            tries += 1;
            let u = vec3(&mut rng, 1.5);
            let w = vec3(&mut rng, 1.5);
            let b = unif(&mut rng, 1.0);
            let z = vec3(&mut rng, 2.0);
            let a = vec3(&mut rng, 1.0);
            let beta = unif(&mut rng, 2.0);
            let x: f64 = u.iter().zip(&w).map(|(u, w)| u * w).sum();
            // Stay away from the kinks (projection boundary, leaky ReLU at 0, Unconstrained's
            // domain), where finite differences straddle a discontinuous derivative.
            if let Constraint::Project { margin } = c
                && (x - (margin - 1.0)).abs() < 0.05
            {
                continue;
            }
            let Ok(lt) = Planar::with(u, w, b, c, Tanh) else {
                continue;
            };
            let Ok(ll) = Planar::with(u, w, b, c, leaky) else {
                continue;
            };
            let s: f64 = w.iter().zip(&z).map(|(w, z)| w * z).sum::<f64>() + b;
            if s.abs() < 0.05 {
                continue;
            }
            check_layer(&format!("constraint {ci} tanh"), lt, z, a, beta);
            check_layer(&format!("constraint {ci} leaky"), ll, z, a, beta);
            done += 1;
        }
        assert_eq!(done, 12, "constraint {ci}: too few valid draws");
    }
}

#[test]
fn layer_gradients_near_the_constraint_boundary() {
    // wᵀu very negative: c → −1, the log-det term dominates.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    for c in [Constraint::Smooth, Constraint::Paper] {
        for _ in 0..5 {
            let w = vec3(&mut rng, 1.0);
            let n2: f64 = w.iter().map(|v| v * v).sum();
            let u = [-6.0 * w[0] / n2, -6.0 * w[1] / n2, -6.0 * w[2] / n2];
            let l = Planar::with(u, w, 0.3, c, Tanh).unwrap();
            check_layer("boundary", l, vec3(&mut rng, 1.0), vec3(&mut rng, 1.0), 1.0);
        }
    }
}

#[test]
fn layer_gradients_small_w() {
    // Near w = 0 the w-gradient grows like 1/‖w‖ but is still a derivative: check it with a
    // finite-difference step far below ‖w‖.
    let u = [0.7, -0.4, 0.9];
    let w = [3e-4, -2e-4, 1e-4];
    let z = [0.2, -0.5, 0.8];
    let a = [0.3, 0.6, -0.9];
    for c in [Constraint::Smooth, Constraint::Paper] {
        let l = Planar::with(u, w, 0.4, c, Tanh).unwrap();
        let (_, g) = layer_grads(&l, &z, &a, 1.0);
        for i in 0..D {
            let h = 1e-9;
            let f = |v: f64| {
                let mut w2 = w;
                w2[i] = v;
                layer_loss(&l.with_params(u, w2, 0.4).unwrap(), &z, &a, 1.0)
            };
            let fdw = (f(w[i] + h) - f(w[i] - h)) / (2.0 * h);
            assert!(
                ((g.w[i] - fdw) / g.w[i].abs().max(1.0)).abs() < 1e-4,
                "{c:?} dw[{i}] {} vs {fdw}",
                g.w[i]
            );
            assert!(g.w[i].is_finite());
        }
    }
}

#[test]
fn layer_gradients_at_w_zero() {
    // At w = 0 the layer is z + u·h(b): ∂/∂u and ∂/∂b are ordinary derivatives (w stays 0), and
    // ∂/∂w is the smooth part defined in the module docs (finite, no division by zero).
    let u = [0.7, -0.4, 0.9];
    let z = [0.2, -0.5, 0.8];
    let a = [0.3, 0.6, -0.9];
    for c in constraints() {
        let l = Planar::with(u, [0.0; D], 0.4, c, Tanh).unwrap();
        let (gz, g) = layer_grads(&l, &z, &a, 1.5);
        assert!(g.is_finite() && gz.iter().all(|v| v.is_finite()));
        let mut fu = [0.0; D];
        for i in 0..D {
            fu[i] = fd(u[i], |v| {
                let mut u2 = u;
                u2[i] = v;
                layer_loss(&l.with_params(u2, [0.0; D], 0.4).unwrap(), &z, &a, 1.5)
            });
        }
        check("w=0 du", &g.u, &fu);
        let fb = fd(0.4, |v| {
            layer_loss(&l.with_params(u, [0.0; D], v).unwrap(), &z, &a, 1.5)
        });
        check("w=0 db", &[g.b], &[fb]);
        // Direct term: z·∂L/∂s with ∂L/∂s = (aᵀu)·h′(b) (c = 0 so no log-det s-term).
        let (_, dh, _) = <Tanh as Activation<f64>>::eval(&Tanh, 0.4f64);
        let gs = a.iter().zip(&u).map(|(a, u)| a * u).sum::<f64>() * dh;
        let mp = c.dm_dx(0.0);
        for i in 0..D {
            let want = z[i] * gs + 1.5 * dh * mp * u[i];
            assert!((g.w[i] - want).abs() < 1e-14, "{c:?} w=0 dw[{i}]");
        }
    }
}

const K: usize = 4;

fn flow_loss(f: &Flow<f64, D, K>, z: &[f64; D], a: &[f64; D], beta: f64) -> f64 {
    let (x, ld) = f.forward_and_log_det(z);
    x.iter()
        .zip(a)
        .map(|(x, a)| x * a + 0.25 * x * x * x)
        .sum::<f64>()
        + beta * ld
}

#[test]
fn flow_backward_matches_finite_differences() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    for _ in 0..8 {
        let layers: [Planar<f64, D>; K] = core::array::from_fn(|_| {
            Planar::new(
                vec3(&mut rng, 1.2),
                vec3(&mut rng, 1.2),
                unif(&mut rng, 0.5),
            )
            .unwrap()
        });
        let flow = Flow::new(layers);
        let z = vec3(&mut rng, 1.5);
        let a = vec3(&mut rng, 1.0);
        let beta = -1.0;
        let mut x = z;
        let mut s = [0.0; K];
        let ld = flow.forward_store(&mut x, &mut s);
        let (x_ref, ld_ref) = flow.forward_and_log_det(&z);
        assert_eq!(x, x_ref);
        assert!((ld - ld_ref).abs() < 1e-14);
        // ∂L/∂x for L = Σ a·x + x³/4.
        let mut gx = [0.0; D];
        for i in 0..D {
            gx[i] = a[i] + 0.75 * x[i] * x[i];
        }
        let mut acc = [LayerAcc::zero(); K];
        flow.backward_point(&mut x, &s, &mut gx, beta, &mut acc);
        for i in 0..D {
            assert!(
                (x[i] - z[i]).abs() < 1e-13,
                "input not recovered: {x:?} vs {z:?}"
            );
        }
        let g = flow.reparam_vjp(&acc);
        let mut fz = [0.0; D];
        for i in 0..D {
            fz[i] = fd(z[i], |v| {
                let mut z2 = z;
                z2[i] = v;
                flow_loss(&flow, &z2, &a, beta)
            });
        }
        check("flow dz", &gx, &fz);
        let mut p = [0.0; K * (2 * D + 1)];
        flow.write_params(&mut p).unwrap();
        let mut flat = [0.0; K * (2 * D + 1)];
        g.write_flat(&mut flat).unwrap();
        let mut fp = [0.0; K * (2 * D + 1)];
        for j in 0..p.len() {
            fp[j] = fd(p[j], |v| {
                let mut p2 = p;
                p2[j] = v;
                flow_loss(&flow.with_params(&p2).unwrap(), &z, &a, beta)
            });
        }
        check("flow params", &flat, &fp);
    }
}

#[test]
fn params_round_trip() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
    let layers: [Planar<f32, 2>; 5] = core::array::from_fn(|_| {
        let v = |r: &mut Xoshiro256PlusPlus| unif(r, 2.0) as f32;
        Planar::new(
            [v(&mut rng), v(&mut rng)],
            [v(&mut rng), v(&mut rng)],
            v(&mut rng),
        )
        .unwrap()
    });
    let flow = Flow::new(layers);
    let p: [f32; 25] = flow.to_params();
    let back = Flow::<f32, 2, 5>::identity().with_params(&p).unwrap();
    assert_eq!(back, flow);
    assert!(flow.with_params(&p[..24]).is_err());
    let mut bad = p;
    bad[3] = f32::NAN;
    assert!(flow.with_params(&bad).is_err());
}
