#!/usr/bin/env bash
# CI step "avx512-emulated" (issue 4): the AVX-512 kernels run even where the CI host has no
# AVX-512 (the Zen 3 and other AVX2-only hosts), under the Bochs x86 emulator.
#  1. installs Bochs (its Skylake-X model: AVX-512 F, CD, BW, DQ, VL), busybox, isolinux and
#     xorriso from Debian's packages, and takes the kernel of Debian's cloud image
#     (linux-image-cloud-amd64, extracted, not installed);
#  2. builds the library's and tests/main.rs's test binaries for `-C target-cpu=skylake-avx512`,
#     statically linked, so SimdReal is f32x16 / f64x8 as on an AVX-512 host;
#  3. boots that kernel under Bochs from a CD image whose initramfs holds the binaries and
#     busybox, runs the batched-kernel tests (`batch::`, the same filter as the native run of
#     simd.sh, without the dense sweeps of `math_tanh_det` and `math_tanh_sech2` against libm:
#     20 s and 2.4 s natively, far over ten minutes emulated) on one emulated CPU, and reads the verdict from the emulated
#     serial port.
# Skipped on hosts with AVX-512 (simd.sh runs the same tests natively there) and off x86_64.
#
# Kernel options: Bochs 2.7 reports no size for the PKRU state and the standard size for the
# compacted XSAVE area, so Linux would turn XSAVE off (and with it AVX-512); `nopku` and
# `clearcpuid=515,516,321,323` (PKU, OSPKE, XSAVEC, XSAVES) keep the standard XSAVE format.
# Bochs's Tiger Lake model hangs this kernel early in boot, so the model is Skylake-X.
#
# Bounded: everything under `timeout` (40 min for the emulator); about 7 minutes on 2 cores (2026-12-05:
# the build 2.5 min, the emulator 245 s, plus the packages on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export CARGO_TERM_COLOR=never

host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
  x86_64-unknown-linux-gnu) ;;
  *) echo "avx512-emulated: host $host is not x86_64 Linux (glibc): skipped"; exit 0 ;;
esac
if grep -qw avx512f /proc/cpuinfo; then
  echo "avx512-emulated: this CPU has AVX-512; simd.sh runs the AVX-512 tests natively: skipped"
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

# The test binaries, for Skylake-X, static (the initramfs has no C library). `--target` keeps
# the RUSTFLAGS off the build scripts, which run on this host.
cd "$root"
bins=$(RUSTFLAGS="-C target-cpu=skylake-avx512 -C target-feature=+crt-static" \
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}/avx512-emulated" \
  cargo test --release --features parallel --target "$host" --lib --test tests --no-run \
  --message-format=json |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
lib_bin=$(echo "$bins" | grep '/flowcore-' | head -1)
tests_bin=$(echo "$bins" | grep '/tests-' | head -1)
[ -n "$lib_bin" ] && [ -n "$tests_bin" ] || { echo "avx512-emulated: test binaries not found" >&2; exit 1; }
cd "$work"

mkdir -p initramfs/bin initramfs/proc initramfs/sys initramfs/dev initramfs/tmp iso/isolinux
cp /bin/busybox initramfs/bin/busybox
cp "$lib_bin" initramfs/flowcore_lib
cp "$tests_bin" initramfs/flowcore_tests
cat >initramfs/init <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t tmpfs tmp /tmp
export PATH=/bin RUST_TEST_THREADS=1
avx512=$(/bin/busybox grep -m1 '^flags' /proc/cpuinfo | /bin/busybox tr ' ' '\n' | /bin/busybox grep '^avx512')
echo "== cpu: $(echo "$avx512" | /bin/busybox grep -c .) avx512 flags: $(echo $avx512)"
/flowcore_lib batch; echo "== EXIT lib $?"
# `--skip` takes substrings: the rational tanh's sweep (`math_tanh_det_near`) runs on its own.
/flowcore_tests batch:: --skip math_tanh_det --skip math_tanh_sech2 &&
  /flowcore_tests --exact batch::math_tanh_det_near
echo "== EXIT tests $?"
# Let the serial port drain before the power goes.
/bin/busybox sleep 5
/bin/busybox poweroff -f
EOF
chmod +x initramfs/init
(cd initramfs && find . | cpio -o -H newc 2>/dev/null | gzip -1) >iso/initrd.gz
cp "$vmlinuz" iso/vmlinuz
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 iso/isolinux/
cat >iso/isolinux/isolinux.cfg <<'EOF'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  APPEND initrd=/initrd.gz console=ttyS0,115200 rdinit=/init nosmp mitigations=off nopku clearcpuid=515,516,321,323 idle=halt loglevel=4
EOF
xorriso -as mkisofs -quiet -o boot.iso -b isolinux/isolinux.bin -c isolinux/boot.cat \
  -no-emul-boot -boot-load-size 4 -boot-info-table iso 2>/dev/null
cat >bochsrc <<EOF
megs: 1024
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
ata0-master: type=cdrom, path=$work/boot.iso, status=inserted
boot: cdrom
cpu: model=corei7_skylake_x, count=1, ips=100000000
com1: enabled=1, mode=file, dev=$work/serial.out
display_library: rfb, options="timeout=0"
speaker: enabled=0
log: $work/bochs.log
clock: sync=none, time0=local
EOF

echo "-- avx512-emulated: booting under Bochs (Skylake-X model), tests: batch::"
start=$(date +%s)
# Debian's Bochs has its debugger built in: it stops before the first instruction and reads
# commands from stdin ("c": continue; "quit" after the guest powers off).
printf 'c\nquit\n' | timeout 2400 bochs -q -f bochsrc >bochs.stdout 2>&1 || true
echo "-- avx512-emulated: $(($(date +%s) - start)) s in the emulator"
# The guest's output, without the kernel's log lines.
grep -av '^\[ *[0-9.]*\]' serial.out | tr -d '\r' || true
grep -aq '^== cpu: [1-9]' serial.out || { echo "avx512-emulated: the guest saw no AVX-512" >&2; exit 1; }
grep -aq '^== EXIT lib 0' serial.out || { echo "avx512-emulated: lib tests failed or did not finish" >&2; exit 1; }
grep -aq '^== EXIT tests 0' serial.out || { echo "avx512-emulated: batch tests failed or did not finish" >&2; exit 1; }
echo "-- avx512-emulated: passed"
