#!/usr/bin/env bash
# CI step "avx512-emulated" (issue 4): the AVX-512 kernels run even where the CI host has no
# AVX-512 (the Zen 3 and other AVX2-only hosts), under the Bochs x86 emulator.
#  1. installs Bochs (its Skylake-X model: AVX-512 F, CD, BW, DQ, VL), busybox, isolinux and
#     xorriso from Debian's packages, and takes the kernel of Debian's cloud image
#     (linux-image-cloud-amd64, extracted, not installed);
#  2. builds the library's and tests/main.rs's test binaries for `-C target-cpu=skylake-avx512`,
#     statically linked, so SimdReal is f32x16 / f64x8 as on an AVX-512 host, and again with
#     `avx512fp16` added: the build of an Intel core with AVX-512 FP16, whose reciprocal
#     estimates (AVX-512 F instructions) and chunk shapes run nowhere else on such hosts;
#  3. boots that kernel under Bochs once per build (two emulators side by side, one per core),
#     from a CD image whose initramfs holds the build's binaries and busybox; runs the
#     batched-kernel tests (`batch::`, the same filter as the native run of simd.sh, without
#     the dense sweeps of `math_tanh_det` and `math_tanh_sech2` against libm: 20 s and 2.4 s
#     natively, far over ten minutes emulated) on one emulated CPU, and reads the verdict from
#     the emulated serial port.
# On hosts with AVX-512 simd.sh runs the first build's tests natively; there this step runs
# only the FP16 build, natively, where the CPU lacks FP16 (skipped where it has it), and it is
# skipped off x86_64.
#
# Kernel options: Bochs 2.7 reports no size for the PKRU state and the standard size for the
# compacted XSAVE area, so Linux would turn XSAVE off (and with it AVX-512); `nopku` and
# `clearcpuid=515,516,321,323` (PKU, OSPKE, XSAVEC, XSAVES) keep the standard XSAVE format.
# Bochs's Tiger Lake model hangs this kernel early in boot, so the model is Skylake-X.
#
# Bounded: everything under `timeout` (40 min for each emulator); about 10 minutes on 2 cores
# (2026-12-05: the two builds 2.5 min each, the emulators 240-280 s side by side, plus the
# packages on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export CARGO_TERM_COLOR=never

host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
  x86_64-unknown-linux-gnu) ;;
  *) echo "avx512-emulated: host $host is not x86_64 Linux (glibc): skipped"; exit 0 ;;
esac
# The FP16 build must hold the estimates, or running it would repeat the first build's tests.
# (`grep -c` reads to the end: `grep -q` would stop objdump with SIGPIPE, a pipefail failure.)
require_estimates() { # $1: the FP16 build's tests binary
  command -v objdump >/dev/null 2>&1 || return 0
  local n
  n=$(objdump -d --no-show-raw-insn "$1" | grep -c vrcp14ps || true)
  echo "-- avx512-emulated: the avx512fp16 build has $n vrcp14ps"
  [ "$n" -gt 0 ] || { echo "avx512-emulated: the avx512fp16 build has no vrcp14ps" >&2; exit 1; }
}

# The library's and tests/main.rs's test binaries for `skylake-avx512` plus $1, statically
# linked (see below). `--target` keeps the RUSTFLAGS off the build scripts, which run on this
# host.
build_bins() { # $1: extra target features, $2: target directory; prints "lib tests"
  local bins lib tests
  bins=$(RUSTFLAGS="-C target-cpu=skylake-avx512 -C target-feature=+crt-static$1" \
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}/$2" \
    cargo test --release --features parallel --target "$host" --lib --test tests --no-run \
    --message-format=json |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
  lib=$(echo "$bins" | grep '/flowcore-' | head -1)
  tests=$(echo "$bins" | grep '/tests-' | head -1)
  [ -n "$lib" ] && [ -n "$tests" ] || { echo "avx512-emulated: test binaries not found" >&2; exit 1; }
  echo "$lib $tests"
}

if grep -qw avx512f /proc/cpuinfo; then
  if grep -qw avx512fp16 /proc/cpuinfo; then
    echo "avx512-emulated: this CPU has AVX-512 FP16; simd.sh runs both builds' tests natively: skipped"
    exit 0
  fi
  # AVX-512 without FP16 (Zen 4, Zen 5, Intel before Sapphire Rapids): simd.sh runs this
  # CPU's own build; the FP16 build's code (the estimates, its shapes) runs here natively,
  # with the same tests as in its emulated guest (the dense sweeps included: seconds here).
  # An FP16 instruction reached would stop the test with SIGILL: a failure, not a pass.
  echo "avx512-emulated: this CPU has AVX-512 without FP16: the avx512fp16 build's tests run natively"
  bins=$(build_bins ",+avx512fp16" avx512fp16-native)
  read -r lib_fp16 tests_fp16 <<<"$bins"
  require_estimates "$tests_fp16"
  "$lib_fp16" batch
  "$tests_fp16" batch
  echo "-- avx512-emulated: ok (the avx512fp16 build, natively)"
  exit 0
fi

sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
pkgs=(bochs bochs-term bochsbios vgabios busybox-static isolinux syslinux-common xorriso cpio)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "-- avx512-emulated: installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null ||
    { "${sudo[@]}" apt-get update -q >/dev/null &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" >/dev/null; }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# The kernel: the package the cloud-image metapackage depends on, unpacked here.
kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')
[ -n "$kpkg" ] || { echo "avx512-emulated: no linux-image-cloud-amd64 in apt" >&2; exit 1; }
apt-get download -q "$kpkg" >/dev/null 2>&1 ||
  { "${sudo[@]}" apt-get update -q >/dev/null && apt-get download -q "$kpkg" >/dev/null; }
dpkg-deb -x ./*.deb kernel
vmlinuz=$(ls kernel/boot/vmlinuz-*)

# The test binaries, static (the initramfs has no C library), in two builds:
#  - `skylake-avx512`: the AVX-512 paths as on Skylake-X and Zen 4 (`f32x16` / `f64x8`, the
#    division in `quot_small`, `vrangeps` in `clamp_sq`);
#  - the same plus `avx512fp16`: the build of an Intel core with AVX-512 FP16 (Sapphire Rapids
#    and later), which switches on `INTEL_AVX512FP16` in `src/simd/lanes.rs`: the reciprocal
#    estimates (`vrcp14ps` / `vrcp14pd`, AVX-512 F) in `quot_small` / `quot_wide` and that
#    build's chunk shapes. Bochs has no FP16, and LLVM does not use FP16 arithmetic for f32
#    and f64, but it may use `vmovsh` as a 16-bit blend of mask vectors (7 places on
#    2026-12-05, the training code among them, none on the batched kernels' path); an FP16
#    instruction reached in the guest stops the test binary with SIGILL (exit 132), a failure
#    of this step, not a silent pass.
cd "$root"
bins=$(build_bins "" avx512-emulated)
read -r lib_bin tests_bin <<<"$bins"
bins=$(build_bins ",+avx512fp16" avx512fp16-emulated)
read -r lib_fp16 tests_fp16 <<<"$bins"
require_estimates "$tests_fp16"
cd "$work"

# One guest per build, so the two emulators run side by side on two cores.
#   $1: the guest's directory, $2 / $3: the lib / tests binaries, $4: the markers' suffix.
make_guest() {
  local g=$work/$1
  mkdir -p "$g"/initramfs/bin "$g"/initramfs/proc "$g"/initramfs/sys "$g"/initramfs/dev \
    "$g"/initramfs/tmp "$g"/iso/isolinux
  cp /bin/busybox "$g"/initramfs/bin/busybox
  cp "$2" "$g"/initramfs/flowcore_lib
  cp "$3" "$g"/initramfs/flowcore_tests
  printf '%s' "$4" >"$g"/initramfs/suffix
  cat >"$g"/initramfs/init <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t tmpfs tmp /tmp
export PATH=/bin RUST_TEST_THREADS=1
sfx=$(/bin/busybox cat /suffix)
avx512=$(/bin/busybox grep -m1 '^flags' /proc/cpuinfo | /bin/busybox tr ' ' '\n' | /bin/busybox grep '^avx512')
echo "== cpu: $(echo "$avx512" | /bin/busybox grep -c .) avx512 flags: $(echo $avx512)"
/flowcore_lib batch; echo "== EXIT lib$sfx $?"
# `--skip` takes substrings: the rational tanh's sweep (`math_tanh_det_near`) runs on its own.
/flowcore_tests batch:: --skip math_tanh_det --skip math_tanh_sech2 &&
  /flowcore_tests --exact batch::math_tanh_det_near
rc=$?
[ $rc = 132 ] && echo "== SIGILL: an instruction this emulated CPU lacks"
echo "== EXIT tests$sfx $rc"
# Let the serial port drain before the power goes.
/bin/busybox sleep 5
/bin/busybox poweroff -f
EOF
  chmod +x "$g"/initramfs/init
  (cd "$g"/initramfs && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$g"/iso/initrd.gz
  cp "$vmlinuz" "$g"/iso/vmlinuz
  cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$g"/iso/isolinux/
  cat >"$g"/iso/isolinux/isolinux.cfg <<'EOF'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  APPEND initrd=/initrd.gz console=ttyS0,115200 rdinit=/init nosmp mitigations=off nopku clearcpuid=515,516,321,323 idle=halt loglevel=4
EOF
  xorriso -as mkisofs -quiet -o "$g"/boot.iso -b isolinux/isolinux.bin -c isolinux/boot.cat \
    -no-emul-boot -boot-load-size 4 -boot-info-table "$g"/iso 2>/dev/null
  # (The RFB display takes the first free port from 5900 on, so two emulators can run.)
  cat >"$g"/bochsrc <<EOF
megs: 1024
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
ata0-master: type=cdrom, path=$g/boot.iso, status=inserted
boot: cdrom
cpu: model=corei7_skylake_x, count=1, ips=100000000
com1: enabled=1, mode=file, dev=$g/serial.out
display_library: rfb, options="timeout=0"
speaker: enabled=0
log: $g/bochs.log
clock: sync=none, time0=local
EOF
}
make_guest skx "$lib_bin" "$tests_bin" ""
make_guest fp16 "$lib_fp16" "$tests_fp16" " fp16"
guests="skx fp16"

echo "-- avx512-emulated: booting under Bochs (Skylake-X model), tests: batch::, two builds side by side"
start=$(date +%s)
# Debian's Bochs has its debugger built in: it stops before the first instruction and reads
# commands from stdin ("c": continue; "quit" after the guest powers off).
for g in $guests; do
  (cd "$work/$g" && printf 'c\nquit\n' | timeout 2400 bochs -q -f bochsrc >bochs.stdout 2>&1 || true) &
done
wait
echo "-- avx512-emulated: $(($(date +%s) - start)) s in the emulators"
fail=0
for g in $guests; do
  sfx=$(cat "$work/$g/initramfs/suffix")
  out="$work/$g/serial.out"
  echo "-- avx512-emulated: the guest of the ${g} build:"
  # The guest's output, without the kernel's log lines.
  grep -av '^\[ *[0-9.]*\]' "$out" | tr -d '\r' || true
  grep -aq '^== cpu: [1-9]' "$out" || { echo "avx512-emulated ($g): the guest saw no AVX-512" >&2; fail=1; }
  grep -aq "^== EXIT lib$sfx 0" "$out" ||
    { echo "avx512-emulated ($g): lib tests failed or did not finish" >&2; fail=1; }
  grep -aq "^== EXIT tests$sfx 0" "$out" ||
    { echo "avx512-emulated ($g): batch tests failed or did not finish" >&2; fail=1; }
done
[ "$fail" = 0 ] || exit 1
echo "-- avx512-emulated: passed"
