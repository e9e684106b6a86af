//! Double-double arithmetic (≈ 106-bit significand), enough for references to the f64
//! kernels: exp, expm1, log1p for small arguments, tanh/sech². Written for clarity, not speed.

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dd {
    pub hi: f64,
    pub lo: f64,
}

fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

impl Dd {
    pub const fn new(x: f64) -> Dd {
        Dd { hi: x, lo: 0.0 }
    }
    pub fn add(self, o: Dd) -> Dd {
        let (s, e) = two_sum(self.hi, o.hi);
        let e = e + self.lo + o.lo;
        let (h, l) = two_sum(s, e);
        Dd { hi: h, lo: l }
    }
    pub fn neg(self) -> Dd {
        Dd {
            hi: -self.hi,
            lo: -self.lo,
        }
    }
    pub fn sub(self, o: Dd) -> Dd {
        self.add(o.neg())
    }
    pub fn mul(self, o: Dd) -> Dd {
        let (p, e) = two_prod(self.hi, o.hi);
        let e = e + self.hi * o.lo + self.lo * o.hi;
        let (h, l) = two_sum(p, e);
        Dd { hi: h, lo: l }
    }
    pub fn div(self, o: Dd) -> Dd {
        let q1 = self.hi / o.hi;
        let r = self.sub(o.mul(Dd::new(q1)));
        let q2 = r.hi / o.hi;
        let r = r.sub(o.mul(Dd::new(q2)));
        let q3 = r.hi / o.hi;
        Dd::new(q1).add(Dd::new(q2)).add(Dd::new(q3))
    }
    pub fn to_f64(self) -> f64 {
        self.hi + self.lo
    }
    /// e^x − 1 for |x| ≤ 0.5 by Taylor series (40 terms: error far below 2^-106).
    fn expm1_small(self) -> Dd {
        let mut term = self;
        let mut sum = self;
        for n in 2..40 {
            term = term.mul(self).div(Dd::new(n as f64));
            sum = sum.add(term);
        }
        sum
    }
    /// e^x − 1 with full relative accuracy.
    pub fn expm1(self) -> Dd {
        if self.hi.abs() <= 0.5 {
            return self.expm1_small();
        }
        self.exp().sub(Dd::new(1.0))
    }
    /// e^x: x = n·ln2 + r, |r| ≤ ln2/2, e^r by series, then scale by 2^n (exact).
    pub fn exp(self) -> Dd {
        let n = (self.hi / core::f64::consts::LN_2).round();
        let r = self.sub(ln2().mul(Dd::new(n)));
        let e = r.expm1_small().add(Dd::new(1.0));
        let s = 2f64.powi(n as i32);
        Dd {
            hi: e.hi * s,
            lo: e.lo * s,
        }
    }
    /// ln x for x > 0: one Newton step on f64's log, y ← y + x·e^{−y} − 1 (twice).
    pub fn ln(self) -> Dd {
        let mut y = Dd::new(self.hi.ln());
        for _ in 0..2 {
            y = y.add(self.mul(y.neg().exp()).sub(Dd::new(1.0)));
        }
        y
    }
    /// ln(1 + x) with full relative accuracy for tiny x (series below 1e-3, else ln).
    pub fn ln_1p(self) -> Dd {
        if self.hi.abs() < 1e-3 {
            let mut term = self;
            let mut sum = self;
            for n in 2..30 {
                term = term.mul(self).neg();
                sum = sum.add(term.div(Dd::new(n as f64)));
            }
            sum
        } else {
            Dd::new(1.0).add(self).ln()
        }
    }
    /// (tanh x, sech² x).
    pub fn tanh_sech2(self) -> (Dd, Dd) {
        let a = Dd::new(-2.0 * self.hi.abs()).add(Dd::new(-2.0 * self.lo * self.hi.signum()));
        let e = a.expm1();
        let d = Dd::new(2.0).add(e);
        let t = e.neg().div(d);
        let t = if self.hi < 0.0 { t.neg() } else { t };
        let s2 = Dd::new(4.0).mul(Dd::new(1.0).add(e)).div(d.mul(d));
        (t, s2)
    }
}

/// ln 2 to double-double precision.
pub fn ln2() -> Dd {
    Dd {
        hi: core::f64::consts::LN_2,
        lo: 2.319_046_813_846_299_6e-17,
    }
}

/// e to double-double precision.
pub fn e() -> Dd {
    Dd::new(1.0).expm1().add(Dd::new(1.0))
}
